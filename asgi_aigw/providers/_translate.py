"""Pieces every translating adapter shares: OpenAI answers and chunks built from native parts, and
the bases of the adapters (:class:`NativeAdapter`) and of their stream translators
(:class:`NativeStreamTranslator`).

The adapters for Anthropic, Gemini and Ollama differ in what they read; what they write is always the
OpenAI wire format, so it is written in one place.
"""

from __future__ import annotations

import base64
import re
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Protocol

import orjson

from ..kernel.context import Usage
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError
from ..kernel.models import ChatCompletionRequest, ChatMessage
from ..kernel.sse import DONE_EVENT
from .base import Deployment, TranslatedResponse, UpstreamRequest

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


#: The prefix of a Chat Completions answer's id, which OpenAI clients and log tools expect.
COMPLETION_ID_PREFIX = "chatcmpl-"


def completion_id(native: Any) -> str | None:
    """A Chat Completions id for the provider's own answer id (``msg_...`` → ``chatcmpl-msg_...``):
    the OpenAI prefix, and the provider's id kept for tracing the call in its console."""
    if not native:
        return None
    text = str(native)
    return text if text.startswith(COMPLETION_ID_PREFIX) else COMPLETION_ID_PREFIX + text


def versioned(base_url: str, version: str) -> str:
    """``base_url`` with an API version segment: kept when it ends in one (``/v1``, ``/v1beta``), else
    ``/version`` appended, so SDK-style base URLs (``https://api.anthropic.com``) work as they are."""
    return base_url if _VERSION_SEGMENT.search(base_url) else f"{base_url}/{version}"


#: The headers of every JSON request.
JSON_HEADERS: Mapping[str, str] = {"content-type": "application/json"}


def post_json(
    url: str,
    deployment: Deployment,
    payload: Any,
    key_header: str = "authorization",
    key_prefix: str = "Bearer ",
    fixed: Mapping[str, str] = JSON_HEADERS,
) -> UpstreamRequest:
    """A JSON POST to ``url``: the ``fixed`` headers, the deployment's API key (in ``key_header``,
    after ``key_prefix``), then the deployment's own headers, which win."""
    headers = dict(fixed)
    if deployment.api_key:
        headers[key_header] = key_prefix + deployment.api_key
    if deployment.headers:
        headers.update(deployment.headers)
    return UpstreamRequest("POST", url, headers, orjson.dumps(payload))


def loads_object(content: bytes, what: str, *, upstream: str = "The upstream") -> dict[str, Any]:
    """An answer as the JSON object it must be; else an error naming ``what`` the ``upstream`` sent."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{upstream} answered with {what} that is not valid JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamError(f"{upstream} answered with {what} that is not a JSON object.")
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


#: The OpenAI sampling parameters other providers take, under other names. ``max_tokens`` stands for
#: ``max_tokens`` or ``max_completion_tokens``; ``top_k`` is no OpenAI parameter, but clients send it to
#: the providers that take it, so it is read from the body as sent.
SamplingParameter = Literal[
    "temperature",
    "top_p",
    "top_k",
    "n",
    "max_tokens",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
]


def sampling(
    request: ChatCompletionRequest, body: dict[str, Any], names: Mapping[SamplingParameter, str]
) -> dict[str, Any]:
    """The sampling parameters ``request`` sets, renamed: ``names`` maps each OpenAI parameter the
    provider takes to the provider's name for it (in the order it is sent). Unset ones are left out."""
    top_k = body.get("top_k")
    values: dict[SamplingParameter, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": top_k if isinstance(top_k, int) else None,
        "n": request.n,
        "max_tokens": request.output_limit,
        "stop": stop_list(request),
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "seed": request.seed,
    }
    params: dict[str, Any] = {}
    for parameter, native in names.items():
        if (value := values[parameter]) is not None:
            params[native] = value
    return params


def tool_names_by_id(messages: list[ChatMessage]) -> dict[str, str]:
    """Tool call id → function name, for providers whose tool results name the function, not the call."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.tool_calls or ():
            names[call.id] = call.function.name
    return names


def error_body(content: bytes) -> Any:
    """An error answer's JSON, or ``None`` when it is none (a proxy's HTML page, say)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def upstream_error_message(data: Any, label: str | None = None) -> str | None:
    """The ``message`` of ``{"error": {"message": ...}}`` (or ``{"error": "..."}``), if any. With
    ``label``, the error's field of that name (its type, its status) goes first: ``"type: message"``."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if not isinstance(error, dict):
        return error if isinstance(error, str) else None
    words = (error.get(label) if label else None, error.get("message"))
    return ": ".join(w for w in words if isinstance(w, str) and w) or None


class ContentFiltered(GatewayError):
    """400: the provider refused the prompt or the answer for safety reasons (nothing to retry)."""

    status = 400
    type = "invalid_request_error"
    code = CONTENT_FILTER


def choice(
    index: int,
    text: str | None,
    tool_calls: list[dict[str, Any]] | None,
    finish: str | None,
    reasoning: str | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An OpenAI choice; ``reasoning`` (the provider's thinking text) goes in ``reasoning_content``,
    where DeepSeek, vLLM and LiteLLM put it and OpenAI-compatible clients read it; ``logprobs`` is the
    choice's token log probabilities, when asked for."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not tool_calls else None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}


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


_loads = orjson.loads
#: What follows a chunk's delta when it carries no finish reason, and a text delta's closing brace.
_NO_FINISH = b',"logprobs":null,"finish_reason":null}]}\n\n'
_TEXT_END = b"}" + _NO_FINISH


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
        "_text_head",
        "done",
        "opened",
        "usage",
    )

    def __init__(self, *, id: str, model: str, created: int, include_usage: bool) -> None:
        self._id = id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._finish: str | None = None
        self._head = b""
        self._text_head = b""
        #: Whether any chunk has been written (read it; the stream sets it).
        self.opened = False
        self.usage: Usage | None = None
        self.done = False

    def identify(self, id: str | None, model: str | None) -> None:
        """Take the id and model the native stream announced (ignored once a chunk was written)."""
        if self._head:
            return
        if id:
            self._id = completion_id(id) or self._id
        if model:
            self._model = model

    @property
    def model(self) -> str:
        return self._model

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
            self._text_head = head + b'{"content":'
        if finish is None:
            return head + delta + _NO_FINISH
        return head + delta + b',"logprobs":null,"finish_reason":' + orjson.dumps(finish) + b"}]}\n\n"

    def _open(self, out: list[bytes]) -> None:
        if not self.opened:
            self.opened = True
            out.append(self._chunk(b'{"role":"assistant","content":""}'))

    def text(self, out: list[bytes], text: str) -> None:
        if text:
            if not self.opened:
                self._open(out)
            # the hottest path of a translated stream: the text is all that is serialised
            out.append(self._text_head + orjson.dumps(text) + _TEXT_END)

    def text_logprobs(self, out: list[bytes], text: str, logprobs: dict[str, Any]) -> None:
        """Text with the log probabilities of its tokens (``choices[].logprobs``); apart from
        :meth:`text` so the common chunk stays a concatenation. Written even when ``text`` is empty,
        so no token's log probability is lost."""
        self._open(out)  # (which encodes the prefix, once)
        out.append(
            self._head
            + orjson.dumps({"content": text})
            + b',"logprobs":'
            + orjson.dumps(logprobs)
            + b',"finish_reason":null}]}\n\n'
        )

    def reasoning(self, out: list[bytes], text: str) -> None:
        """Thinking text, as ``delta.reasoning_content``."""
        if text:
            self._open(out)
            out.append(self._chunk(b'{"reasoning_content":' + orjson.dumps(text) + b"}"))

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


class PayloadDecoder(Protocol):
    """Cuts a native stream into the JSON texts it carries, whatever the chunk boundaries."""

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return every JSON text they complete."""
        ...


class NativeStreamTranslator:
    """The part the translators of native streams (Anthropic, Gemini, Ollama) share: a decoder cuts
    the stream into JSON payloads, each is parsed and handed to :meth:`_event`, which writes OpenAI
    chunks through a :class:`ChunkStream`; that stream holds what the router reads (``usage``,
    ``done``, ``upstream_model``)."""

    __slots__ = ("_decoder", "_out")

    #: The error for a payload that is not JSON (it names the provider).
    not_json: ClassVar[str] = "The upstream sent a stream event that is not valid JSON."
    #: Fed at the end of the stream to finish a last payload that came without its terminator.
    terminator: ClassVar[bytes] = b"\n\n"

    def __init__(self, out: ChunkStream, decoder: PayloadDecoder) -> None:
        self._out = out
        self._decoder = decoder

    @property
    def usage(self) -> Usage | None:
        return self._out.usage

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._out.usage = value

    @property
    def done(self) -> bool:
        return self._out.done

    @done.setter
    def done(self, value: bool) -> None:
        self._out.done = value

    @property
    def upstream_model(self) -> str:
        """The model the stream reported (the deployment's until it does)."""
        return self._out.model

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        stream, event = self._out, self._event
        for payload in self._decoder.feed_data(chunk):
            if stream.done:
                break  # nothing after the end belongs to this answer
            try:
                data = _loads(payload)
            except orjson.JSONDecodeError:
                raise UpstreamError(self.not_json) from None
            event(data, out)
        return out

    def close(self) -> list[bytes]:
        # a last payload without its terminator still counts (leniently, as browsers do)
        out = self.feed(self.terminator)
        self._ended(out)
        return out

    def _event(self, data: Any, out: list[bytes]) -> None:
        """Translate one parsed payload, appending the OpenAI events it makes to ``out``."""
        raise NotImplementedError

    def _ended(self, out: list[bytes]) -> None:
        """The native stream ended (normally or not): append any final events to ``out``."""


#: The request fields every translating adapter reads (routing, streaming and the output cap).
READ_BY_ALL = frozenset(
    {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "top_k"}
)
#: Values that ask for nothing beyond the default: a field set to one of them is not reported dropped.
_DEFAULTS: dict[str, Any] = {"logprobs": False, "parallel_tool_calls": True, "n": 1, "store": False}


def unread_fields(body: Mapping[str, Any], read: frozenset[str]) -> list[str]:
    """The fields of ``body`` outside ``read`` that ask for something (not ``None``, not the default)."""
    return [
        key
        for key, value in body.items()
        if key not in read and value is not None and not (key in _DEFAULTS and value == _DEFAULTS[key])
    ]


def named_messages(request: ChatCompletionRequest) -> bool:
    """Whether a message carries a participant ``name`` (a tool result's name is read as its function)."""
    return any(m.name for m in request.messages if m.role not in ("tool", "function"))


class NativeAdapter:
    """Base of the adapters that translate (Anthropic, Gemini, Ollama): the answers and chunk streams
    they write are stamped by ``clock`` and get ids from ``ids`` (golden tests pin both)."""

    #: The request fields this adapter maps or refuses, besides :data:`READ_BY_ALL`; any other field
    #: the client set is reported by :meth:`dropped_params`.
    reads: ClassVar[frozenset[str]] = frozenset()

    #: The prefix of the ids made for answers the provider does not name.
    id_prefix: ClassVar[str] = COMPLETION_ID_PREFIX
    #: The header that carries the API key, and what goes before the key in it.
    key_header: ClassVar[str] = "authorization"
    key_prefix: ClassVar[str] = "Bearer "
    #: The headers every request carries.
    fixed_headers: ClassVar[Mapping[str, str]] = JSON_HEADERS

    def __init__(self, *, clock: Clock = default_clock, ids: IdFactory = random_id) -> None:
        self._clock = clock
        self._ids = ids

    def dropped_params(self, request: ChatCompletionRequest, body: Mapping[str, Any]) -> list[str]:
        """The request fields this provider has no place for: left out of the native request and named
        in the ``x-aigw-dropped-params`` answer header, so a client can tell."""
        dropped = unread_fields(body, READ_BY_ALL | self.reads)
        if named_messages(request):
            dropped.append("name")
        dropped.extend(self._dropped_values(request))
        return dropped

    def _dropped_values(self, request: ChatCompletionRequest) -> list[str]:
        """Fields this adapter reads but drops for some values (a default: none)."""
        return []

    def _post(self, url: str, deployment: Deployment, payload: Any) -> UpstreamRequest:
        return post_json(url, deployment, payload, self.key_header, self.key_prefix, self.fixed_headers)

    def _answer(
        self, id: Any, model: str, choices: list[dict[str, Any]], usage: Usage | None
    ) -> TranslatedResponse:
        """A complete ``chat.completion`` answer; ``id`` is the provider's, made up when it gave none."""
        payload: dict[str, Any] = {
            "id": completion_id(id) or self._ids(self.id_prefix),
            "object": "chat.completion",
            "created": int(self._clock()),
            "model": model,
            "choices": choices,
        }
        if usage is not None:
            payload["usage"] = usage.to_openai()
        return TranslatedResponse(orjson.dumps(payload), usage, model)

    def _chunks(self, deployment: Deployment, *, include_usage: bool) -> ChunkStream:
        """The writer of a stream's OpenAI chunks (id and model are the provider's once it names them)."""
        return ChunkStream(
            id=self._ids(self.id_prefix),
            model=deployment.model,
            created=int(self._clock()),
            include_usage=include_usage,
        )
