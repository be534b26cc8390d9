"""Budget stores: the memory and Redis stores keep the same semantics (atomic multi-window reservation,
settlement, live overrides), Redis keys are cluster-safe and expire, Lua scripts survive NOSCRIPT."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from asgi_aigw.budget import MemoryBudgetStore, RedisBudgetStore, StoreError, lua
from asgi_aigw.budget.redis import _Script
from asgi_aigw.budget.windows import WINDOW_NAMES, Slot, SlotClock
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.stores.registry import BUDGET_STORES
from asgi_aigw.stores.resp import FastRedis, pack


@pytest.fixture(params=["memory", "redis-url", "redis-client"])
async def store(request: Any, redis_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    """The memory store; the Redis store from a URL (its own fast client for the scripts); and the
    Redis store given a redis-py client (redis-py for everything, as with RedisCluster)."""
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    given = aioredis.Redis.from_url(redis_url) if request.param == "redis-client" else None
    store = RedisBudgetStore(redis_url if given is None else None, client=given, key_prefix=redis_prefix)
    yield store
    if given is not None:
        await given.aclose()
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await store.aclose()


def slots() -> list[Slot]:
    return SlotClock().slots(time.time())


def limits(**values: int) -> list[int]:
    return [values.get(name, -1) for name in WINDOW_NAMES]


def amounts(tokens: int, cost: int = 0) -> list[int]:
    return [1, tokens, tokens, tokens, tokens, cost, cost]


async def test_reserve_is_all_or_nothing(store: Any) -> None:
    now = slots()
    first = await store.reserve(
        "acme", now, amounts(60), limits(tokens_per_minute=100, tokens_per_day=1000), 60
    )
    assert first.allowed
    assert first.used == [1, 60, 60, 60, 60, 0, 0]
    assert first.limits == limits(tokens_per_minute=100, tokens_per_day=1000)
    refused = await store.reserve(
        "acme", now, amounts(50), limits(tokens_per_minute=100, tokens_per_day=1000), 60
    )
    assert not refused.allowed
    assert refused.used == [1, 60, 60, 60, 60, 0, 0]  # what refused it, and nothing was added anywhere
    assert await store.usage("acme", now) == [1, 60, 60, 60, 60, 0, 0]
    assert await store.usage("other", now) == [0] * 7  # tenants are separate


async def test_settle_replaces_the_reservation_and_never_goes_negative(store: Any) -> None:
    now = slots()
    await store.reserve("acme", now, amounts(100, 500), limits(), 60)
    await store.settle("acme", now, [0, -70, -70, -70, -70, -300, -300])
    assert await store.usage("acme", now) == [1, 30, 30, 30, 30, 200, 200]
    await store.settle("acme", now, [-5, -500, 0, 0, 0, 0, 0])
    assert await store.usage("acme", now) == [0, 0, 30, 30, 30, 200, 200]


async def test_settle_leaves_expired_slots_alone(store: Any) -> None:
    old = [Slot(slot.window, slot.start - 10_000_000, slot.end - 10_000_000) for slot in slots()]
    await store.settle("acme", old, [5] * 7)
    assert await store.usage("acme", old) == [0] * 7


async def test_live_overrides_win_over_the_defaults(store: Any) -> None:
    now = slots()
    await store.set_overrides("acme", {"tokens_per_minute": 10, "requests_per_minute": -1})
    assert await store.get_overrides("acme") == {"tokens_per_minute": 10, "requests_per_minute": -1}
    refused = await store.reserve(
        "acme", now, amounts(11), limits(tokens_per_minute=1000, requests_per_minute=0), 60
    )
    assert not refused.allowed
    assert refused.limits[:2] == [-1, 10]
    await store.set_overrides("acme", {"tokens_per_minute": None})
    assert await store.get_overrides("acme") == {"requests_per_minute": -1}
    allowed = await store.reserve(
        "acme", now, amounts(11), limits(tokens_per_minute=1000, requests_per_minute=0), 60
    )
    assert allowed.allowed
    await store.clear_overrides("acme")
    assert await store.get_overrides("acme") == {}
    await store.reset_usage("acme", now)
    assert await store.usage("acme", now) == [0] * 7


async def test_redis_keys_carry_the_tenant_hash_tag_and_expire(redis_url: str, redis_prefix: str) -> None:
    store = RedisBudgetStore(redis_url, key_prefix=redis_prefix)
    now = slots()
    await store.reserve("acme", now, amounts(5, 7), limits(), 600)
    await store.set_overrides("acme", {"tokens_per_day": 100})
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted([key async for key in client.scan_iter(match=f"{redis_prefix}*")])
    assert len(keys) == 8
    assert all(key.startswith(f"{redis_prefix}{{acme}}:") for key in keys)
    for slot in now:
        key = f"{redis_prefix}{{acme}}:{slot.window.code}:{slot.start}"
        ttl = await client.ttl(key)
        assert slot.end + 600 - time.time() - 2 <= ttl <= slot.end + 600 - time.time() + 1
    await client.delete(*keys)
    await client.aclose()
    await store.aclose()


async def test_scripts_are_reloaded_after_noscript(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    # a script text this server has never seen stands for one lost in a restart or failover
    script = _Script(lua.SETTLE + f"\n-- {uuid.uuid4().hex}\n")
    assert await client.script_exists(script.sha) == [False]
    key = f"{redis_prefix}{{acme}}:x"
    await client.set(key, 10)
    assert await script(client, [key], [5]) == 1
    assert int(await client.get(key)) == 15
    assert await client.script_exists(script.sha) == [True]
    await client.delete(key)
    await client.aclose()


async def test_fast_client_reloads_scripts_after_noscript(redis_url: str, redis_prefix: str) -> None:
    fast = FastRedis(redis_url)
    script = _Script(lua.SETTLE + f"\n-- {uuid.uuid4().hex}\n")
    key = f"{redis_prefix}{{acme}}:y"
    await fast.call(pack([b"SET", key.encode(), b"10"]))
    assert await fast.call(pack([b"SCRIPT", b"EXISTS", script.sha.encode()])) == [0]
    assert await script.fast(fast, [key], ["-4"]) == 1
    assert await fast.call(pack([b"GET", key.encode()])) == b"6"
    assert await fast.call(pack([b"SCRIPT", b"EXISTS", script.sha.encode()])) == [1]
    await fast.call(pack([b"DEL", key.encode()]))
    await fast.aclose()


async def test_unreachable_redis_raises_a_store_error() -> None:
    store = RedisBudgetStore("redis://127.0.0.1:9/0", timeout=0.2)
    with pytest.raises(StoreError):
        await store.reserve("acme", slots(), amounts(1), limits(), 60)
    await store.aclose()


def test_store_urls() -> None:
    assert isinstance(BUDGET_STORES.open("memory://"), MemoryBudgetStore)
    assert isinstance(BUDGET_STORES.open("redis://127.0.0.1:6379/0"), RedisBudgetStore)
    with pytest.raises(
        ConfigError, match=r"Unknown budget store 'mongodb://x': use one of memory://, redis://"
    ):
        BUDGET_STORES.open("mongodb://x")


def test_month_slots_follow_the_calendar() -> None:
    # 2024-02-15 12:00 UTC: February of a leap year is 29 days
    now = 1708000000.0
    month = SlotClock().slots(now)[4]
    assert month.window.name == "tokens_per_month"
    assert month.start == 1706745600  # 2024-02-01
    assert month.end == 1709251200  # 2024-03-01
    december = SlotClock().slots(1734264000.0)[6]  # 2024-12-15
    assert december.end == 1735689600  # 2025-01-01


async def test_the_memory_store_forgets_tenants_with_nothing_left_to_remember() -> None:
    # tenants named by a bare header: every new name a client makes up must not stay for good
    clock = [time.time()]
    store = MemoryBudgetStore(clock=lambda: clock[0])
    earlier = SlotClock().slots(clock[0])
    await store.set_overrides("vip", {"tokens_per_minute": 500})
    await store.reserve("steady", earlier, amounts(10), limits(), 0)
    for n in range(3000):
        await store.reserve(f"passer-{n}", earlier, amounts(10), limits(), 0, token=f"t{n}")
    held = len(store._tenants)
    assert held >= 3000  # all of them inside the month's window: each one's usage is still counted

    clock[0] += 40 * 86_400  # every window of those requests is over
    now = SlotClock().slots(clock[0])
    await store.reserve("steady", now, amounts(5), limits(), 0)
    for n in range(3000):
        await store.reserve(f"later-{n}", now, amounts(10), limits(), 0)
    assert len(store._tenants) <= held  # the earlier passers-by were forgotten, not added to
    assert not any(name.startswith("passer-") for name in store._tenants)
    assert await store.get_overrides("vip") == {"tokens_per_minute": 500}  # an override is remembered
    assert (await store.usage("steady", now))[1] == 5  # a live window keeps its count
    assert (await store.usage("later-2999", now))[1] == 10
