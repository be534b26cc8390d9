"""Redis clients opened from a URL, one pair per event loop: the package's minimal client for the
commands on the request path, redis-py for everything else (scans, hashes, admin).

A client belongs to the loop it was opened on (its connections do), and a store may be used from more
than one loop (uvicorn's, a test's, a CLI's), so each loop gets its own pair, opened on first use.
A ``redis+cluster://`` or ``redis+sentinel://`` URL gets redis-py's cluster or sentinel client, and a
minimal client at the right master for the request path (see :mod:`.redis_topology`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..kernel.optional import require
from .redis_topology import TOPOLOGY_SCHEMES, open_fast_client, open_topology_client
from .registry import scheme_of
from .resp import FastRedis, RespCaller


class LoopRedisClients:
    """The clients of ``url`` for the running event loop: :meth:`fast` and :meth:`redis`."""

    def __init__(self, url: str, *, timeout: float = 2.0, max_connections: int = 64) -> None:
        self.url = url
        self.timeout = timeout
        self.max_connections = max_connections
        #: A cluster or sentinel URL (see :mod:`.redis_topology`).
        self.topology = scheme_of(url) in TOPOLOGY_SCHEMES
        self._fast: dict[int, RespCaller] = {}
        self._redis: dict[int, Any] = {}
        self._others: dict[int, list[Any]] = {}

    def fast(self) -> RespCaller:
        """The client of the running loop for the request path's packed commands."""
        loop_id = id(asyncio.get_running_loop())
        client = self._fast.get(loop_id)
        if client is None:
            if self.topology:
                client = open_fast_client(
                    self.url, self.redis(), timeout=self.timeout, max_connections=self.max_connections
                )
            else:
                client = FastRedis(self.url, timeout=self.timeout, max_connections=self.max_connections)
            self._fast[loop_id] = client
        return client

    def redis(self) -> Any:
        """The ``redis.asyncio`` client of the running loop (``RedisCluster`` for a cluster URL)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._redis.get(loop_id)
        if client is None:
            if self.topology:
                client, self._others[loop_id] = open_topology_client(
                    self.url, timeout=self.timeout, max_connections=self.max_connections
                )
                self._redis[loop_id] = client
                return client
            asyncio_redis = require("redis.asyncio", "redis")
            no_backoff = require("redis.backoff", "redis").NoBackoff()
            client = asyncio_redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # fail fast (one retry for a stale pooled connection): the caller decides what a store
                # outage means, and a request must not wait seconds for back-offs
                retry=require("redis.asyncio.retry", "redis").Retry(no_backoff, 1),
                health_check_interval=0,
            )
            self._redis[loop_id] = client
        return client

    async def aclose(self) -> None:
        """Close the clients of the running loop (those of other loops close with their loop)."""
        try:
            loop_id = id(asyncio.get_running_loop())
        except RuntimeError:
            return
        fast = self._fast.pop(loop_id, None)
        if fast is not None:
            await fast.aclose()
        client = self._redis.pop(loop_id, None)
        if client is not None:
            await client.aclose()
        for other in self._others.pop(loop_id, []):
            await other.aclose()
