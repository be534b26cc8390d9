"""The Redis budget store: one Lua script reserves in every window atomically, another settles.

Keys are ``<prefix>{<tenant>}:<window code>:<window start>`` (counters, expiring ``grace`` seconds after
their window ends) and ``<prefix>{<tenant>}:limits`` (a hash of live overrides, read by the reserve
script itself, so a change made with ``aigw budget set`` applies to the very next request). The hash
tag keeps a tenant's keys on one Redis Cluster slot. Scripts are called by SHA; when the server does
not know one (restart, failover, SCRIPT FLUSH) it is loaded and the call retried once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from .._optional import require
from . import lua
from .store import Reservation, StoreError
from .windows import Slot


class _Script:
    """A Lua script called by SHA (computed once), loaded on NOSCRIPT."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        redis = require("redis", "redis")
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


_RESERVE = _Script(lua.RESERVE)
_SETTLE = _Script(lua.SETTLE)


class RedisBudgetStore:
    """Budgets in Redis, shared by every worker process and host.

    Give a URL (a client is opened per event loop, lazily) or a ``redis.asyncio`` client instance
    (``Redis`` or ``RedisCluster``) that you own and close.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        key_prefix: str = "aigw:",
        timeout: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give a Redis URL or a client, not both")
        self.url = url
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.max_connections = max_connections
        self._given = client
        self._clients: dict[int, Any] = {}
        self._redis = require("redis", "redis")
        self._errors: tuple[type[BaseException], ...] = (
            self._redis.exceptions.RedisError,
            OSError,
            asyncio.TimeoutError,
        )

    # -- keys ---------------------------------------------------------------------------------------

    def tag(self, tenant: str) -> str:
        return f"{self.key_prefix}{{{tenant}}}:"

    def counter_key(self, tenant: str, slot: Slot) -> str:
        return f"{self.key_prefix}{{{tenant}}}:{slot.suffix}"

    def limits_key(self, tenant: str) -> str:
        return f"{self.key_prefix}{{{tenant}}}:limits"

    # -- client -------------------------------------------------------------------------------------

    def client(self) -> Any:
        if self._given is not None:
            return self._given
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            asyncio_redis = require("redis.asyncio", "redis")
            no_backoff = require("redis.backoff", "redis").NoBackoff()
            retry = require("redis.asyncio.retry", "redis").Retry(no_backoff, 1)
            # a blocking pool: under a burst, requests wait (up to the timeout) for a connection
            # instead of failing with "Too many connections"
            pool = asyncio_redis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=max(2.0, 4 * self.timeout),
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # fail fast (one retry for a stale pooled connection): the middleware decides what a
                # store outage means, and a request must not wait seconds for back-offs
                retry=retry,
                health_check_interval=0,
            )
            client = asyncio_redis.Redis(connection_pool=pool)
            self._clients[loop_id] = client
        return client

    async def _run(self, coro: Any) -> Any:
        try:
            return await coro
        except self._errors as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    # -- BudgetStore --------------------------------------------------------------------------------

    async def reserve(
        self, tenant: str, slots: Sequence[Slot], amounts: Sequence[int], limits: Sequence[int], grace: int
    ) -> Reservation:
        prefix = self.tag(tenant)
        keys = [prefix + "limits"]
        args: list[Any] = [len(slots)]
        for slot, amount, limit in zip(slots, amounts, limits, strict=True):
            keys.append(prefix + slot.suffix)
            args.extend((slot.window.name, limit, amount, slot.end + grace))
        reply = await self._run(_RESERVE(self.client(), keys, args))
        values = [int(v) for v in reply]
        return Reservation(values[0] == 1, values[1::2], values[2::2])

    async def settle(self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int]) -> None:
        prefix = self.tag(tenant)
        keys: list[str] = []
        args: list[int] = []
        for slot, delta in zip(slots, deltas, strict=True):
            if delta:
                keys.append(prefix + slot.suffix)
                args.append(delta)
        if keys:
            await self._run(_SETTLE(self.client(), keys, args))

    async def usage(self, tenant: str, slots: Sequence[Slot]) -> list[int]:
        keys = [self.counter_key(tenant, slot) for slot in slots]
        values = await self._run(self.client().mget(keys))
        return [int(v) if v is not None else 0 for v in values]

    async def reset_usage(self, tenant: str, slots: Sequence[Slot]) -> None:
        keys = [self.counter_key(tenant, slot) for slot in slots]
        await self._run(self.client().delete(*keys))

    async def get_overrides(self, tenant: str) -> dict[str, int]:
        raw = await self._run(self.client().hgetall(self.limits_key(tenant)))
        return {k.decode() if isinstance(k, bytes) else str(k): int(v) for k, v in raw.items()}

    async def set_overrides(self, tenant: str, values: Mapping[str, int | None]) -> None:
        key = self.limits_key(tenant)
        to_set = {name: int(v) for name, v in values.items() if v is not None}
        to_delete = [name for name, v in values.items() if v is None]
        client = self.client()
        if to_set:
            await self._run(client.hset(key, mapping=to_set))
        if to_delete:
            await self._run(client.hdel(key, *to_delete))

    async def clear_overrides(self, tenant: str) -> None:
        await self._run(self.client().delete(self.limits_key(tenant)))

    async def aclose(self) -> None:
        """Close the clients this store opened on the running loop (a given client is the caller's)."""
        try:
            loop_id = id(asyncio.get_running_loop())
        except RuntimeError:
            return
        client = self._clients.pop(loop_id, None)
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()
