"""Pins for the budget stores: the memory and Redis stores agree on every edge of the contract.

Each test runs on the memory store, the Redis store from a URL and the Redis store given a redis-py
client (real Redis), and kills mutants of ``asgi_aigw/budget/memory.py`` and ``budget/redis.py`` that
the behaviour tests let through (``python bench/mutation.py budget-memory budget-redis``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from asgi_aigw.budget import MemoryBudgetStore, RedisBudgetStore, StoreError
from asgi_aigw.budget.windows import WINDOW_NAMES, Slot, SlotClock

from . import budget_helpers

TPM = WINDOW_NAMES.index("tokens_per_minute")
RPM = WINDOW_NAMES.index("requests_per_minute")


@pytest.fixture(params=["memory", "redis-url", "redis-client"])
async def store(request: Any, redis_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    given = request.param == "redis-client"
    async with budget_helpers.redis_budget_store(redis_url, redis_prefix, given_client=given) as store:
        yield store


def slots(now: float | None = None) -> list[Slot]:
    return list(SlotClock().slots(time.time() if now is None else now))


def ended(seconds_ago: int, now: int | None = None) -> list[Slot]:
    """The current slots moved into the past: every one ended ``seconds_ago`` seconds ago."""
    now = int(time.time()) if now is None else now
    return [Slot(s.window, s.start - (s.end - now) - seconds_ago, now - seconds_ago) for s in slots()]


def limits(**values: int) -> list[int]:
    return [values.get(name, -1) for name in WINDOW_NAMES]


def amounts(tokens: int, cost: int = 0, requests: int = 1) -> list[int]:
    return [requests, tokens, tokens, tokens, tokens, cost, cost]


async def test_a_limit_is_reached_exactly_and_never_passed(store: Any) -> None:
    now, lim = slots(), limits(tokens_per_minute=100)
    assert (await store.reserve("acme", now, amounts(60), lim, 60)).allowed
    exact = await store.reserve("acme", now, amounts(40), lim, 60)
    assert exact.allowed
    assert exact.used[TPM] == 100
    over = await store.reserve("acme", now, amounts(1), lim, 60)
    assert not over.allowed
    assert over.used[TPM] == 100
    assert (await store.usage("acme", now))[TPM] == 100


async def test_a_zero_limit_refuses_every_request(store: Any) -> None:
    # 0 is a limit (nothing allowed), not "unlimited": only -1 means no limit
    now = slots()
    refused = await store.reserve("acme", now, amounts(1), limits(requests_per_minute=0), 60)
    assert not refused.allowed
    assert refused.limits[RPM] == 0
    assert await store.usage("acme", now) == [0] * 7
    await store.set_overrides("acme", {"tokens_per_minute": 0})
    again = await store.reserve("acme", now, amounts(1, requests=0), limits(), 60)
    assert not again.allowed
    assert again.limits[TPM] == 0


async def test_a_window_with_nothing_to_add_does_not_refuse(store: Any) -> None:
    # a request with no cost passes a spent cost budget: only what it adds is checked
    now = slots()
    reply = await store.reserve("acme", now, amounts(10, cost=0), limits(cost_per_day=0), 60)
    assert reply.allowed
    assert (await store.usage("acme", now))[TPM] == 10


async def test_a_repeated_reservation_with_its_token_counts_once(store: Any) -> None:
    now, lim = slots(), limits(tokens_per_minute=100)
    first = await store.reserve("acme", now, amounts(60), lim, 60, token="t1")
    again = await store.reserve("acme", now, amounts(60), lim, 60, token="t1")
    assert first.allowed
    assert again.allowed  # over the limit if counted twice, and allowed: it stands already
    assert again.used[TPM] == 60
    assert again.limits[TPM] == 100
    assert (await store.usage("acme", now))[TPM] == 60
    other = await store.reserve("acme", now, amounts(60), lim, 60, token="t2")
    assert not other.allowed


async def test_a_settlement_applies_once_and_only_to_a_reservation_made(store: Any) -> None:
    now, lim = slots(), limits(tokens_per_minute=100)
    await store.reserve("acme", now, amounts(60), lim, 60, token="t1")
    await store.settle("acme", now, [0, -50, 0, 0, 0, 0, 0], token="t1")
    await store.settle("acme", now, [0, -50, 0, 0, 0, 0, 0], token="t1")  # sent again: nothing
    assert (await store.usage("acme", now))[TPM] == 10
    await store.settle("acme", now, [0, -10, 0, 0, 0, 0, 0], token="never-made")
    assert (await store.usage("acme", now))[TPM] == 10
    refused = await store.reserve("acme", now, amounts(95), lim, 60, token="t3")
    assert not refused.allowed
    await store.settle("acme", now, [0, -10, 0, 0, 0, 0, 0], token="t3")  # refused: nothing to settle
    assert (await store.usage("acme", now))[TPM] == 10
    await store.settle("acme", now, [0, -10, 0, 0, 0, 0, 0])  # no token: applies
    assert (await store.usage("acme", now))[TPM] == 0


async def test_a_settlement_never_creates_a_counter(store: Any) -> None:
    now = slots()
    await store.settle("acme", now, [1, 5, 5, 5, 5, 5, 5])
    assert await store.usage("acme", now) == [0] * 7


async def test_counters_live_until_grace_after_their_slot(store: Any) -> None:
    past = ended(5)
    kept = await store.reserve("acme", past, amounts(7), limits(), 60)
    assert kept.allowed
    assert (await store.usage("acme", past))[TPM] == 7  # ended 5 s ago, 60 s of grace: still counted
    await store.reserve("acme", past, amounts(3), limits(), 60)
    assert (await store.usage("acme", past))[TPM] == 10
    gone = ended(5)
    first = await store.reserve("zeta", gone, amounts(7), limits(), 2)
    assert first.used[TPM] == 7
    # grace over (ended 5 s ago, 2 s of grace): the counter is gone, a new one starts from the amount
    assert (await store.usage("zeta", gone))[TPM] == 0
    second = await store.reserve("zeta", gone, amounts(3), limits(tokens_per_minute=5), 2)
    assert second.allowed
    assert second.used[TPM] == 3


async def test_an_override_set_to_zero_and_removed(store: Any) -> None:
    await store.set_overrides("acme", {"tokens_per_minute": 0, "requests_per_minute": 5})
    assert await store.get_overrides("acme") == {"tokens_per_minute": 0, "requests_per_minute": 5}
    await store.set_overrides("acme", {"requests_per_minute": None})
    assert await store.get_overrides("acme") == {"tokens_per_minute": 0}
    assert await store.get_overrides("other") == {}


def test_the_redis_store_takes_a_url_or_a_client_not_both(redis_url: str) -> None:
    with pytest.raises(ValueError, match="not both"):
        RedisBudgetStore()
    client = aioredis.Redis.from_url(redis_url)
    with pytest.raises(ValueError, match="not both"):
        RedisBudgetStore(redis_url, client=client)


async def test_only_what_a_request_adds_is_checked_against_a_spent_budget(store: Any) -> None:
    # the cost budget is already spent; a request that costs nothing more still passes, one that
    # costs anything is refused
    now = slots()
    await store.reserve("acme", now, amounts(10, cost=5), limits(), 60)
    free = await store.reserve("acme", now, amounts(1, cost=0), limits(cost_per_day=3), 60)
    assert free.allowed
    paid = await store.reserve("acme", now, amounts(1, cost=1), limits(cost_per_day=3), 60)
    assert not paid.allowed


async def test_a_window_reserved_nothing_gets_no_counter_to_settle_into(store: Any) -> None:
    # both stores settle only into counters that exist: a window the reservation added nothing to
    # has none (Redis creates keys only by INCRBY), so its settlement is dropped
    now = slots()
    await store.reserve("acme", now, amounts(10, cost=0), limits(), 60)
    await store.settle("acme", now, [0, 0, 0, 0, 0, 5, 5])
    assert await store.usage("acme", now) == [1, 10, 10, 10, 10, 0, 0]


async def test_the_memory_store_sweeps_expired_counters_and_reservations() -> None:
    # memory only grows with live slots: expired counters and forgotten reservations are dropped
    store = MemoryBudgetStore()
    base = int(time.time())
    for i in range(10):  # 70 counters in slots whose grace is over: past the sweep threshold
        await store.reserve("acme", ended(100 + i, base), amounts(1, cost=1), limits(), 0)
    state = store._tenants["acme"]
    assert len(state.counters) == 70
    await store.reserve("acme", slots(), amounts(1, cost=1), limits(), 60)
    assert len(state.counters) == 7  # only the live slots
    old = ended(100)
    for i in range(3000):  # reservations of slots long over, in 7 counters: the memory stays bounded
        await store.reserve("acme", old, amounts(1, cost=1), limits(), 0, token=f"t{i}")
        assert len(state.reservations) <= 1100
    assert len(state.counters) == 14  # under its own threshold: the reservations alone were swept


async def test_a_reservation_is_remembered_until_its_slots_grace_is_over(store: Any) -> None:
    # a reservation in the minute window only (ends within 60 s), 120 s of grace: still settled after
    # more than a thousand others (the memory store sweeps what it may forget at that point)
    minute = [s for s in slots() if s.window.name == "tokens_per_minute"]
    await store.reserve("acme", minute, [50], [-1], 120, token="first")
    for i in range(1025):
        await store.reserve("acme", minute, [1], [-1], 120, token=f"t{i}")
    await store.reserve("acme", minute, [1], [-1], 120)
    await store.settle("acme", minute, [-40], token="first")
    assert await store.usage("acme", minute) == [50 + 1025 + 1 - 40]


async def test_each_minute_counts_on_its_own(store: Any) -> None:
    # the Redis store caches a tenant's key names: a new minute must get its own counters
    start = time.time()
    this_minute, next_minute = slots(start), slots(start + 60)
    await store.reserve("acme", this_minute, amounts(5), limits(), 60)
    await store.reserve("acme", next_minute, amounts(7), limits(), 120)
    assert (await store.usage("acme", this_minute))[TPM] == 5
    assert (await store.usage("acme", next_minute))[TPM] == 7


@pytest.mark.parametrize("given", [False, True], ids=["url", "client"])
async def test_every_call_to_an_unreachable_redis_is_a_store_error(given: bool) -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2) if given else None
    store = RedisBudgetStore(None if given else "redis://127.0.0.1:9/0", client=client, timeout=0.2)
    now = slots()
    calls = [
        store.reserve("acme", now, amounts(1), limits(), 60),
        store.settle("acme", now, [1] * 7),
        store.usage("acme", now),
        store.reset_usage("acme", now),
        store.get_overrides("acme"),
        store.set_overrides("acme", {"tokens_per_minute": 5}),
        store.clear_overrides("acme"),
    ]
    for call in calls:
        with pytest.raises(StoreError):
            await call
    await store.aclose()
    if client is not None:
        await client.aclose()


class CountingClient:
    """A real redis-py client that records how many script calls are in flight at once."""

    def __init__(self, client: Any) -> None:
        self.client, self.in_flight, self.most = client, 0, 0

    async def evalsha(self, *args: Any) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # long enough for the others to pile up
            return await self.client.evalsha(*args)
        finally:
            self.in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


async def test_calls_in_flight_are_capped_by_max_connections(redis_url: str, redis_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    counting = CountingClient(client)
    store = RedisBudgetStore(client=counting, key_prefix=redis_prefix, max_connections=3)
    now = slots()
    replies = await asyncio.gather(*(store.reserve("acme", now, amounts(1), limits(), 60) for _ in range(20)))
    assert all(r.allowed for r in replies)
    assert counting.most == 3
    assert (await store.usage("acme", now))[TPM] == 20
    await client.delete(*[key async for key in client.scan_iter(match=f"{redis_prefix}*")])
    await client.aclose()


def test_the_key_name_cache_stays_bounded(redis_url: str) -> None:
    # one entry per tenant and minute: a gateway with many tenants must not grow without end
    store = RedisBudgetStore(redis_url)
    now = slots()
    for i in range(10_050):
        assert store._keys(f"tenant-{i}", now)[0] == f"aigw:{{tenant-{i}}}:limits"
    assert len(store._key_cache) <= 10_001
