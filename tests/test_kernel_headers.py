"""Headers a layer sets replace the same-named ones of the app inside it, whatever their case, once."""

from __future__ import annotations

from typing import Any

import httpx

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits
from asgi_aigw.kernel.http import without_headers
from asgi_aigw.logs import LogConfig, MemorySink, RequestLogMiddleware

from .budget_helpers import chat, completion, fixed_clock, token_counter


def test_without_headers_drops_the_names_in_any_case_and_copies_the_rest() -> None:
    headers = [(b"content-type", b"a"), (b"X-Request-Id", b"inner"), (b"x-request-id", b"again")]
    names = frozenset({b"x-request-id"})
    assert without_headers(headers, names) == [(b"content-type", b"a")]
    untouched = [(b"content-type", b"a"), (b"x-request", b"b")]
    copy = without_headers(untouched, names)
    assert copy == untouched
    assert copy is not untouched
    # a name holding the part but not one of the names stays
    assert without_headers([(b"x-request-id-2", b"c")], names) == [(b"x-request-id-2", b"c")]
    assert without_headers((), names) == []
    # names that begin with nothing in common: each header is tested, and still only those go
    mixed = frozenset({b"retry-after", b"x-request-id"})
    assert without_headers([(b"Retry-After", b"1"), (b"x-kept", b"d")], mixed) == [(b"x-kept", b"d")]


class _OwnHeaders:
    """An app answering JSON with headers of its own, named in another case than the layers'."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = completion("hi", {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), *self.headers],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _post(app: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post("/v1/chat/completions", json=chat())


async def test_the_log_s_request_id_replaces_the_app_s_own_in_any_case() -> None:
    inner = _OwnHeaders([(b"X-Request-ID", b"from-the-app"), (b"x-other", b"kept")])
    app = RequestLogMiddleware(
        inner, store=MemorySink(), config=LogConfig(store="memory://", spool_dir=None, flush_interval=3600)
    )
    response = await _post(app)
    assert response.headers.get_list("x-request-id") != ["from-the-app"]
    assert len(response.headers.get_list("x-request-id")) == 1
    assert response.headers["x-other"] == "kept"
    assert app.writer is not None
    await app.writer.aclose()


async def test_the_budget_s_rate_limit_headers_replace_the_app_s_own_in_any_case() -> None:
    inner = _OwnHeaders([(b"X-RateLimit-Remaining-Tokens", b"7"), (b"x-ratelimit-other", b"kept")])
    budget = BudgetMiddleware(
        inner,
        config=BudgetConfig(store="memory://", limits=Limits(tokens_per_minute=100_000)),
        token_counter=token_counter(),
        clock=fixed_clock,
    )
    response = await _post(budget)
    remaining = response.headers.get_list("x-ratelimit-remaining-tokens")
    assert len(remaining) == 1
    assert remaining != ["7"]
    assert response.headers["x-ratelimit-other"] == "kept"
