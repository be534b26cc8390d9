"""Where gateway API keys are kept: the configuration file (read-only) or Redis (``aigw keys``).

Redis keeps one hash per key, ``<prefix>id:<key id>`` (digest, tenant, user, name, created, revoked,
limits as JSON), and one set of key ids per tenant, ``<prefix>tenant:<tenant>``, for listings. The
request path reads the key's hash on every request (one ``HGETALL``) and caches nothing, so a key
revoked with ``aigw keys revoke`` is refused by every worker from its next request on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
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


def record_from_hash(key_id: str, fields: Mapping[str, str]) -> KeyRecord:
    """A key's Redis hash as a record; a hash without digest or tenant is no key."""
    if "hash" not in fields or "tenant" not in fields:
        raise KeyStoreError(f"the stored key {key_id} has no digest or tenant")
    try:
        limits = KeyLimits.model_validate(orjson.loads(fields.get("limits") or "{}")).as_dict()
        created = float(fields.get("created") or 0)
    except (orjson.JSONDecodeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise KeyStoreError(f"the stored key {key_id} is unreadable ({exc})") from None
    return KeyRecord(
        id=key_id,
        hash=fields["hash"],
        tenant=fields["tenant"],
        user=fields.get("user") or None,
        name=fields.get("name", ""),
        created=created,
        revoked=fields.get("revoked") == "1",
        limits=limits,
    )


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
            reply = await self._clients.fast().call(pack([b"HGETALL", self.id_key(key_id).encode()]))
        except (OSError, TimeoutError, ConnectionLost, RespError) as exc:
            raise KeyStoreError(f"{type(exc).__name__}: {exc}") from exc
        if not reply:
            return None
        fields = {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}
        return record_from_hash(key_id, fields)

    async def add(self, record: KeyRecord) -> None:
        fields = {
            "hash": record.hash,
            "tenant": record.tenant,
            "user": record.user or "",
            "name": record.name,
            "created": repr(record.created or time.time()),
            "revoked": "1" if record.revoked else "0",
            "limits": orjson.dumps(dict(record.limits)).decode(),
        }
        client = self._clients.redis()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hset(self.id_key(record.id), mapping=fields)
            pipe.sadd(self.tenant_key(record.tenant), record.id)
            await pipe.execute()

    async def list_keys(self, tenant: str) -> list[KeyRecord]:
        """The tenant's keys, oldest first."""
        client = self._clients.redis()
        ids = sorted(_text(i) for i in await client.smembers(self.tenant_key(tenant)))
        out: list[KeyRecord] = []
        for key_id in ids:
            raw = await client.hgetall(self.id_key(key_id))
            if raw:
                out.append(record_from_hash(key_id, {_text(k): _text(v) for k, v in raw.items()}))
        return sorted(out, key=lambda record: (record.created, record.id))

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Mark the key revoked; ``None`` when there is no such key."""
        client = self._clients.redis()
        # HSET only on an existing hash: a mistyped id must not create a half key
        done = await client.eval(
            "if redis.call('EXISTS', KEYS[1]) == 1 then "
            "redis.call('HSET', KEYS[1], 'revoked', '1', 'revoked_at', ARGV[1]) return 1 end return 0",
            1,
            self.id_key(key_id),
            repr(time.time()),
        )
        return await self.get(key_id) if done else None

    async def aclose(self) -> None:
        await self._clients.aclose()


def open_store(url: str, *, prefix: str = "aigw:keys:", timeout: float = 2.0) -> RedisKeyStore:
    """``redis://``, ``rediss://``, ``unix://`` (registered in :mod:`asgi_aigw.stores.registry`)."""
    return RedisKeyStore(url, prefix=prefix, timeout=timeout)
