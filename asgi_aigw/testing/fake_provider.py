"""FakeProvider: an ASGI app that speaks a provider's wire format exactly, answering deterministically.

It answers ``Echo: <last user message>`` (so what reached the provider is visible in the answer), counts
tokens as words and punctuation marks (one per streamed piece on the way out), and can be told to be
slow, to fail, to send malformed output or to cut a stream short. It records every request it received.

Serve it in process (:class:`~asgi_aigw.testing.StreamingASGITransport`) or on a real port
(:func:`~asgi_aigw.testing.serve`, or ``uvicorn asgi_aigw.testing.fake_provider:app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from ..kernel.lifespan import serve_lifespan
from ..kernel.types import Message, Receive, Scope, Send
from . import _anthropic_format as anthropic_format
from . import _azure_format as azure_format
from . import _gemini_format as gemini_format
from . import _ollama_format as ollama_format
from . import _openai_format as openai_format
from . import _responses_format as responses_format
from ._anthropic_cache import PromptCache
from ._fake_text import count_tokens, split_pieces


@dataclass
class FakeBehaviour:
    """How the fake answers. Mutate ``FakeProvider.behaviour`` or queue one-shot behaviours."""

    #: Seconds to wait before the status line (a slow first byte).
    first_byte_delay: float = 0.0
    #: Seconds between streamed chunks (slow generation).
    chunk_delay: float = 0.0
    #: Answer with this HTTP status and the provider's error body instead of an answer.
    status: int = 200
    error_message: str = "The fake provider was told to fail."
    #: Sent as ``Retry-After`` with an error status.
    retry_after: str | None = None
    #: Streams: close the connection after this many content chunks (no finish chunk, no ``[DONE]``).
    cut_after: int | None = None
    #: Send a body that is not valid JSON (or an SSE event whose data is not).
    malformed: bool = False
    #: Answer with this text instead of the echo.
    answer: str | None = None
    #: Streams: after this many content chunks, send the provider's own in-stream error (Anthropic's
    #: ``overloaded_error`` event, Gemini's error object, Ollama's ``{"error"}`` line) and end.
    stream_error_after: int | None = None
    #: Refuse for safety reasons: Gemini blocks the prompt (``promptFeedback.blockReason``), Anthropic
    #: answers ``stop_reason: refusal``.
    blocked: bool = False
    #: Azure OpenAI's content filter: ``"prompt"`` blocks the prompt (400 ``content_filter``),
    #: ``"completion"`` withholds the whole answer, ``"partial"`` stops it half way (both end with
    #: ``finish_reason: "content_filter"``).
    content_filter: Literal["prompt", "completion", "partial"] | None = None
    #: Answer past the output cap the request set (``max_tokens`` and its native names), as a
    #: misbehaving upstream would: the whole answer, and usage that reports all of it.
    ignore_output_cap: bool = False


@dataclass
class ReceivedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass
class _Turn:
    """What one request is answered with: the text or tool call, and the token counts."""

    text: str
    tool_call: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    pieces: list[str] = field(default_factory=list)
    #: The answer was cut at the request's output cap (finish reason ``length`` and its native names).
    truncated: bool = False


class FakeProvider:
    """A deterministic provider for tests and demos, speaking four wire formats chosen by path:

    - OpenAI: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models`` (JSON and SSE);
    - Anthropic: ``/v1/messages`` (JSON and SSE events), ``/v1/messages/count_tokens``;
    - Gemini: ``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``,
      ``:embedContent``, ``:batchEmbedContents``;
    - Ollama: ``/api/chat`` (NDJSON stream or one object), ``/api/embed``;
    - Azure OpenAI: ``/openai/deployments/{deployment}/chat/completions?api-version=V`` and
      ``.../embeddings``, ``/openai/v1/chat/completions`` and ``/openai/v1/embeddings``;
    - Mistral's departures from the OpenAI format under ``/mistral/v1/`` (it refuses
      ``stream_options`` and ``max_completion_tokens``, and sends usage on a stream's last chunk), and
      Groq's under ``/groq/v1/`` (it refuses ``logprobs``, ``top_logprobs``, ``logit_bias``, message
      names and ``n`` other than 1).

    Every format answers from the same :meth:`plan_turn`, so answers and token counts agree.
    """

    def __init__(
        self,
        behaviour: FakeBehaviour | None = None,
        *,
        model: str = "fake-model",
        keep_requests: int | None = None,
    ) -> None:
        self.behaviour = behaviour or FakeBehaviour()
        self.default_model = model
        #: The requests received, oldest first: every one, or the last ``keep_requests`` when that is set
        #: (a fake served for hours must not hold every body it was sent).
        self.requests: list[ReceivedRequest] = []
        if keep_requests is not None and keep_requests < 0:
            raise ValueError(f"keep_requests counts requests to keep (0 or more), not {keep_requests}")
        self.keep_requests = keep_requests
        #: Azure deployments served, by name, with the model each reports; empty: any name is served
        #: (reporting itself as the model).
        self.azure_deployments: dict[str, str] = {}
        #: Streams the client (the gateway) closed before they ended.
        self.disconnects = 0
        #: Streams that ran to their end.
        self.completed_streams = 0
        #: Anthropic's prompt cache: requests with ``cache_control`` breakpoints write and read it.
        self.prompt_cache = PromptCache()
        self._queue: deque[FakeBehaviour] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- control ------------------------------------------------------------------------------------

    def enqueue(self, behaviour: FakeBehaviour, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``behaviour``, then go back to the default."""
        with self._lock:
            self._queue.extend(replace(behaviour) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.disconnects = 0
            self.completed_streams = 0
        self.prompt_cache.clear()
        self.behaviour = FakeBehaviour()

    def _next_behaviour(self) -> FakeBehaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.behaviour

    @property
    def last_request(self) -> ReceivedRequest:
        return self.requests[-1]

    # -- ASGI ---------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received = ReceivedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        with contextlib.suppress(orjson.JSONDecodeError):
            received.json = orjson.loads(body) if body else None
        with self._lock:
            self.requests.append(received)
            if self.keep_requests is not None and len(self.requests) > self.keep_requests:
                del self.requests[0]
        behaviour = self._next_behaviour()
        if behaviour.first_byte_delay:
            await asyncio.sleep(behaviour.first_byte_delay)
        await self._dispatch(received, behaviour, receive, send)

    async def _dispatch(
        self, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
    ) -> None:
        path = request.path.rstrip("/")
        if azure_format.is_azure_path(path) and request.method == "POST":
            await azure_format.dispatch(self, request, behaviour, receive, send)
        elif path.endswith("/chat/completions") and request.method == "POST":
            flavour = _FLAVOURS.get(path.split("/", 2)[1], openai_format.OPENAI)
            await openai_format.chat(self, request, behaviour, receive, send, flavour)
        elif path.endswith("/embeddings") and request.method == "POST":
            await openai_format.embeddings(self, request, behaviour, send)
        elif path.endswith("/models") and request.method == "GET":
            await openai_format.models(self, send)
        elif path.endswith("/messages/count_tokens") and request.method == "POST":
            await anthropic_format.count_tokens(self, request, behaviour, send)
        elif path.endswith("/v1/responses") and request.method == "POST":
            await responses_format.responses(self, request, behaviour, receive, send)
        elif path.endswith("/messages") and request.method == "POST":
            await anthropic_format.messages(self, request, behaviour, receive, send)
        elif ":" in path.rsplit("/", 1)[-1] and request.method == "POST":
            await gemini_format.dispatch(self, request, behaviour, receive, send)
        elif path.endswith("/api/chat") and request.method == "POST":
            await ollama_format.chat(self, request, behaviour, receive, send)
        elif path.endswith("/api/embed") and request.method == "POST":
            await ollama_format.embed(self, request, behaviour, send)
        else:
            await self.send_json(
                send,
                404,
                {
                    "error": {
                        "message": f"Unknown path {path}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )

    # -- shared by the wire formats -----------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):024x}"

    @staticmethod
    def now() -> int:
        return int(time.time())

    def plan_turn(
        self,
        messages: list[tuple[str, str]],
        tools: list[str],
        behaviour: FakeBehaviour,
        cap: Any = None,
    ) -> _Turn:
        """Decide the answer from ``(role, text)`` messages and the names of the tools offered.

        With tools offered and a user message last, the fake calls the first tool with the user's text
        as ``{"query": ...}``; after a tool result it answers ``Tool said: <result>``. A text answer
        longer than ``cap`` tokens (the request's output cap) is cut there, as real providers do,
        unless the behaviour says to ignore the cap.
        """
        prompt_tokens = sum(count_tokens(text) + 4 for _, text in messages) + 3
        last_role, last_text = messages[-1] if messages else ("user", "")
        tool_call: dict[str, Any] | None = None
        if behaviour.answer is not None:
            text = behaviour.answer
        elif tools and last_role == "user":
            tool_call = {"name": tools[0], "arguments": {"query": last_text}}
            text = ""
        elif last_role == "tool":
            text = f"Tool said: {last_text}"
        else:
            last_user = next((t for role, t in reversed(messages) if role == "user"), last_text)
            text = f"Echo: {last_user}"
        if tool_call is not None:
            arguments = orjson.dumps(tool_call["arguments"]).decode()
            completion = count_tokens(tool_call["name"]) + count_tokens(arguments)
            return _Turn(text, tool_call, prompt_tokens, completion, [])
        pieces = split_pieces(text)
        limited = isinstance(cap, int) and not isinstance(cap, bool) and cap > 0
        if limited and not behaviour.ignore_output_cap and len(pieces) > cap:
            pieces = pieces[:cap]
            return _Turn("".join(pieces), None, prompt_tokens, len(pieces), pieces, truncated=True)
        return _Turn(text, None, prompt_tokens, len(pieces), pieces)

    @staticmethod
    def thinking(messages: list[tuple[str, str]]) -> tuple[str, list[str]]:
        """The fake's thinking text when a request turns thinking on (``Considering: <last user
        message>``, so placeholders in the prompt reach it) and its streamed pieces, one token each."""
        last_user = next((t for role, t in reversed(messages) if role == "user"), "")
        text = f"Considering: {last_user}"
        return text, split_pieces(text)

    async def refuse(
        self,
        send: Send,
        behaviour: FakeBehaviour,
        error: Callable[[int, str], Any],
        problem: str | None = None,
        *,
        malformed: bytes | None = None,
    ) -> bool:
        """Answer in an endpoint's place when the request or the behaviour says so, as every endpoint
        does first: 400 for ``problem`` (what is wrong with the body), then the error status the
        behaviour asks for (with ``Retry-After``), then ``malformed`` if the behaviour asks for a body
        that is not JSON. ``error(status, message)`` is the provider's error body. True if it answered.
        """
        if problem is not None:
            await self.send_json(send, 400, error(400, problem))
        elif behaviour.status != 200:
            headers = [(b"retry-after", behaviour.retry_after.encode())] if behaviour.retry_after else []
            await self.send_json(
                send, behaviour.status, error(behaviour.status, behaviour.error_message), headers
            )
        elif malformed is not None and behaviour.malformed:
            await self.send_raw(send, 200, malformed, b"application/json")
        else:
            return False
        return True

    @staticmethod
    async def send_json(
        send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        body = orjson.dumps(payload)
        await FakeProvider.send_raw(send, status, body, b"application/json", headers)

    @staticmethod
    async def send_raw(
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        out = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        out.extend(headers or ())
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def stream(
        self,
        send: Send,
        receive: Receive,
        behaviour: FakeBehaviour,
        content_type: bytes,
        events: list[bytes],
        *,
        content_events: int,
        head: int = 1,
    ) -> None:
        """Send ``events`` one by one, ``chunk_delay`` apart, noticing a client that leaves.

        ``cut_after`` counts content events: the first ``head`` events are the preamble.
        """
        if behaviour.cut_after is not None:
            events = events[: head + min(behaviour.cut_after, content_events)]
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", content_type), (b"cache-control", b"no-cache")],
                }
            )
            for index, event in enumerate(events):
                if index and behaviour.chunk_delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(disconnected.wait(), behaviour.chunk_delay)
                if disconnected.is_set():
                    with self._lock:
                        self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if behaviour.cut_after is not None:
                # cut short: end the body without the rest (the gateway sees no [DONE])
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            with self._lock:
                self.completed_streams += 1
        finally:
            watcher.cancel()


#: OpenAI-compatible servers whose departures the fake speaks, by the first segment of the path.
_FLAVOURS = {"mistral": openai_format.MISTRAL, "groq": openai_format.GROQ}

#: Requests the served instance keeps. Keeping all of them, a benchmark's upstream grew by every body it
#: was sent and paused for ever longer full collections (80-110 ms a few minutes in), which showed as
#: the gateway's p99 latency.
SERVED_KEEPS = 1000

app = FakeProvider(keep_requests=SERVED_KEEPS)
"""A module-level instance for ``uvicorn asgi_aigw.testing.fake_provider:app``: it keeps the last
:data:`SERVED_KEEPS` requests."""
