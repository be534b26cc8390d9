"""The body helper: read once with a limit, parse once, replay, pass http.disconnect through."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_aigw.kernel.body import ClientDisconnect, forward_scope, json_depth, parse_json, read_json
from asgi_aigw.kernel.context import get_context
from asgi_aigw.kernel.errors import InvalidRequest, RequestTooLarge
from asgi_aigw.kernel.models import ChatCompletionRequest


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
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "levels deep"),
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


async def test_an_inner_layers_smaller_limit_holds_when_an_outer_layer_read_the_body() -> None:
    raw = b'{"model": "m", "pad": "' + b"x" * 4000 + b'"}'
    outer_scope, replay, body = await read_json(
        http_scope(len(raw)), receiver({"type": "http.request", "body": raw, "more_body": False}), limit=8192
    )
    _, _, again = await read_json(outer_scope, replay, limit=len(raw))
    assert again is body  # at the limit: reused
    with pytest.raises(RequestTooLarge) as info:
        await read_json(outer_scope, replay, limit=1024)
    assert "1024 bytes" in info.value.message


def _walk_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_walk_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_walk_depth(v) for v in value), default=0)
    return 0


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(_JSON)
def test_json_depth_measured_on_the_bytes_matches_the_parsed_document(value: Any) -> None:
    # strings full of brackets, quotes and backslashes must not count
    assert json_depth(json.dumps(value).encode()) == _walk_depth(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": "\xff\xfe"}', "not UTF-8 text (byte 0xff at offset 7"),
        (b'{"a": ' + b"[" * 129 + b"]" * 129 + b"}", "more than 128 levels deep"),
        (b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}", "more than 128 levels deep"),
    ],
)
def test_bodies_not_utf8_or_nested_too_deep_get_their_own_message(raw: bytes, expected: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_json(raw)
    assert expected in info.value.message
    parse_json(b'{"a": ' + b"[" * 127 + b"]" * 127 + b"}")  # 128 levels: accepted
