"""Window arithmetic, header figures and the meaning of a limit of 0, pinned exactly: each test fails if
the check it names is deleted or changed (minute slots, the cached slots' roll-over, UTC month bounds
under a local time zone that is a different month, reset-time formatting, remaining budget)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from asgi_aigw.budget import (
    BudgetConfig,
    BudgetMiddleware,
    Limits,
    MemoryBudgetStore,
    RedisBudgetStore,
)
from asgi_aigw.budget.headers import ratelimit_headers, retry_after
from asgi_aigw.budget.middleware import limits_vector
from asgi_aigw.budget.windows import (
    BY_NAME,
    WINDOW_NAMES,
    WINDOWS,
    SlotClock,
    format_amount,
    format_duration,
    from_units,
    to_units,
)

from . import budget_helpers
from .budget_helpers import JSONApp, chat, completion, fixed_clock, token_counter

# 2024-03-10 13:47:25.5 UTC, a Sunday
INSTANT = datetime(2024, 3, 10, 13, 47, 25, 500_000, tzinfo=UTC).timestamp()


def utc(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


_frozen_now = budget_helpers.frozen_now


# -- slots ------------------------------------------------------------------------------------------------


def test_every_slot_has_exact_utc_bounds() -> None:
    slots = {slot.window.name: slot for slot in SlotClock().slots(INSTANT)}
    minute = (utc(2024, 3, 10, 13, 47), utc(2024, 3, 10, 13, 48))
    hour = (utc(2024, 3, 10, 13), utc(2024, 3, 10, 14))
    day = (utc(2024, 3, 10), utc(2024, 3, 11))
    month = (utc(2024, 3, 1), utc(2024, 4, 1))
    expected = {
        "requests_per_minute": minute,
        "tokens_per_minute": minute,
        "tokens_per_hour": hour,
        "tokens_per_day": day,
        "tokens_per_month": month,
        "cost_per_day": day,
        "cost_per_month": month,
    }
    assert {name: (s.start, s.end) for name, s in slots.items()} == expected
    assert slots["tokens_per_minute"].suffix == f"tpm:{minute[0]}"
    assert [s.window.name for s in SlotClock().slots(INSTANT)] == list(WINDOW_NAMES)


def test_cached_slots_roll_over_at_the_minute_and_only_then() -> None:
    clock = SlotClock()
    start = utc(2024, 3, 10, 13, 47)
    first = clock.slots(start + 0.0)
    assert clock.slots(start + 59.999) is first  # the same minute: computed once
    later = clock.slots(start + 60.0)
    assert later is not first
    assert later[0].start == start + 60
    assert later[0].end == start + 120
    # an hour boundary moves the hour slot too, though only the minute is the cache key
    top = clock.slots(utc(2024, 3, 10, 14, 0, 0) + 0.5)
    assert top[2].start == utc(2024, 3, 10, 14)


def test_the_last_second_of_a_month_and_the_first_of_the_next() -> None:
    clock = SlotClock()
    end_of_feb = clock.slots(utc(2024, 3, 1) - 0.25)
    assert (end_of_feb[4].start, end_of_feb[4].end) == (utc(2024, 2, 1), utc(2024, 3, 1))
    assert (end_of_feb[0].start, end_of_feb[0].end) == (utc(2024, 2, 29, 23, 59), utc(2024, 3, 1))
    march = clock.slots(utc(2024, 3, 1))
    assert (march[4].start, march[4].end) == (utc(2024, 3, 1), utc(2024, 4, 1))
    december = SlotClock().slots(utc(2024, 12, 31, 23, 59, 59))
    assert (december[6].start, december[6].end) == (utc(2024, 12, 1), utc(2025, 1, 1))
    # every month of a year ends on the first of the next, in the same year until December
    for month in range(1, 12):
        slots = SlotClock().slots(utc(2025, month, 15))
        assert (slots[6].start, slots[6].end) == (utc(2025, month, 1), utc(2025, month + 1, 1)), month


@pytest.mark.parametrize(
    ("zone", "now", "month"),
    [
        # 2024-02-29 23:30 UTC is already 1 March at UTC+14
        ("Pacific/Kiritimati", utc(2024, 2, 29, 23, 30), (2024, 2)),
        # 2024-03-01 01:00 UTC is still 29 February at UTC-8
        ("America/Los_Angeles", utc(2024, 3, 1, 1, 0), (2024, 3)),
    ],
)
def test_month_windows_are_utc_months_whatever_the_local_time_zone(
    zone: str, now: int, month: tuple[int, int]
) -> None:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        local = time.localtime(now)
        assert (local.tm_year, local.tm_mon) != month, "the time zone did not apply"
        slot = SlotClock().slots(now)[4]
        assert slot.window.name == "tokens_per_month"
        assert (slot.start, slot.end) == (utc(*month, 1), utc(month[0], month[1] + 1, 1))
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


# -- formatting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3.0, "0s"),
        (0.0, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (0.5001, "501ms"),
        (1.0, "1s"),
        (1.2, "2s"),
        (59.0, "59s"),
        (59.5, "1m0s"),
        (360.0, "6m0s"),
        (3599.0, "59m59s"),
        (3600.0, "1h0m0s"),
        (7380.0, "2h3m0s"),
        (86399.0, "23h59m59s"),
    ],
)
def test_reset_times_read_like_openais(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, b"1"), (0.2, b"1"), (1.0, b"1"), (1.2, b"2"), (60.0, b"60")]
)
def test_retry_after_is_whole_seconds_at_least_one(seconds: float, header: bytes) -> None:
    assert retry_after(seconds) == header


def test_amounts_in_headers_and_messages() -> None:
    tokens, money = BY_NAME["tokens_per_day"], BY_NAME["cost_per_day"]
    assert format_amount(tokens, 2000) == "2000"
    assert format_amount(money, 1_500_000_000) == "1.5"
    assert format_amount(money, 123_456_789) == "0.123457"
    assert format_amount(money, 2_000_000_000) == "2"
    assert format_amount(money, 0) == "0"
    assert to_units(money, 1.25) == 1_250_000_000
    assert to_units(tokens, 10.0) == 10
    assert to_units(tokens, 0) == 0  # a limit of 0 is a limit, not "unlimited"
    assert to_units(money, 0) == 0
    assert to_units(tokens, -1) == -1
    assert from_units(money, 250_000_000) == 0.25
    assert from_units(money, -1) == -1
    assert from_units(tokens, 7) == 7


# -- the figures behind the remaining-budget headers --------------------------------------------------------


def test_ratelimit_headers_report_limit_remaining_and_reset_of_limited_windows() -> None:
    slots = SlotClock().slots(INSTANT)
    used = [3, 1500, 1500, 1500, 1500, 250_000_000, 250_000_000]
    limits = [10, 1000, -1, 0, -1, 1_000_000_000, -1]
    headers = dict(ratelimit_headers(slots, used, limits, INSTANT))
    assert headers == {
        b"x-ratelimit-limit-requests": b"10",
        b"x-ratelimit-remaining-requests": b"7",
        b"x-ratelimit-reset-requests": b"35s",  # 34.5 s left in the minute, rounded up
        b"x-ratelimit-limit-tokens": b"1000",
        b"x-ratelimit-remaining-tokens": b"0",  # over the limit: never negative
        b"x-ratelimit-reset-tokens": b"35s",
        b"x-ratelimit-limit-tokens-day": b"0",  # a limit of 0 is reported, not skipped
        b"x-ratelimit-remaining-tokens-day": b"0",
        b"x-ratelimit-reset-tokens-day": b"10h12m35s",
        b"x-ratelimit-limit-cost-day": b"1",
        b"x-ratelimit-remaining-cost-day": b"0.75",
        b"x-ratelimit-reset-cost-day": b"10h12m35s",
    }


store = budget_helpers.store


async def post(app: Any, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post("/v1/chat/completions", json=body)


async def test_answer_headers_show_what_remains_after_this_requests_reservation(
    store: RedisBudgetStore,
) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
    config = BudgetConfig(limits=Limits(requests_per_minute=5, tokens_per_day=1000))
    app = BudgetMiddleware(
        JSONApp(completion("x", usage)),
        config=config,
        store=store,
        token_counter=token_counter(),
        clock=fixed_clock,
    )
    body = chat(max_tokens=50)
    prompt = token_counter().count_chat(body, "gpt-4o-mini")
    first = await post(app, body)
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert first.headers["x-ratelimit-remaining-tokens-day"] == str(1000 - (prompt + 50))  # reserved
    second = await post(app, body)
    assert second.headers["x-ratelimit-remaining-requests"] == "3"
    # the first was settled at its real 30 tokens; the second holds its reservation
    assert second.headers["x-ratelimit-remaining-tokens-day"] == str(1000 - 30 - (prompt + 50))
    assert second.headers["x-ratelimit-limit-tokens-day"] == "1000"
    assert "x-ratelimit-limit-tokens" not in second.headers  # no per-minute token limit set


# -- a limit of 0 ------------------------------------------------------------------------------------------


def test_a_limit_of_0_is_a_limit_in_the_store_units() -> None:
    vector = limits_vector(Limits(requests_per_minute=0, cost_per_day=0, tokens_per_hour=-1))
    assert vector[WINDOW_NAMES.index("requests_per_minute")] == 0
    assert vector[WINDOW_NAMES.index("cost_per_day")] == 0
    assert vector[WINDOW_NAMES.index("tokens_per_hour")] == -1
    assert vector[WINDOW_NAMES.index("tokens_per_day")] == -1  # unset: none
    inherited = limits_vector(Limits(), Limits(tokens_per_day=0))
    assert inherited[WINDOW_NAMES.index("tokens_per_day")] == 0


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_limit_of_0_refuses_everything_in_the_stores(kind: str, store: RedisBudgetStore) -> None:
    backend: Any = MemoryBudgetStore() if kind == "memory" else store
    slots = SlotClock().slots(time.time())
    for window in WINDOWS:
        limits = [0 if w is window else -1 for w in WINDOWS]
        amounts = [1 if w is window else 0 for w in WINDOWS]
        reservation = await backend.reserve("zero", slots, amounts, limits, 60)
        assert not reservation.allowed, window.name
    # nothing asked of a window with a limit of 0: allowed (an embeddings call costs no output)
    limits = [0 if w.name == "cost_per_day" else -1 for w in WINDOWS]
    assert (await backend.reserve("zero", slots, [1, 5, 5, 5, 5, 0, 0], limits, 60)).allowed


async def test_a_request_limit_of_0_is_a_429_that_says_so(store: RedisBudgetStore) -> None:
    inner = JSONApp(completion("x", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
    config = BudgetConfig(limits=Limits(requests_per_minute=0))
    app = BudgetMiddleware(
        inner, config=config, store=store, token_counter=token_counter(), clock=fixed_clock
    )
    response = await post(app, chat())
    assert response.status_code == 429
    assert "No requests are allowed" in response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-ratelimit-limit-requests"] == "0"
    assert inner.calls == 0


def test_slot_amounts_and_deltas_follow_each_slot_s_metric_whichever_slots_come() -> None:
    from asgi_aigw.budget.estimate import slot_amounts, slot_deltas

    minute = SlotClock().slots(1_700_000_000.0)
    later = SlotClock().slots(1_700_000_000.0 + 3600)
    # per-user windows come after the tenant's: a list of other slots, read between the two
    both = [*minute, *minute[:2]]
    metrics = {"requests": 1, "tokens": 100, "cost": 7000}
    for slots in (minute, both, minute, later, both):
        expected = [metrics[slot.window.metric] for slot in slots]
        assert slot_amounts(slots, 100, 7000) == expected
        held = [amount * 3 for amount in expected]
        deltas = slot_deltas(slots, 40, 1, 900, held)
        actual = {"requests": 1, "tokens": 40, "cost": 900}
        assert deltas == [actual[s.window.metric] - h for s, h in zip(slots, held, strict=True)]
