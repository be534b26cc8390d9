"""The Redis budget store's lookup script: one call reads an exact cache entry and reserves, what a hit
costs (unmarked) when the entry is there, the whole estimate (marked) when not; only for an entry on
the store's own server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from asgi_aigw.budget import RedisBudgetStore
from asgi_aigw.budget.windows import WINDOW_NAMES, Slot, SlotClock

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(
    redis_url: str, redis_prefix: str, redis_client: aioredis.Redis
) -> AsyncIterator[RedisBudgetStore]:
    store = RedisBudgetStore(redis_url, key_prefix=redis_prefix)
    yield store
    await store.aclose()


def slots() -> list[Slot]:
    return SlotClock().slots(time.time())


def limits(**values: int) -> list[int]:
    return [values.get(name, -1) for name in WINDOW_NAMES]


FULL = [1, 50, 50, 50, 50, 0, 0]  # requests, then tokens in every token window, then money
HIT = [1, 0, 0, 0, 0, 0, 0]


async def usage(store: RedisBudgetStore, now: list[Slot]) -> list[int]:
    return await store.usage("acme", now)


async def markers(redis_client: aioredis.Redis, prefix: str) -> list[bytes]:
    return [key async for key in redis_client.scan_iter(match=f"{prefix}{{acme}}:r:*")]


async def test_a_found_entry_reserves_what_a_hit_costs_and_the_next_lookup_drops_its_marker(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:one".encode()
    await redis_client.set(entry, b"the answer")
    reservation, found, hit = await store.reserve_and_get(
        "acme", now, FULL, HIT, limits(tokens_per_minute=10), 60, entry, token="t1"
    )
    # the tokens left (10) could not hold the estimate (50), but a hit costs none of them
    assert reservation.allowed
    assert (found, hit) == (b"the answer", True)
    assert await usage(store, now) == HIT
    # the marker records what was reserved, for a reply that would have been lost; this one came, so
    # the tenant's next lookup deletes it (no call of its own)
    marker = f"{redis_prefix}{{acme}}:r:t1".encode()
    assert await markers(redis_client, redis_prefix) == [marker]
    assert await redis_client.get(marker) == b"1,0,0,0,0,0,0"
    await store.reserve_and_get("acme", now, FULL, HIT, limits(), 60, entry, token="t1b")
    assert await markers(redis_client, redis_prefix) == [f"{redis_prefix}{{acme}}:r:t1b".encode()]


async def test_a_refused_hit_leaves_no_marker(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:one".encode()
    await redis_client.set(entry, b"the answer")
    cap = limits(requests_per_minute=0)
    reservation, _, _ = await store.reserve_and_get("acme", now, FULL, HIT, cap, 60, entry, token="t0")
    assert not reservation.allowed
    assert await markers(redis_client, redis_prefix) == []


@pytest.mark.parametrize("found", [True, False], ids=["hit", "miss"])
async def test_a_lookup_whose_reply_was_lost_is_given_back_exactly(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str, found: bool
) -> None:
    """The caller cannot tell a hit's reservation from a miss's; the marker can."""
    now = slots()
    entry = f"{redis_prefix}cache:e:one".encode()
    if found:
        await redis_client.set(entry, b"the answer")
    await store.reserve("acme", now, [1, 5, 5, 5, 5, 0, 0], limits(), 60)  # another request's
    await store.reserve_and_get("acme", now, FULL, HIT, limits(), 60, entry, token="lost")
    await store.give_back("acme", now, "lost")
    assert await usage(store, now) == [1, 5, 5, 5, 5, 0, 0]
    await store.give_back("acme", now, "lost")  # a repeat changes nothing
    await store.give_back("acme", now, "never-made")
    assert await usage(store, now) == [1, 5, 5, 5, 5, 0, 0]
    assert await markers(redis_client, redis_prefix) == []


async def test_a_reserve_marker_is_not_given_back_by_amounts_it_does_not_record(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    await store.reserve("acme", now, FULL, limits(), 60, token="plain")
    await store.give_back("acme", now, "plain")
    assert await usage(store, now) == FULL


async def test_a_missing_entry_reserves_the_estimate_under_its_marker(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:none".encode()
    reservation, found, hit = await store.reserve_and_get(
        "acme", now, FULL, HIT, limits(tokens_per_minute=100), 60, entry, token="t2"
    )
    assert reservation.allowed
    assert (found, hit) == (None, False)
    assert reservation.used[:2] == [1, 50]
    assert await usage(store, now) == FULL
    marker = f"{redis_prefix}{{acme}}:r:t2".encode()
    assert await markers(redis_client, redis_prefix) == [marker]
    # kept until the last window it was made in has ended, and its grace after
    assert await redis_client.expiretime(marker) == max(slot.end for slot in now) + 60
    # the settlement of a marked reservation applies once
    await store.settle("acme", now, [0, -20, -20, -20, -20, 0, 0], token="t2")
    await store.settle("acme", now, [0, -20, -20, -20, -20, 0, 0], token="t2")
    assert await usage(store, now) == [1, 30, 30, 30, 30, 0, 0]


async def test_a_reservation_without_a_token_is_unmarked(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:none".encode()
    reservation, _, hit = await store.reserve_and_get("acme", now, FULL, HIT, limits(), 60, entry)
    assert reservation.allowed
    assert not hit
    assert await usage(store, now) == FULL
    assert await markers(redis_client, redis_prefix) == []


async def test_a_miss_over_the_limit_is_refused_and_reserves_nothing(
    store: RedisBudgetStore, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:none".encode()
    reservation, found, hit = await store.reserve_and_get(
        "acme", now, FULL, HIT, limits(tokens_per_minute=10), 60, entry, token="t3"
    )
    assert not reservation.allowed
    assert (found, hit) == (None, False)
    assert reservation.limits[1] == 10
    assert await usage(store, now) == [0] * 7


async def test_a_hit_over_the_request_limit_is_refused_with_its_entry_withheld_by_the_caller(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:one".encode()
    await redis_client.set(entry, b"the answer")
    cap = limits(requests_per_minute=1)
    first = await store.reserve_and_get("acme", now, FULL, HIT, cap, 60, entry, token="a")
    second = await store.reserve_and_get("acme", now, FULL, HIT, cap, 60, entry, token="b")
    assert first[0].allowed
    assert not second[0].allowed
    assert second[2]  # it was a hit that was refused
    assert await usage(store, now) == HIT


async def test_without_hit_amounts_a_hit_reserves_the_estimate(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """A budget that charges hits tokens or money reserves the whole estimate, found or not."""
    now = slots()
    entry = f"{redis_prefix}cache:e:one".encode()
    await redis_client.set(entry, b"the answer")
    reservation, found, hit = await store.reserve_and_get(
        "acme", now, FULL, None, limits(), 60, entry, token="t4"
    )
    assert reservation.allowed
    assert (found, hit) == (b"the answer", False)
    assert await usage(store, now) == FULL
    assert len(await markers(redis_client, redis_prefix)) == 1


async def test_a_live_override_applies_to_the_lookup_too(store: RedisBudgetStore, redis_prefix: str) -> None:
    now = slots()
    await store.set_overrides("acme", {"tokens_per_minute": 20})
    entry = f"{redis_prefix}cache:e:none".encode()
    reservation, _, _ = await store.reserve_and_get(
        "acme", now, FULL, HIT, limits(tokens_per_minute=1000), 60, entry, token="t5"
    )
    assert not reservation.allowed
    assert reservation.limits[1] == 20


async def test_the_store_reads_only_entries_of_its_own_server(redis_url: str, redis_prefix: str) -> None:
    store = RedisBudgetStore(redis_url, key_prefix=redis_prefix)
    assert store.reads(redis_url)
    assert not store.reads("redis://127.0.0.1:1/0")
    assert not store.reads("redis://127.0.0.2:6379/0")
    given = aioredis.Redis.from_url(redis_url)
    assert not RedisBudgetStore(client=given, key_prefix=redis_prefix).reads(redis_url)
    await given.aclose()
    cluster = RedisBudgetStore("redis+cluster://127.0.0.1:7000", key_prefix=redis_prefix)
    assert not cluster.reads("redis+cluster://127.0.0.1:7000")  # an entry has its own slot


def set_command(key: bytes, value: bytes) -> bytes:
    return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value)


async def test_a_settlement_and_entries_leave_together_and_apply(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    entry = f"{redis_prefix}cache:e:none".encode()
    await store.reserve_and_get("acme", now, FULL, HIT, limits(), 60, entry, token="s1")
    key = f"{redis_prefix}cache:e:written".encode()
    bad = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key)  # not an integer: an error reply
    errors = await store.settle_and_send(
        "acme", now, [0, -30, -30, -30, -30, 0, 0], "s1", [set_command(key, b"ok"), bad]
    )
    assert errors[0] is None
    assert errors[1] is not None
    assert "not an integer" in str(errors[1])
    assert await redis_client.get(key) == b"ok"
    assert await usage(store, now) == [1, 20, 20, 20, 20, 0, 0]
    assert await markers(redis_client, redis_prefix) == []
    # nothing to settle: the entries alone
    assert await store.settle_and_send("acme", now, None, None, [set_command(key, b"again")]) == [None]
    assert await redis_client.get(key) == b"again"
    assert await usage(store, now) == [1, 20, 20, 20, 20, 0, 0]


async def test_a_settlement_sent_with_entries_survives_a_script_flush(
    store: RedisBudgetStore, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    now = slots()
    await store.reserve("acme", now, FULL, limits(), 60, token="s2")
    await redis_client.script_flush()
    key = f"{redis_prefix}cache:e:flushed".encode()
    errors = await store.settle_and_send(
        "acme", now, [0, -50, -50, -50, -50, 0, 0], "s2", [set_command(key, b"v")]
    )
    assert errors == [None]
    assert await usage(store, now) == [1, 0, 0, 0, 0, 0, 0]
