"""Where gateway API keys are kept: the configuration file (read-only) or Redis (``aigw keys``).

Redis keeps each key's record as one JSON string, ``<prefix>id:<key id>`` (digest, tenant, user, name,
created, revoked, limits), and one set of key ids per tenant, ``<prefix>tenant:<tenant>``, for
listings. The request path reads the record on every request (one ``GET``, about half the time of an
``HGETALL`` of the same fields) and caches nothing, so a key revoked with ``aigw keys revoke`` is
refused by every worker from its next request on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

import orjson

from ..stores.redis_clients import LoopRedisClients
from ..stores.resp import ConnectionLost, RespError, pack
from .config import APIKeyEntry, KeyLimits
from .keys import KeyRecord


class KeyStoreError(Exception):
    """The key store could not be reached or answered nonsense."""


class KeyStore(Protocol):
    """Looks keys up by id; the Redis store also adds, lists and revokes them."""

    async def get(self, key_id: str) -> KeyRecord | None: ...

    async def aclose(self) -> None: ...


def record_from_entry(entry: APIKeyEntry) -> KeyRecord:
    return KeyRecord(
        id=entry.id,
        hash=entry.hash,
        tenant=entry.tenant,
        user=entry.user,
        name=entry.name,
        created=entry.created.timestamp() if entry.created else 0.0,
        revoked=entry.revoked,
        limits=entry.limits.as_dict(),
    )


class ConfigKeyStore:
    """The keys of ``tenant.api_keys``; revoking one is an edit of the file and a restart."""

    def __init__(self, entries: Iterable[APIKeyEntry]) -> None:
        self._records = {entry.id: record_from_entry(entry) for entry in entries}

    async def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    async def aclose(self) -> None:
        return None


class ChainedKeyStore:
    """The file's keys first, then the store's (ids are random: the two never share one)."""

    def __init__(self, *stores: KeyStore) -> None:
        self.stores = stores

    async def get(self, key_id: str) -> KeyRecord | None:
        for store in self.stores:
            record = await store.get(key_id)
            if record is not None:
                return record
        return None

    async def aclose(self) -> None:
        for store in self.stores:
            await store.aclose()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def record_json(record: KeyRecord) -> bytes:
    """The stored form of a key's record (its digest, never the key)."""
    return orjson.dumps(
        {
            "hash": record.hash,
            "tenant": record.tenant,
            "user": record.user,
            "name": record.name,
            "created": record.created,
            "revoked": record.revoked,
            "limits": dict(record.limits),
        }
    )


def record_from_json(key_id: str, raw: bytes) -> KeyRecord:
    """A stored record; one without digest or tenant, or with limits no budget can read, is refused."""
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("hash"), str):
            raise ValueError("no digest")
        if not isinstance(data.get("tenant"), str):
            raise ValueError("no tenant")
        raw_limits = data.get("limits")
        # most keys have none: skip the model, a fifth of a request's parsing time
        limits = KeyLimits.model_validate(raw_limits).as_dict() if raw_limits else {}
        user = data.get("user")
        return KeyRecord(
            id=key_id,
            hash=data["hash"],
            tenant=data["tenant"],
            user=user if isinstance(user, str) and user else None,
            name=str(data.get("name") or ""),
            created=float(data.get("created") or 0),
            revoked=data.get("revoked") is True,
            limits=limits,
        )
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:  # ValidationError is a ValueError
        raise KeyStoreError(f"the stored key {key_id} is unreadable ({exc})") from None


#: Sets ``revoked`` in a stored record, only if the key exists (a mistyped id must not create one).
_REVOKE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local record = cjson.decode(raw)
record['revoked'] = true
record['revoked_at'] = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(record))
return 1
"""


class RedisKeyStore:
    """Keys in Redis, shared by every worker and by ``aigw keys``."""

    def __init__(self, url: str, *, prefix: str = "aigw:keys:", timeout: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        self._clients = LoopRedisClients(url, timeout=timeout)

    def id_key(self, key_id: str) -> str:
        return f"{self.prefix}id:{key_id}"

    def tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}tenant:{tenant}"

    async def get(self, key_id: str) -> KeyRecord | None:
        """The key's record, read from Redis now (never cached: revocation must apply at once)."""
        try:
            raw = await self._clients.fast().call(pack([b"GET", self.id_key(key_id).encode()]))
        except (OSError, TimeoutError, ConnectionLost, RespError) as exc:
            raise KeyStoreError(f"{type(exc).__name__}: {exc}") from exc
        return None if raw is None else record_from_json(key_id, raw)

    async def add(self, record: KeyRecord) -> None:
        if not record.created:
            record = replace(record, created=time.time())
        client = self._clients.redis()
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self.id_key(record.id), record_json(record))
            pipe.sadd(self.tenant_key(record.tenant), record.id)
            await pipe.execute()

    async def list_keys(self, tenant: str) -> list[KeyRecord]:
        """The tenant's keys, oldest first."""
        client = self._clients.redis()
        ids = sorted(_text(i) for i in await client.smembers(self.tenant_key(tenant)))
        out: list[KeyRecord] = []
        for key_id in ids:
            raw = await client.get(self.id_key(key_id))
            if raw is not None:
                out.append(record_from_json(key_id, raw))
        return sorted(out, key=lambda record: (record.created, record.id))

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Mark the key revoked; ``None`` when there is no such key."""
        client = self._clients.redis()
        done = await client.eval(_REVOKE, 1, self.id_key(key_id), repr(time.time()))
        return await self.get(key_id) if done else None

    async def aclose(self) -> None:
        await self._clients.aclose()


def open_store(url: str, *, prefix: str = "aigw:keys:", timeout: float = 2.0) -> RedisKeyStore:
    """``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://`` (registered in
    :mod:`asgi_aigw.stores.registry`)."""
    return RedisKeyStore(url, prefix=prefix, timeout=timeout)
