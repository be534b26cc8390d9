"""The body helper: read once with a limit, parse once, replay, pass http.disconnect through."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from asgi_aigw.body import ClientDisconnect, forward_scope, read_json
from asgi_aigw.context import get_context
from asgi_aigw.errors import InvalidRequest, RequestTooLarge
from asgi_aigw.models import ChatCompletionRequest


def http_scope(body_len: int | None = None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if body_len is not None:
        headers.append((b"content-length", str(body_len).encode()))
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}


def receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)
    calls = {"n": 0}

    async def receive() -> dict[str, Any]:
        calls["n"] += 1
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    receive.calls = calls  # type: ignore[attr-defined]
    return receive


async def test_reads_chunks_parses_once_and_replays_the_same_bytes() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    receive = receiver(
        {"type": "http.request", "body": raw[:10], "more_body": True},
        {"type": "http.request", "body": raw[10:], "more_body": False},
    )
    scope, replay, body = await read_json(http_scope(len(raw)), receive)
    assert body.data["messages"][0]["content"] == "hi"
    assert get_context(scope).body is body  # type: ignore[union-attr]
    first = await replay()
    assert first == {"type": "http.request", "body": raw, "more_body": False}
    assert (await replay())["type"] == "http.disconnect"  # passed through from the real receive


async def test_an_inner_layer_reuses_the_parsed_body_without_reading() -> None:
    raw = b'{"model": "m"}'
    receive = receiver({"type": "http.request", "body": raw, "more_body": False})
    scope, replay, body = await read_json(http_scope(len(raw)), receive)
    _, replay2, body2 = await read_json(scope, replay)
    assert body2 is body
    assert replay2 is replay  # nothing was consumed: the inner app still gets the replay
    assert (await replay2())["body"] == raw


async def test_a_changed_body_is_reserialised_once_with_a_new_content_length() -> None:
    raw = b'{"model": "m", "messages": []}'
    scope, replay, body = await read_json(
        http_scope(len(raw)), receiver({"type": "http.request", "body": raw, "more_body": False})
    )
    assert forward_scope(scope, body) is scope  # unchanged: the scope is handed on as is
    body.data["model"] = "a-much-longer-model-name"
    body.mark_changed()
    forwarded = forward_scope(scope, body)
    sent = (await replay())["body"]
    assert orjson.loads(sent)["model"] == "a-much-longer-model-name"
    lengths = [v for k, v in forwarded["headers"] if k == b"content-length"]
    assert lengths == [str(len(sent)).encode()]


async def test_declared_length_over_the_limit_is_413_before_reading() -> None:
    receive = receiver()
    with pytest.raises(RequestTooLarge) as info:
        await read_json(http_scope(5000), receive, limit=1024)
    assert info.value.status == 413
    assert "1024 bytes" in info.value.message
    assert receive.calls["n"] == 0


async def test_streamed_body_over_the_limit_is_413() -> None:
    chunk = b"x" * 600
    receive = receiver(
        {"type": "http.request", "body": chunk, "more_body": True},
        {"type": "http.request", "body": chunk, "more_body": False},
    )
    with pytest.raises(RequestTooLarge):
        await read_json(http_scope(None), receive, limit=1024)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty"),
        (b"{bad json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not a JSON list"),
        (b'"text"', "not a JSON str"),
        (b'{"a": "\xff\xfe"}', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
    ],
)
async def test_bad_json_is_a_400_that_says_what_is_wrong(raw: bytes, expected: str) -> None:
    receive = receiver({"type": "http.request", "body": raw, "more_body": False})
    with pytest.raises(InvalidRequest) as info:
        await read_json(http_scope(len(raw)), receive)
    assert info.value.status == 400
    assert expected in info.value.message


async def test_disconnect_while_reading_the_body() -> None:
    receive = receiver({"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnect):
        await read_json(http_scope(None), receive)


async def test_validation_is_cached_until_the_body_changes() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "custom_field": 1}'
    _, _, body = await read_json(http_scope(len(raw)), receiver({"type": "http.request", "body": raw}))
    first = body.validate(ChatCompletionRequest)
    assert body.validate(ChatCompletionRequest) is first
    assert first.model_extra == {"custom_field": 1}  # unknown fields are kept
    body.data["model"] = "other"
    body.mark_changed()
    assert body.validate(ChatCompletionRequest).model == "other"


async def test_wrong_types_name_the_field() -> None:
    raw = b'{"model": "m", "messages": [{"role": "robot", "content": "hi"}], "temperature": "hot"}'
    _, _, body = await read_json(http_scope(len(raw)), receiver({"type": "http.request", "body": raw}))
    with pytest.raises(InvalidRequest) as info:
        body.validate(ChatCompletionRequest, "chat completion request")
    assert info.value.param == "messages[0].role"
    assert "'temperature'" in info.value.message
