"""Pieces every translating adapter shares: OpenAI answers and chunks built from native parts.

The adapters for Anthropic, Gemini and Ollama differ in what they read; what they write is always the
OpenAI wire format, so it is written in one place.
"""

from __future__ import annotations

import base64
import re
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..context import Usage
from ..errors import GatewayError, InvalidRequest, UpstreamError
from ..models import ChatCompletionRequest, ChatMessage
from ..sse import DONE_EVENT, parse_event

Clock = Callable[[], float]
IdFactory = Callable[[str], str]

#: Adapters take ``clock`` and ``ids`` so golden tests can pin ``created`` and generated ids.
default_clock: Clock = time.time

#: A client-side refusal or a provider's content filter stopped the answer: OpenAI's finish reason.
CONTENT_FILTER = "content_filter"

_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(?P<data>.*)", re.DOTALL)
_VERSION_SEGMENT = re.compile(r"/v\d+(?:(?:alpha|beta)\d*)?$")


def random_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def versioned(base_url: str, version: str) -> str:
    """``base_url`` with an API version segment: kept when it ends in one (``/v1``, ``/v1beta``), else
    ``/version`` appended, so SDK-style base URLs (``https://api.anthropic.com``) work as they are."""
    return base_url if _VERSION_SEGMENT.search(base_url) else f"{base_url}/{version}"


def loads_object(content: bytes, what: str) -> dict[str, Any]:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"The upstream answered with {what} that is not valid JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"The upstream answered with {what} that is not a JSON object.")
    return data


def text_or(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:...;base64,...`` URL, or ``None`` for any other URL."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequest(
            "An image_url data URL must be base64-encoded: data:<media type>;base64,<data>.",
            param="messages",
        )
    return match.group("mime") or "application/octet-stream", match.group("data")


def tool_arguments(arguments: str, name: str) -> Any:
    """A tool call's JSON-encoded ``arguments`` as an object, for providers that take objects."""
    if not arguments.strip():
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            f"The arguments of the tool call '{name}' are not valid JSON.", param="messages"
        ) from None


def stop_list(request: ChatCompletionRequest) -> list[str] | None:
    stop = request.stop
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def tool_names_by_id(messages: list[ChatMessage]) -> dict[str, str]:
    """Tool call id → function name, for providers whose tool results name the function, not the call."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.tool_calls or ():
            names[call.id] = call.function.name
    return names


def upstream_error_message(data: Any) -> str | None:
    """The ``message`` of ``{"error": {"message": ...}}`` (or ``{"error": "..."}``), if any."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        return message if isinstance(message, str) else None
    return error if isinstance(error, str) else None


def completion(
    *,
    id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage | None,
) -> bytes:
    """A complete ``chat.completion`` body."""
    payload: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        payload["usage"] = usage.to_openai()
    return orjson.dumps(payload)


def choice(
    index: int, text: str | None, tool_calls: list[dict[str, Any]] | None, finish: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def tool_call(id: str, name: str, arguments: Any) -> dict[str, Any]:
    """An OpenAI tool call; ``arguments`` re-encoded as the JSON string OpenAI sends."""
    encoded = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {"id": id, "type": "function", "function": {"name": name, "arguments": encoded}}


def embeddings_body(
    vectors: list[list[float]], model: str, *, base64_encoded: bool, usage: Usage | None
) -> bytes:
    """An OpenAI embeddings list; ``base64`` as the openai SDK asks for it (little-endian float32)."""
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if base64_encoded
            else vector,
        }
        for index, vector in enumerate(vectors)
    ]
    tokens = usage.prompt_tokens if usage is not None else 0
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def event_data(raw: bytes) -> bytes:
    """The ``data`` of one SSE event (as :class:`~asgi_aigw.sse.SSEDecoder` yields them).

    Providers send ``data: ...`` or ``event: ...`` then ``data: ...``, one line each; those are sliced
    out directly, anything else (several data lines, comments, other fields) goes through the parser.
    """
    last = len(raw) - 2  # every event ends with its blank line
    if raw.startswith(b"data: "):
        if raw.find(b"\n") == last:
            return raw[6:last]
    elif raw.startswith(b"event: "):
        start = raw.find(b"\ndata: ")
        if start > 0 and raw.find(b"\n", start + 1) == last:
            return raw[start + 7 : last]
    return parse_event(raw).data


_NO_FINISH = b',"logprobs":null,"finish_reason":null}]}\n\n'


class ChunkStream:
    """Writes OpenAI ``chat.completion.chunk`` events for a translated stream.

    The role chunk is held back until the first content (or the finish), so a native stream that fails
    right after its preamble has sent nothing yet and the router can still retry it elsewhere. Chunks
    are assembled from a prefix encoded once per stream: only the delta is serialised per chunk.
    """

    __slots__ = (
        "_created",
        "_finish",
        "_head",
        "_id",
        "_include_usage",
        "_model",
        "_opened",
        "done",
        "usage",
    )

    def __init__(self, *, id: str, model: str, created: int, include_usage: bool) -> None:
        self._id = id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._opened = False
        self._finish: str | None = None
        self._head = b""
        self.usage: Usage | None = None
        self.done = False

    def identify(self, id: str | None, model: str | None) -> None:
        """Take the id and model the native stream announced (ignored once a chunk was written)."""
        if self._head:
            return
        if id:
            self._id = id
        if model:
            self._model = model

    @property
    def model(self) -> str:
        return self._model

    @property
    def opened(self) -> bool:
        """Whether any chunk has been written."""
        return self._opened

    @property
    def finished(self) -> bool:
        return self._finish is not None

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: bytes, finish: str | None = None) -> bytes:
        head = self._head
        if not head:
            envelope = orjson.dumps(self._envelope())
            head = self._head = b"data: " + envelope[:-1] + b',"choices":[{"index":0,"delta":'
        if finish is None:
            return head + delta + _NO_FINISH
        return head + delta + b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"

    def _open(self, out: list[bytes]) -> None:
        if not self._opened:
            self._opened = True
            out.append(self._chunk(b'{"role":"assistant","content":""}'))

    def text(self, out: list[bytes], text: str) -> None:
        if text:
            if not self._opened:
                self._open(out)
            # the hottest path of a translated stream: one join, one serialisation
            out.append(b"".join((self._head, b'{"content":', orjson.dumps(text), b"}", _NO_FINISH)))

    def tool_call_start(
        self, out: list[bytes], position: int, id: str, name: str, arguments: str = ""
    ) -> None:
        self._open(out)
        call = {
            "index": position,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))

    def tool_call_arguments(self, out: list[bytes], position: int, fragment: str) -> None:
        if fragment:
            self._open(out)
            call = {"index": position, "function": {"arguments": fragment}}
            out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))

    def finish(self, out: list[bytes], reason: str) -> None:
        if self._finish is None:
            self._open(out)
            self._finish = reason
            out.append(self._chunk(b"{}", reason))

    def end(self, out: list[bytes]) -> None:
        """The native stream ended normally: the usage chunk (if the client asked) and ``[DONE]``."""
        if self.done:
            return
        if self._finish is None:
            self.finish(out, "stop")
        if self._include_usage and self.usage is not None:
            payload = {**self._envelope(), "choices": [], "usage": self.usage.to_openai()}
            out.append(b"data: " + orjson.dumps(payload) + b"\n\n")
        out.append(DONE_EVENT)
        self.done = True


class ContentFiltered(GatewayError):
    """400: the provider refused the prompt or the answer for safety reasons (nothing to retry)."""

    status = 400
    type = "invalid_request_error"
    code = CONTENT_FILTER


def now_int(clock: Clock) -> int:
    return int(clock())
