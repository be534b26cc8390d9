"""Helpers for the tenant and budget tests: token counting, store readers, tiny inner apps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest
import redis.asyncio as aioredis

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, BudgetStore, RedisBudgetStore
from asgi_aigw.budget.tokens import RuntimeTokenCounter, TokenCounter
from asgi_aigw.budget.windows import SlotClock
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.tenant import TenantConfig, TenantMiddleware

from .support import ContextSpy


def token_counter() -> TokenCounter:
    """The offline runtime's tokenizers, as the middleware uses by default (checked to be really
    loaded, not the approximate fallback)."""
    counter = RuntimeTokenCounter()
    counter.count_text("warm up", "gpt-4o-mini")
    assert counter._fallback is None, "the runtime's tokenizer did not load"
    return counter


#: The instant a budget test runs "at" (reset for each test by ``freeze_now``): its middlewares take
#: ``clock=fixed_clock`` and its checks read the same slots, so a test that straddles a minute
#: boundary still reads what it wrote.
NOW = time.time()


async def away_from_minute_boundary(margin: float = 5.0) -> None:
    """Wait for the next minute if this one ends within ``margin`` seconds: for tests that run a real
    clock (the demo, the CLI) and need their requests to fall in one minute window."""
    left = 60 - time.time() % 60
    if left < margin:
        await anyio.sleep(left + 0.05)


def freeze_now() -> None:
    global NOW
    NOW = time.time()


def fixed_clock() -> float:
    return NOW


async def usage_of(store: BudgetStore, tenant: str) -> dict[str, int]:
    """The tenant's usage in the slot of every window at :data:`NOW`, by window name."""
    slots = SlotClock().slots(NOW)
    values = await store.usage(tenant, slots)
    return {slot.window.name: value for slot, value in zip(slots, values, strict=True)}


def chat(content: str = "hello there world", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def completion(text: str, usage: dict[str, int] | None) -> bytes:
    payload: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
    if usage is not None:
        payload["usage"] = usage
    return orjson.dumps(payload)


class JSONApp:
    """An inner app that answers every request with a fixed JSON body (and can mark a cache hit)."""

    def __init__(self, body: bytes, status: int = 200, cache_status: str | None = None) -> None:
        self.body = body
        self.status = status
        self.cache_status = cache_status
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        scope, ctx = ensure_context(scope)
        if self.cache_status:
            ctx.cache_status = self.cache_status
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class SSEApp:
    """An inner app streaming fixed events (no router: the budget must read the wire)."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@contextlib.asynccontextmanager
async def redis_budget_store(
    redis_url: str, prefix: str, *, given_client: bool = False
) -> AsyncIterator[RedisBudgetStore]:
    """A Redis budget store under a test's own key prefix, opened from the URL (or on a redis-py client
    the test owns, ``given_client``); its keys are deleted afterwards."""
    given = aioredis.Redis.from_url(redis_url) if given_client else None
    store = RedisBudgetStore(None if given is not None else redis_url, client=given, key_prefix=prefix)
    try:
        yield store
    finally:
        await store.aclose()
        if given is not None:
            await given.aclose()
        client = aioredis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def budget_stack(app: Any, store: Any, **options: Any) -> ContextSpy:
    """``app`` behind BudgetMiddleware (``options``: its config, the frozen clock) behind a tenant
    layer that names every request's tenant ``acme``; the spy keeps each request's context."""
    budget = BudgetMiddleware(
        app, config=BudgetConfig(**options), store=store, token_counter=token_counter(), clock=fixed_clock
    )
    return ContextSpy(TenantMiddleware(budget, config=TenantConfig(required=False, default_tenant="acme")))


# Fixtures: a test module takes them by assignment (``store = budget_helpers.store``), pytest finding
# them under the module's names.


@pytest.fixture(autouse=True)
def frozen_now() -> None:
    """The store's notion of now frozen for the test (see :func:`freeze_now`)."""
    freeze_now()


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBudgetStore]:
    """A Redis budget store under the test's own key prefix, emptied afterwards."""
    async with redis_budget_store(redis_url, redis_prefix) as opened:
        yield opened


def minute_counter_keys(prefix: str, tenant: str, metric: str = "tpm") -> list[str]:
    """A tenant's per-minute counter of this minute and of the last one (a run may straddle a minute
    boundary), by name: a load test samples them with one MGET, where a SCAN walks the whole shared
    keyspace in small steps and, on a busy machine, one walk outlasted the load, so no sample was read."""
    start = int(time.time()) // 60 * 60
    return [f"{prefix}{{{tenant}}}:{metric}:{minute}" for minute in (start - 60, start)]
