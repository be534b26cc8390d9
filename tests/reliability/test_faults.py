"""Fault injection: stores failing at the edges of a request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from asgi_aigw.budget import BudgetMiddleware, Limits, SlotClock
from asgi_aigw.budget.memory import MemoryBudgetStore
from asgi_aigw.budget.store import StoreError
from asgi_aigw.budget.windows import Slot
from asgi_aigw.cache import CacheConfig, RedisExactStore, SemanticCacheMiddleware

# -- store failures at the edges of a request (in process) ------------------------------------------


class _SettleFailsStore(MemoryBudgetStore):
    """A memory budget store whose next ``failures`` settlements raise (the store went away)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def settle(self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("ConnectionRefusedError: the store is down (fault injected)")
        await super().settle(tenant, slots, deltas)


def _json_app() -> Any:
    """An inner app answering every chat request with 7 tokens of usage."""
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    answer = orjson.dumps(
        {"object": "chat.completion", "model": "gpt-4o-mini", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    )  # fmt: skip

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return inner


async def test_a_settlement_the_store_did_not_take_is_retried() -> None:
    store = _SettleFailsStore(failures=2)
    budget = BudgetMiddleware(
        _json_app(), store=store, limits=Limits(tokens_per_minute=10**6), store_retry_seconds=0.05
    )
    now = time.time()
    transport = httpx.ASGITransport(budget)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    slots = SlotClock().slots(now)
    tpm = next(i for i, slot in enumerate(slots) if slot.window.name == "tokens_per_minute")
    # the whole estimate (prompt + default_max_tokens) is still reserved: the settlement failed
    assert (await store.usage("default", slots))[tpm] > 4096
    for _ in range(100):  # retried in the background (once more failing, then taken)
        if (await store.usage("default", slots))[tpm] == 7:
            break
        await asyncio.sleep(0.02)
    assert (await store.usage("default", slots))[tpm] == 7
    assert store.failures == 0
    await budget.aclose()


async def test_kept_settlements_go_out_as_soon_as_the_store_answers_again() -> None:
    store = _SettleFailsStore(failures=1)
    # a retry pause far longer than the test: only the next successful reservation can trigger it
    budget = BudgetMiddleware(
        _json_app(), store=store, limits=Limits(tokens_per_minute=10**6), store_retry_seconds=60
    )
    now = time.time()
    slots = SlotClock().slots(now)
    tpm = next(i for i, slot in enumerate(slots) if slot.window.name == "tokens_per_minute")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(budget), base_url="http://t") as client:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        assert (await store.usage("default", slots))[tpm] > 4096
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        for _ in range(100):
            if (await store.usage("default", slots))[tpm] == 14:
                break
            await asyncio.sleep(0.02)
    assert (await store.usage("default", slots))[tpm] == 14  # both answers, 7 tokens each
    await budget.aclose()


def test_exact_store_calls_are_bounded_by_the_lookup_timeout() -> None:
    cache = SemanticCacheMiddleware(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        config=CacheConfig(exact="redis://127.0.0.1:6379/0", vector="none", lookup_timeout=0.25),
    )
    assert isinstance(cache.exact, RedisExactStore)
    assert cache.exact._timeout == 0.25
