"""A request cancelled while its settlement is under way is still settled: by the settlement itself, or,
when the cancellation cut it short, again in a task of its own (the reservation's token makes a second
one harmless). The reservation never stays counted at its estimate. Whether the cancellation comes from
asyncio (``task.cancel()``) or from an anyio scope (Starlette, FastAPI), the outcome is the same."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
import orjson

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, MemoryBudgetStore
from asgi_aigw.budget.windows import Slot
from asgi_aigw.testing.raw_asgi import post_scope

from . import budget_helpers
from .budget_helpers import JSONApp, chat, completion, fixed_clock, token_counter, usage_of

frozen_now = budget_helpers.frozen_now

USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


class SlowSettle(MemoryBudgetStore):
    """A memory store whose first settlement waits until released: the request is cancelled meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.settles = 0

    async def settle(
        self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int], *, token: str | None = None
    ) -> None:
        self.settles += 1
        if self.settles == 1:
            self.entered.set()
            await self.release.wait()
        await super().settle(tenant, slots, deltas, token=token)


def budget(store: SlowSettle) -> BudgetMiddleware:
    config = BudgetConfig(limits={"tokens_per_minute": 100_000}, headers=False)
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


async def test_a_request_cancelled_by_asyncio_while_settling_is_settled_in_a_task() -> None:
    store = SlowSettle()
    app = budget(store)
    task = asyncio.create_task(request(app))
    await asyncio.wait_for(store.entered.wait(), 5)
    before = await usage_of(store, "default")
    assert before["tokens_per_minute"] > USAGE["total_tokens"]  # the estimate is held
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    store.release.set()
    await app.aclose()  # waits for the settlement finishing in its own task
    after = await usage_of(store, "default")
    assert after["tokens_per_minute"] == USAGE["total_tokens"]  # replaced by what the answer cost
    assert store.settles == 2  # the first cut short, the second in its own task


async def test_a_request_cancelled_by_an_anyio_scope_while_settling_is_settled() -> None:
    store = SlowSettle()
    app = budget(store)
    async with anyio.create_task_group() as group:
        group.start_soon(request, app)
        await asyncio.wait_for(store.entered.wait(), 5)
        # the settlement may go on (shielded) or be settled again: released soon either way
        asyncio.get_running_loop().call_later(0.05, store.release.set)
        group.cancel_scope.cancel()
    await app.aclose()
    after = await usage_of(store, "default")
    assert after["tokens_per_minute"] == USAGE["total_tokens"]
