"""Pins for the body helper's edges: the exact size limit, Content-Length, empty and deep bodies.

Each test here kills a mutant of ``asgi_aigw/kernel/body.py`` that the behaviour tests let through
(``python bench/mutation.py body``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from asgi_aigw.kernel.body import DEFAULT_MAX_BODY_BYTES, parse_json, read_body, read_json
from asgi_aigw.kernel.errors import GatewayError, InvalidRequest, RequestTooLarge, send_error
from asgi_aigw.kernel.http import send_json_bytes
from asgi_aigw.kernel.types import Receive, Scope, Send
from tests.support import served


def http_scope(content_length: str | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", content_length.encode()))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}


def chunks(*parts: bytes) -> Any:
    queue = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def test_a_declared_length_equal_to_the_limit_is_read() -> None:
    body = b"x" * 1024
    assert await read_body(http_scope("1024"), chunks(body), limit=1024) == body
    with pytest.raises(RequestTooLarge):
        await read_body(http_scope("1025"), chunks(body + b"x"), limit=1024)


async def test_a_streamed_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413() -> None:
    # no Content-Length: only the running count decides, across chunks
    assert (
        await read_body(http_scope(None), chunks(b"x" * 1000, b"y" * 24), limit=1024)
        == b"x" * 1000 + b"y" * 24
    )
    with pytest.raises(RequestTooLarge):
        await read_body(http_scope(None), chunks(b"x" * 1000, b"y" * 25), limit=1024)
    with pytest.raises(RequestTooLarge):
        await read_body(http_scope(None), chunks(b"x" * 1025), limit=1024)


async def test_the_default_limit_is_20_mib() -> None:
    limit = 20 * 1024 * 1024
    assert len(await read_body(http_scope(str(limit)), chunks(b"x" * limit))) == limit
    with pytest.raises(RequestTooLarge) as info:
        await read_body(http_scope(str(limit + 1)), chunks())
    assert f"({DEFAULT_MAX_BODY_BYTES} bytes)" in info.value.message
    assert limit == DEFAULT_MAX_BODY_BYTES


@pytest.mark.parametrize("declared", ["abc", "", "12x", "1.5"])
async def test_a_content_length_that_is_not_a_number_is_a_400(declared: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await read_body(http_scope(declared), chunks(b"{}"))
    assert info.value.status == 400
    assert "Content-Length header is not a number" in info.value.message


def test_an_empty_body_is_named_as_empty() -> None:
    # orjson's own message also holds the word "empty": pin the gateway's sentence
    with pytest.raises(InvalidRequest) as info:
        parse_json(b"")
    assert info.value.message == "The request body is empty: send a JSON object."


def test_many_shallow_brackets_are_accepted() -> None:
    # more than 128 brackets in all, but only 3 levels deep: the bracket count alone must not refuse it
    raw = b'{"messages": [' + b",".join([b'{"content": []}'] * 300) + b"]}"
    assert len(parse_json(raw)["messages"]) == 300


def test_exactly_128_levels_with_many_brackets_are_accepted_and_129_refused() -> None:
    # enough other brackets that the exact depth is measured, not skipped by the count
    siblings = b', "b": [' + b",".join([b"{}"] * 200) + b"]}"
    deep_128 = b'{"a": ' + b"[" * 127 + b"]" * 127 + siblings
    assert parse_json(deep_128)["b"] == [{}] * 200
    deep_129 = b'{"a": ' + b"[" * 128 + b"]" * 128 + siblings
    with pytest.raises(InvalidRequest) as info:
        parse_json(deep_129)
    assert "more than 128 levels deep" in info.value.message


async def _echo_size(scope: Scope, receive: Receive, send: Send) -> None:
    """A one-layer app: read the JSON body under a 1 KiB limit, answer with its size."""
    if scope["type"] != "http":
        return
    try:
        scope, receive, body = await read_json(scope, receive, limit=1024)
    except GatewayError as exc:
        await send_error(send, exc)
        return
    await send_json_bytes(send, 200, b'{"received": %d}' % body.received)


async def test_the_413_edge_on_a_real_server() -> None:
    # the document is exactly 1024 bytes: accepted; one byte more: 413 in the OpenAI error shape
    filler = 1024 - len(b'{"a": ""}')
    exact = b'{"a": "' + b"x" * filler + b'"}'
    assert len(exact) == 1024
    async with served(_echo_size) as base, httpx.AsyncClient(base_url=base) as client:
        ok = await client.post("/v1/chat/completions", content=exact)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"received": 1024}
        over = await client.post("/v1/chat/completions", content=exact[:-2] + b'x"}')
        assert over.status_code == 413
        assert over.json()["error"]["type"] == "invalid_request_error"
        assert "1024 bytes" in over.json()["error"]["message"]
