"""LoopRedisClients: one minimal client and one redis-py client per event loop, against a real Redis."""

from __future__ import annotations

import asyncio

from asgi_aigw.stores.redis_clients import LoopRedisClients
from asgi_aigw.stores.resp import pack


async def _use(clients: LoopRedisClients) -> tuple[object, object]:
    fast, redis = clients.fast(), clients.redis()
    assert clients.fast() is fast
    assert clients.redis() is redis
    assert await fast.call(pack([b"PING"])) == b"PONG"
    assert await redis.ping() is True
    return fast, redis


def test_each_loop_gets_its_own_clients_and_closes_them(redis_url: str) -> None:
    clients = LoopRedisClients(redis_url, timeout=1.0)

    async def in_a_loop() -> tuple[object, object]:
        pair = await _use(clients)
        await clients.aclose()
        # closed and forgotten: the next use on this loop opens new ones
        assert clients.fast() is not pair[0]
        assert clients.redis() is not pair[1]
        await clients.aclose()
        return pair

    first, second = asyncio.run(in_a_loop()), asyncio.run(in_a_loop())
    assert first[0] is not second[0]
    assert first[1] is not second[1]
