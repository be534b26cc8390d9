"""The exact layer: answer bytes by key, with a TTL. Redis in production, an LRU in process by default.

Keys are ``<tenant tag>:<sha256>`` (see :mod:`.keys`), so one tenant's entries can be purged alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

from .._optional import require


@runtime_checkable
class ExactStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def purge(self, tenant_tag: str | None = None) -> int:
        """Delete every entry (of one tenant when ``tenant_tag`` is given); the number deleted."""
        ...

    async def aclose(self) -> None: ...


class MemoryExactStore:
    """A least-recently-used map in this process (one worker's cache; nothing shared across workers).

    No lock: every method runs to completion without awaiting, so the event loop serialises them.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def purge(self, tenant_tag: str | None = None) -> int:
        if tenant_tag is None:
            count = len(self._data)
            self._data.clear()
            return count
        doomed = [k for k in self._data if k.startswith(tenant_tag + ":")]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._data)

    async def aclose(self) -> None:
        return None


class RedisExactStore:
    """Entries in Redis with ``SET PX``; shared by every worker and host that uses the same server.

    Takes a ``redis.asyncio.Redis`` client or a URL (the client is then created on first use, in the
    event loop that uses it).
    """

    def __init__(self, client_or_url: Any, *, prefix: str = "aigw:cache:") -> None:
        self.prefix = prefix + "e:"
        if isinstance(client_or_url, str):
            self._url: str | None = client_or_url
            self._client: Any = None
        else:
            self._url = None
            self._client = client_or_url

    @property
    def client(self) -> Any:
        if self._client is None:
            redis = require("redis.asyncio", "redis")
            self._client = redis.Redis.from_url(self._url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return self._client

    async def get(self, key: str) -> bytes | None:
        value = await self.client.get(self.prefix + key)
        return bytes(value) if value is not None else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def purge(self, tenant_tag: str | None = None) -> int:
        pattern = self.prefix + (f"{tenant_tag}:*" if tenant_tag else "*")
        count = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                count += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            count += await self.client.unlink(*batch)
        return count

    async def aclose(self) -> None:
        if self._client is not None and self._url is not None:
            await self._client.aclose()
            self._client = None


def exact_store_from_url(url: str, *, max_entries: int = 10_000, prefix: str = "aigw:cache:") -> ExactStore:
    """``memory://`` or ``redis://...`` / ``rediss://...`` / ``unix://...``."""
    if url in ("memory", "memory://"):
        return MemoryExactStore(max_entries)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisExactStore(url, prefix=prefix)
    raise ValueError(f"Unknown exact cache store {url!r}: use memory:// or redis://HOST:PORT/DB.")
