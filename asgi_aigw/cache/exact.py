"""The exact layer: answer bytes by key, with a TTL. Redis in production, an LRU in process by default.

Keys are ``<tenant tag>:<sha256>`` (see :mod:`.keys`), so one tenant's entries can be purged alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol, runtime_checkable

from ..kernel.gate import RedisEntry
from ..stores.redis_clients import LoopRedisClients
from ..stores.resp import RespCaller, pack


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

    Takes a URL or a ``redis.asyncio`` client you own. With a URL, the two calls on the request path
    (``GET``, ``SET``) go through the package's minimal client (:mod:`asgi_aigw.stores.resp`, about half
    the CPU of redis-py's command path) and purges through redis-py; both are opened per event loop, on
    first use.
    """

    def __init__(self, client_or_url: Any, *, prefix: str = "aigw:cache:", timeout: float = 2.0) -> None:
        self.prefix = prefix + "e:"
        #: Seconds each Redis call may take (the cache's ``lookup_timeout``).
        self.timeout = timeout
        if isinstance(client_or_url, str):
            self._loop_clients: LoopRedisClients | None = LoopRedisClients(client_or_url, timeout=timeout)
            self._given: Any = None
        else:
            self._loop_clients = None
            self._given = client_or_url

    @property
    def client(self) -> Any:
        """redis-py: the client given, or the one of the running event loop."""
        if self._given is not None:
            return self._given
        assert self._loop_clients is not None
        return self._loop_clients.redis()

    def _fast_client(self) -> RespCaller:
        assert self._loop_clients is not None
        return self._loop_clients.fast()

    def redis_entry(self, key: str, value: bytes | None = None, ttl: float = 0.0) -> RedisEntry | None:
        """Where ``key`` lives, for a budget on the same server to read it (or, with ``value``, write it)
        in its own calls; None for a client you gave (its server is unknown here)."""
        if self._loop_clients is None:
            return None
        full = (self.prefix + key).encode()
        if value is None:
            return RedisEntry(self._loop_clients.url, full)
        command = pack([b"SET", full, value, b"PX", b"%d" % max(1, int(ttl * 1000))])
        return RedisEntry(self._loop_clients.url, full, command)

    async def get(self, key: str) -> bytes | None:
        if self._given is not None:
            value = await self._given.get(self.prefix + key)
            return bytes(value) if value is not None else None
        reply = await self._fast_client().call(pack([b"GET", (self.prefix + key).encode()]))
        return reply if isinstance(reply, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        millis = max(1, int(ttl * 1000))
        if self._given is not None:
            await self._given.set(self.prefix + key, value, px=millis)
            return
        command = pack([b"SET", (self.prefix + key).encode(), value, b"PX", b"%d" % millis])
        await self._fast_client().call(command)

    async def purge(self, tenant_tag: str | None = None) -> int:
        pattern = self.prefix + (f"{tenant_tag}:*" if tenant_tag else "*")
        client = self.client
        count = 0
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                count += await client.unlink(*batch)
                batch.clear()
        if batch:
            count += await client.unlink(*batch)
        return count

    async def aclose(self) -> None:
        if self._loop_clients is not None:
            await self._loop_clients.aclose()


def open_memory_store(url: str, *, max_entries: int = 10_000, **_: object) -> MemoryExactStore:
    """``memory://``: an LRU in this process (registered in :mod:`asgi_aigw.stores.registry`)."""
    return MemoryExactStore(max_entries)


def open_redis_store(
    url: str, *, prefix: str = "aigw:cache:", timeout: float = 2.0, **_: object
) -> RedisExactStore:
    """``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://``; each Redis call
    waits at most ``timeout`` seconds."""
    return RedisExactStore(url, prefix=prefix, timeout=timeout)
