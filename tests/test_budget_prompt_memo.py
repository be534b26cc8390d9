"""The prompt counts the budget remembers: a body sent again is not tokenized again, and is reserved
exactly what it was the first time; another body, one too large to remember, or the same body from
another tenant is counted afresh; the memo stays within its bounds, least recently used first out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits
from asgi_aigw.budget.memory import MemoryBudgetStore
from asgi_aigw.budget.tokens import RuntimeTokenCounter
from asgi_aigw.kernel.body_memo import BodyMemo
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.tenant import TenantConfig, TenantMiddleware

from .budget_helpers import JSONApp, chat, completion


class CountingCounter(RuntimeTokenCounter):
    """The runtime's tokenizers, counting the prompts it was asked to count."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts = 0

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        self.prompts += 1
        return super().count_chat(request, model)

    def count_messages(self, request: Mapping[str, Any], model: str | None) -> int:
        self.prompts += 1
        return super().count_messages(request, model)

    def count_responses(self, request: Mapping[str, Any], model: str | None) -> int:
        self.prompts += 1
        return super().count_responses(request, model)


def _stack(inner: Any, counter: CountingCounter) -> Any:
    """The tenant header, then the budget (in memory) counting with ``counter``, in front of ``inner``."""
    budget = BudgetMiddleware(
        inner,
        config=BudgetConfig(limits=Limits(tokens_per_minute=10**6)),
        store=MemoryBudgetStore(),
        token_counter=counter,
    )
    return TenantMiddleware(budget, config=TenantConfig(header="x-tenant-id"))


async def test_a_body_sent_again_is_not_counted_again() -> None:
    counter = CountingCounter()
    estimates: list[int | None] = []

    class Recording(JSONApp):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            estimates.append(ensure_context(scope)[1].token_estimate)
            await super().__call__(scope, receive, send)

    inner = Recording(completion("hi", None))
    transport = httpx.ASGITransport(_stack(inner, counter))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for body in (chat("the same question"), chat("the same question"), chat("another question")):
            response = await client.post(
                "/v1/chat/completions", json={**body, "max_tokens": 10}, headers={"x-tenant-id": "acme"}
            )
            assert response.status_code == 200
        assert counter.prompts == 2  # the repeated body was not tokenized again
        assert estimates[0] == estimates[1] != estimates[2]  # and was reserved what it was the first time
        # a body larger than the memo keeps is counted every time
        long = chat("word " * 2000, max_tokens=10)
        for _ in range(2):
            await client.post("/v1/chat/completions", json=long, headers={"x-tenant-id": "acme"})
        assert counter.prompts == 4
        # another tenant's identical body is counted for that tenant: a count found is faster, and
        # must not tell one tenant what another asked
        body = {**chat("the same question"), "max_tokens": 10}
        await client.post("/v1/chat/completions", json=body, headers={"x-tenant-id": "globex"})
        assert counter.prompts == 5
    assert inner.calls == 6


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/messages",
            {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("/v1/responses", {"model": "gpt-4o-mini", "max_output_tokens": 10, "input": "hi", "stream": True}),
    ],
)
async def test_every_dialect_is_remembered_by_its_own_count(path: str, body: dict[str, Any]) -> None:
    counter = CountingCounter()
    transport = httpx.ASGITransport(_stack(JSONApp(b"{}"), counter))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for _ in range(2):
            await client.post(path, json=body, headers={"x-tenant-id": "acme"})
    assert counter.prompts == 1


def test_the_memo_is_bounded_and_keeps_what_is_used() -> None:
    memo = BodyMemo[int](entries=2, max_bytes=10)
    memo.put("acme", "chat", b"a", 1)
    memo.put("acme", "chat", b"b", 2)
    assert memo.get("acme", "chat", b"a") == 1  # used: now the last to go
    memo.put("acme", "chat", b"c", 3)
    assert memo.get("acme", "chat", b"b") is None  # the least recently used went
    assert (memo.get("acme", "chat", b"a"), memo.get("acme", "chat", b"c")) == (1, 3)
    assert memo.get("acme", "messages", b"a") is None  # a body is counted per dialect
    assert memo.get("globex", "chat", b"a") is None  # and per tenant
    memo.put("acme", "chat", b"x" * 11, 9)
    assert memo.get("acme", "chat", b"x" * 11) is None  # too large to keep
