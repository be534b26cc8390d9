"""A large prompt is counted in a worker thread, not on the event loop; a small one inline. Each
dialect, through the budget (memory store), with the offline runtime's tokenizers."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits
from asgi_aigw.budget.tokens import COUNT_INLINE_BYTES, RuntimeTokenCounter

from .budget_helpers import JSONApp, completion, fixed_clock

#: A prompt of more bytes than are counted inline.
LARGE = "The quick brown fox jumps over the lazy dog. " * (COUNT_INLINE_BYTES // 40)


class Recorded(RuntimeTokenCounter):
    """The runtime's counter, with the thread each count ran on and what it counted."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.counts: list[int] = []

    def _record(self, count: int) -> int:
        self.threads.append(threading.get_ident())
        self.counts.append(count)
        return count

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        return self._record(super().count_chat(request, model))

    def count_messages(self, request: Mapping[str, Any], model: str | None) -> int:
        return self._record(super().count_messages(request, model))

    def count_responses(self, request: Mapping[str, Any], model: str | None) -> int:
        return self._record(super().count_responses(request, model))


def _body(path: str, content: str) -> dict[str, Any]:
    if path == "/v1/messages":
        return {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": content}]}
    if path == "/v1/responses":
        return {"model": "gpt-4o-mini", "max_output_tokens": 16, "input": content}
    return {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
async def test_a_large_prompt_is_counted_in_a_worker_thread_and_a_small_one_inline(path: str) -> None:
    counter = Recorded()
    budget = BudgetMiddleware(
        JSONApp(completion("hi", {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})),
        config=BudgetConfig(store="memory://", limits=Limits(tokens_per_minute=10**9)),
        token_counter=counter,
        clock=fixed_clock,
    )
    loop_thread = threading.get_ident()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(budget), base_url="http://testserver"
    ) as client:
        # the first count loads the tokenizer in a thread of its own, whatever the size: warm it up
        assert (await client.post(path, json=_body(path, "warm up"))).status_code == 200
        assert (await client.post(path, json=_body(path, "a small question"))).status_code == 200
        assert (await client.post(path, json=_body(path, LARGE))).status_code == 200
    small, large = counter.threads[1:]
    assert small == loop_thread
    assert large != loop_thread
    # the same count either way
    assert counter.counts[2] == getattr(RuntimeTokenCounter(), _METHOD[path])(
        _body(path, LARGE), "gpt-4o-mini"
    )


_METHOD = {
    "/v1/chat/completions": "count_chat",
    "/v1/messages": "count_messages",
    "/v1/responses": "count_responses",
}
