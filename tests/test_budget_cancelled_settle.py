"""A request cancelled while its reservation is under way gives it back; one cancelled while its settlement
is under way is still settled: by the settlement itself, or,
when the cancellation cut it short, again in a task of its own (the reservation's token makes a second
one harmless). The reservation never stays counted at its estimate. Whether the cancellation comes from
asyncio (``task.cancel()``) or from an anyio scope (Starlette, FastAPI), the outcome is the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import orjson
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, MemoryBudgetStore
from asgi_aigw.budget.windows import Slot
from asgi_aigw.testing.raw_asgi import post_scope

from . import budget_helpers
from .budget_helpers import (
    JSONApp,
    chat,
    completion,
    fixed_clock,
    redis_budget_store,
    token_counter,
    usage_of,
)

frozen_now = budget_helpers.frozen_now

USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


class SlowSettle:
    """A budget store (memory or Redis) whose first settlement waits until released, the request being
    cancelled meanwhile: before it reaches the store, or after the store applied it (its reply lost)."""

    def __init__(self, inner: Any, applied_first: bool) -> None:
        self.inner = inner
        self.applied_first = applied_first
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.settles = 0

    #: Whether the reservation's reply waits until released (:class:`LostReservation`).
    holds_reservation = False

    async def reserve(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        limits: Sequence[int],
        grace: int,
        *,
        token: str | None = None,
    ) -> Any:
        made = await self.inner.reserve(tenant, slots, amounts, limits, grace, token=token)
        if self.holds_reservation:  # made, and its reply held back while the request is cancelled
            self.entered.set()
            await self.release.wait()
        return made

    async def settle(
        self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int], *, token: str | None = None
    ) -> None:
        self.settles += 1
        if self.settles > 1:
            await self.inner.settle(tenant, slots, deltas, token=token)
            return
        if self.applied_first:
            await self.inner.settle(tenant, slots, deltas, token=token)
        self.entered.set()
        await self.release.wait()
        if not self.applied_first:
            await self.inner.settle(tenant, slots, deltas, token=token)

    async def usage(self, tenant: str, slots: Sequence[Slot]) -> list[int]:
        return list(await self.inner.usage(tenant, slots))

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(params=["memory", "redis"])
async def inner_store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The memory store, and the Redis one under the test's own key prefix (emptied afterwards)."""
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    async with redis_budget_store(url, prefix) as store:
        yield store


def budget(store: Any) -> BudgetMiddleware:
    """The budget over a store that stands for the real one (only what the budget calls)."""
    config = BudgetConfig(limits=Limits(tokens_per_minute=100_000), headers=False)
    return BudgetMiddleware(
        JSONApp(completion("Lima.", USAGE)),
        config=config,
        store=store,
        token_counter=token_counter(),
        clock=fixed_clock,
    )


async def request(app: Any) -> None:
    body = orjson.dumps(chat("What is the capital of Peru?", max_tokens=50))
    scope = post_scope("/v1/chat/completions", body, [(b"x-tenant-id", b"acme")])
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        return None

    await app(scope, receive, send)


@pytest.mark.parametrize("applied_first", [False, True], ids=["cut-before-the-store", "reply-lost"])
async def test_a_request_cancelled_by_asyncio_while_settling_is_settled_in_a_task(
    inner_store: Any, applied_first: bool
) -> None:
    store = SlowSettle(inner_store, applied_first)
    app = budget(store)
    task = asyncio.create_task(request(app))
    await asyncio.wait_for(store.entered.wait(), 5)
    if not applied_first:
        before = await usage_of(store.inner, "default")
        assert before["tokens_per_minute"] > USAGE["total_tokens"]  # the estimate is held
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    store.release.set()
    await app.aclose()  # waits for the settlement finishing in its own task
    after = await usage_of(store.inner, "default")
    # replaced by what the answer cost, once: a settlement that had landed is not applied again
    assert after["tokens_per_minute"] == USAGE["total_tokens"]
    assert store.settles == 2  # the first cut short, the second in its own task


async def test_a_request_cancelled_by_an_anyio_scope_while_settling_is_settled(inner_store: Any) -> None:
    store = SlowSettle(inner_store, applied_first=False)
    app = budget(store)
    async with anyio.create_task_group() as group:
        group.start_soon(request, app)
        await asyncio.wait_for(store.entered.wait(), 5)
        # the settlement may go on (shielded) or be settled again: released soon either way
        asyncio.get_running_loop().call_later(0.05, store.release.set)
        group.cancel_scope.cancel()
    await app.aclose()
    after = await usage_of(store.inner, "default")
    assert after["tokens_per_minute"] == USAGE["total_tokens"]


class LostReservation(SlowSettle):
    """A store that makes the reservation, then loses its reply: the request is cancelled meanwhile."""

    holds_reservation = True


async def test_a_request_cancelled_while_reserving_gives_the_reservation_back(inner_store: Any) -> None:
    store = LostReservation(inner_store, applied_first=False)
    app = budget(store)
    task = asyncio.create_task(request(app))
    await asyncio.wait_for(store.entered.wait(), 5)
    held = await usage_of(store.inner, "default")
    assert held["tokens_per_minute"] > USAGE["total_tokens"]  # made, its reply not yet read
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    store.release.set()  # settlements go through at once from now on
    await app.aclose()  # settles what was kept: the reservation given back by its token
    after = await usage_of(store.inner, "default")
    assert after["tokens_per_minute"] == 0
