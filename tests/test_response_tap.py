"""ResponseTap: JSON and SSE answers seen and rewritten on the way out, streams never buffered."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from asgi_aigw.kernel.response import ResponseTap


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


def start(content_type: bytes, length: int | None = None, status: int = 200) -> dict[str, Any]:
    headers = [(b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": status, "headers": headers}


async def test_json_is_rewritten_with_a_fresh_content_length() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_json=lambda status, body: body.replace(b"<X_1>", b"alice@example.com"))
    body = b'{"content": "hi <X_1>"}'
    await tap(start(b"application/json", len(body)))
    assert sent.messages == []  # the status line waits for the body when it may change
    await tap({"type": "http.response.body", "body": body[:5], "more_body": True})
    await tap({"type": "http.response.body", "body": body[5:], "more_body": False})
    assert sent.body == b'{"content": "hi alice@example.com"}'
    headers = dict(sent.messages[0]["headers"])
    assert headers[b"content-length"] == str(len(sent.body)).encode()
    assert tap.ended_normally


async def test_json_error_does_not_end_normally() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_json=lambda status, body: None)
    await tap(start(b"application/json", status=502))
    await tap({"type": "http.response.body", "body": b"{}", "more_body": False})
    assert tap.complete
    assert not tap.ended_normally


async def test_sse_events_leave_as_they_complete_and_can_be_rewritten() -> None:
    sent = Recorder()
    seen: list[bytes] = []

    def on_event(raw: bytes) -> bytes | None:
        seen.append(raw)
        return raw.replace(b"secret", b"******") if b"secret" in raw else None

    tap = ResponseTap(sent, on_event=on_event)
    await tap(start(b"text/event-stream"))
    assert len(sent.messages) == 1  # the status line is not delayed for streams
    await tap({"type": "http.response.body", "body": b'data: {"a": "sec', "more_body": True})
    assert len(sent.messages) == 1  # half an event is held, nothing more
    await tap({"type": "http.response.body", "body": b'ret"}\n\ndata: {"b": 1}\n\n', "more_body": True})
    assert sent.messages[-1]["body"] == b'data: {"a": "******"}\n\ndata: {"b": 1}\n\n'
    assert not tap.ended_normally
    await tap({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
    assert seen[-1] == b"data: [DONE]\n\n"
    assert tap.ended_normally


async def test_sse_cut_short_does_not_end_normally() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_event=lambda raw: None)
    await tap(start(b"text/event-stream"))
    await tap({"type": "http.response.body", "body": b'data: {"a": 1}\n\n', "more_body": True})
    await tap({"type": "http.response.body", "body": b"", "more_body": False})
    assert tap.complete
    assert not tap.ended_normally


async def test_on_end_adds_events_before_done() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_event=lambda raw: None, on_end=lambda: [b'data: {"held": true}\n\n'])
    await tap(start(b"text/event-stream"))
    await tap({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
    assert sent.body == b'data: {"held": true}\n\ndata: [DONE]\n\n'


_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


async def test_anthropic_stream_ends_normally_at_message_stop() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_event=lambda raw: None, on_end=lambda: [b"event: held\ndata: {}\n\n"])
    await tap(start(b"text/event-stream"))
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    await tap({"type": "http.response.body", "body": delta, "more_body": True})
    await tap({"type": "http.response.body", "body": _MESSAGE_STOP, "more_body": False})
    assert tap.ended_normally
    # what a layer held back goes out before the end marker, as before [DONE]
    assert sent.body.endswith(b"event: held\ndata: {}\n\n" + _MESSAGE_STOP)


async def test_anthropic_stream_without_message_stop_is_cut_short() -> None:
    for hooks in ({"on_event": lambda raw: None}, {}):
        sent = Recorder()
        tap = ResponseTap(sent, **hooks)  # type: ignore[arg-type]
        await tap(start(b"text/event-stream"))
        body = b'event: message_delta\ndata: {"type":"message_delta"}\n\n'
        await tap({"type": "http.response.body", "body": body, "more_body": False})
        assert not tap.ended_normally
        tap = ResponseTap(Recorder(), **hooks)  # type: ignore[arg-type]
        await tap(start(b"text/event-stream"))
        await tap({"type": "http.response.body", "body": _MESSAGE_STOP, "more_body": False})
        assert tap.ended_normally


async def test_dropping_an_event() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_event=lambda raw: b"" if b"usage" in raw else None)
    await tap(start(b"text/event-stream"))
    payload = b"data: " + orjson.dumps({"usage": {}}) + b"\n\ndata: [DONE]\n\n"
    await tap({"type": "http.response.body", "body": payload, "more_body": False})
    assert sent.body == b"data: [DONE]\n\n"


async def test_other_content_passes_untouched() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_json=lambda s, b: b"changed", on_event=lambda raw: b"changed")
    await tap(start(b"text/plain"))
    await tap({"type": "http.response.body", "body": b"hello", "more_body": False})
    assert sent.body == b"hello"


async def test_a_disconnect_counts_only_before_the_answer_is_complete() -> None:
    from asgi_aigw.kernel.context import RequestContext
    from asgi_aigw.kernel.response import watch_disconnect

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    ctx = RequestContext()
    tap = ResponseTap(Recorder())
    await watch_disconnect(receive, ctx, tap)()
    assert ctx.client_disconnected  # nothing sent yet: the client left

    ctx = RequestContext()
    tap = ResponseTap(Recorder())
    await tap(start(b"application/json"))
    await tap({"type": "http.response.body", "body": b"{}", "more_body": False})
    await watch_disconnect(receive, ctx, tap)()
    assert not ctx.client_disconnected  # servers say "disconnect" after a complete response too


async def test_a_content_type_in_capitals_is_still_recognised() -> None:
    sent = Recorder()
    tap = ResponseTap(sent, on_json=lambda status, body: b'{"changed": true}')
    headers = [(b"x-aigw-provider", b"openai"), (b"Content-Type", b"Application/JSON")]
    await tap({"type": "http.response.start", "status": 200, "headers": headers})
    assert sent.messages == []
    await tap({"type": "http.response.body", "body": b"{}", "more_body": False})
    assert tap.kind == "json"
    assert sent.body == b'{"changed": true}'


async def test_a_released_tap_sends_nothing_more_and_says_why() -> None:
    sent = Recorder()
    seen: list[bytes] = []
    tap = ResponseTap(sent, on_json=lambda status, body: seen.append(body) or body)
    body = b'{"ok": true}'
    await tap(start(b"application/json", len(body)))
    await tap({"type": "http.response.body", "body": body, "more_body": False})
    tap.release()
    # the downstream send and the hooks are let go of: nothing of the layer's is held any more
    assert tap._on_json is None
    assert tap._send is not sent
    with pytest.raises(RuntimeError, match="after the app returned"):
        await tap({"type": "http.response.body", "body": b"late", "more_body": False})
    assert sent.body == body  # what went out before the release is all that went out
    assert seen == [body]
