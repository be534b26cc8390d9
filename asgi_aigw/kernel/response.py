"""See, and if need be rewrite, an answer on its way out, without buffering a stream.

Layers that must look at the answer (usage to settle a budget, the text to cache, placeholders to
restore) wrap ``send`` in a :class:`ResponseTap`:

- a JSON answer is handed to ``on_json`` once complete; if the hook returns new bytes they replace the
  body and Content-Length is recomputed (the status line waits for the body only when a hook is set);
- an SSE answer is re-framed into whole events; each goes through ``on_event`` (return ``None`` to keep
  it, new bytes to replace it, ``b""`` to drop it) and leaves at once; the status line is not delayed;
- anything else passes through untouched.

``tap.ended_normally`` tells whether the answer finished as a whole (a complete 2xx JSON body, or an SSE
stream that reached its end marker: OpenAI's ``[DONE]``, Anthropic's ``message_stop``, the Responses
API's ``response.completed`` or ``response.incomplete``), which is what caches and budgets need to know.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .context import RequestContext
from .http import CONTENT_LENGTH, without_headers
from .sse import SSEDecoder
from .types import Headers, Message, Receive, Send

#: How each dialect's stream says it is complete (OpenAI ``data: [DONE]``, Anthropic ``message_stop``,
#: the Responses API's final events, which carry the whole answer).
_END_MARKERS = (
    b"data: [DONE]",
    b"data:[DONE]",
    b"event: message_stop",
    b"event:message_stop",
    b"event: response.completed",
    b"event:response.completed",
    b"event: response.incomplete",
    b"event:response.incomplete",
)
#: The same, found anywhere in a chunk when the events are not decoded.
_END_WORDS = (b"[DONE]", b"message_stop", b"event: response.completed", b"event: response.incomplete")

JSONHook = Callable[[int, bytes], bytes | None]
EventHook = Callable[[bytes], bytes | None]
EndHook = Callable[[], list[bytes]]


class ResponseTap:
    """A ``send`` wrapper that feeds the answer to hooks; see the module docstring."""

    __slots__ = (
        "_body",
        "_decoder",
        "_on_end",
        "_on_event",
        "_on_json",
        "_pending_start",
        "_send",
        "complete",
        "ended_normally",
        "headers",
        "kind",
        "saw_done",
        "started",
        "status",
    )

    def __init__(
        self,
        send: Send,
        *,
        on_json: JSONHook | None = None,
        on_event: EventHook | None = None,
        on_end: EndHook | None = None,
    ) -> None:
        self._send = send
        self._on_json = on_json
        self._on_event = on_event
        self._on_end = on_end
        self._pending_start: Message | None = None
        self._body: list[bytes] = []
        self._decoder: SSEDecoder | None = None
        self.status: int | None = None
        self.headers: Headers = []
        #: "json", "sse" or "other", known once the status line passed.
        self.kind: str | None = None
        #: The status line has gone to the client.
        self.started = False
        #: The last body message has gone to the client.
        self.complete = False
        self.saw_done = False
        self.ended_normally = False

    async def __call__(self, message: Message) -> None:
        # the status line and a held JSON answer's chunks are handled here, without a coroutine of
        # their own: every answer through every tapping layer passes this way
        kind = message["type"]
        if kind == "http.response.start":
            if self._start(message):
                await self._send(message)
        elif kind == "http.response.body":
            if self._pending_start is not None:
                self._body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._finish_json(b"".join(self._body))
            else:
                await self._body_message(message)
        else:
            await self._send(message)

    def _start(self, message: Message) -> bool:
        """Take in the status line; whether it goes on now (else it waits for the JSON body)."""
        self.status = int(message["status"])
        self.headers = list(message.get("headers", ()))
        content_type = b""
        for key, value in self.headers:
            # lower-casing only a name of the right length: most are not, and lower() allocates
            if len(key) == 12 and key.lower() == b"content-type":
                content_type = value.lower()
                break
        if content_type.startswith(b"text/event-stream"):
            self.kind = "sse"
            if self._on_event is not None:
                self._decoder = SSEDecoder()
        elif content_type.startswith(b"application/json"):
            self.kind = "json"
        else:
            self.kind = "other"
        if self.kind == "json" and self._on_json is not None:
            self._pending_start = message  # Content-Length may change: wait for the body
            return False
        self.started = True
        return True

    async def _body_message(self, message: Message) -> None:
        """A body message of an answer not held back (a stream, another type, a JSON answer without
        a hook)."""
        more = bool(message.get("more_body", False))
        chunk: bytes = message.get("body", b"")
        if self._decoder is not None:
            await self._relay_events(chunk, more)
            return
        if self.kind == "sse" and not self.saw_done and any(word in chunk for word in _END_WORDS):
            self.saw_done = True
        if not more:
            self.complete = True
            self.ended_normally = self._normal_end()
        await self._send(message)

    async def _finish_json(self, body: bytes) -> None:
        start = self._pending_start
        assert start is not None
        self._pending_start = None
        assert self._on_json is not None
        assert self.status is not None
        replacement = self._on_json(self.status, body)
        if replacement is not None and replacement != body:
            body = replacement
            headers = without_headers(start.get("headers", ()), CONTENT_LENGTH)
            headers.append((b"content-length", str(len(body)).encode()))
            start = {**start, "headers": headers}
        self.started = True
        await self._send(start)
        self.complete = True
        self.ended_normally = self._normal_end()
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def _relay_events(self, chunk: bytes, more: bool) -> None:
        assert self._decoder is not None
        assert self._on_event is not None
        events = self._decoder.feed(chunk) if chunk else []
        if not more:
            events.extend(self._decoder.flush())
        out: list[bytes] = []
        for raw in events:
            if raw.startswith(_END_MARKERS):
                self.saw_done = True
                if self._on_end is not None:
                    out.extend(self._on_end())
            replaced = self._on_event(raw)
            out.append(raw if replaced is None else replaced)
        body = b"".join(out)
        if not more:
            self.complete = True
            self.ended_normally = self._normal_end()
            await self._send({"type": "http.response.body", "body": body, "more_body": False})
        elif body:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})

    def release(self) -> None:
        """Let go of the downstream ``send`` and the hooks once the app has returned: they are usually
        closures of the layer that made this tap, which refer to the tap in turn, and a cycle left per
        request is freed only by the garbage collector (tens of µs a request, and pauses)."""
        self._send = released
        self._on_json = self._on_event = self._on_end = None
        self._decoder = None
        self._body = []

    def _normal_end(self) -> bool:
        ok = self.status is not None and 200 <= self.status < 300
        return ok and (self.kind != "sse" or self.saw_done)


async def released(message: Message) -> None:
    """The ``send`` of a released tap (or of another layer's per-request sender): the app has
    returned, so nothing more may go out."""
    raise RuntimeError(f"{message['type']} after the app returned")


class Completes(Protocol):
    """What knows whether the answer's last body message has gone (a tap, the budget's exchange)."""

    @property
    def complete(self) -> bool: ...


def watch_disconnect(receive: Receive, ctx: RequestContext, tap: Completes | None = None) -> Receive:
    """A ``receive`` that records in the context a client that left before its answer was complete.

    Servers answer ``receive()`` with ``http.disconnect`` once a response is complete too (uvicorn does),
    so with a ``tap`` (or anything that knows when the answer is complete) a disconnect after the last
    body message is not counted as the client leaving.
    """

    async def receive_watched() -> Message:
        message = await receive()
        if message["type"] == "http.disconnect" and not (tap is not None and tap.complete):
            ctx.client_disconnected = True
        return message

    return receive_watched
