"""A cached answer: assembled from a JSON answer or an SSE stream, replayed as either.

What is kept is the final answer (text or tool calls, the thinking text a provider returned as
``reasoning_content``, finish reason, usage, model, ``service_tier``, ``annotations``) and the headers
that say who answered (``x-aigw-provider``, ``x-aigw-model``, ``x-aigw-deployment``), never the
provider's ids: every replay gets a fresh ``chatcmpl-`` id and the current time, like a live answer.
A hit looks like the miss that stored it; only the cache headers differ.

This is the chat dialect's entry; an entry names its dialect (``"dialect": "messages"``, see
:mod:`.replay_messages`), and one without that field is a chat entry, as every entry stored before
dialects existed is.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.sse import DONE_EVENT, encode_data
from ..kernel.unique_ids import IdSource
from .stored import decode_entry, encode_entry, kept_headers, replayed, stored_at, stored_headers
from .stream_event import stream_event
from .usage_memo import UsageMemo

#: Size of the content pieces of a replayed stream: small enough to look live, few enough to be cheap.
_PIECE_CHARS = 48

#: Finish reasons of answers worth replaying ("content_filter" and unknown ones are not stored).
CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls", "function_call"})


@dataclass(slots=True)
class CachedAnswer:
    model: str
    content: str | None
    finish_reason: str
    tool_calls: list[dict[str, Any]] | None = None
    refusal: str | None = None
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    #: The message's ``annotations`` (URL citations); ``None`` when the answer had no such field.
    annotations: list[Any] | None = None
    #: :data:`REPLAYED_HEADERS` of the answer that was stored, as (name, value) text pairs.
    headers: list[tuple[str, str]] | None = None
    created_at: float = field(default_factory=time.time)
    #: The message's ``reasoning_content`` (the provider's thinking text), ``None`` when it had none.
    reasoning_content: str | None = None
    #: What a hit replays, rendered once per entry (entries are shared by every hit): the fields it
    #: was rendered from, the JSON body after ``created``, the replayed headers. See :meth:`_rendered`.
    _replay: tuple[tuple[Any, ...], bytes, list[tuple[bytes, bytes]]] | None = field(
        default=None, repr=False, compare=False
    )
    _usage: UsageMemo = field(
        default_factory=lambda: UsageMemo(Usage.from_openai), init=False, repr=False, compare=False
    )

    # -- storage --------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        # reasoning_content is stored only when there is some: entries without it stay as they were
        thinking = {"reasoning_content": self.reasoning_content} if self.reasoning_content is not None else {}
        return encode_entry(
            None,
            {
                "model": self.model,
                "content": self.content,
                "finish_reason": self.finish_reason,
                "tool_calls": self.tool_calls,
                "refusal": self.refusal,
                "usage": self.usage,
                "system_fingerprint": self.system_fingerprint,
                "service_tier": self.service_tier,
                "annotations": self.annotations,
                **thinking,
            },
            self.headers,
            self.created_at,
        )

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> CachedAnswer | None:
        """The answer stored as ``raw``; ``None`` if it is not one (another version, corruption)."""
        data = decode_entry(raw, "chat")
        if data is None or not isinstance(data.get("model"), str):
            return None
        return cls(
            model=data["model"],
            content=data.get("content"),
            finish_reason=str(data.get("finish_reason") or "stop"),
            tool_calls=data.get("tool_calls"),
            refusal=data.get("refusal"),
            usage=data.get("usage") if isinstance(data.get("usage"), dict) else None,
            system_fingerprint=data.get("system_fingerprint"),
            service_tier=_str_or_none(data.get("service_tier")),
            annotations=data.get("annotations") if isinstance(data.get("annotations"), list) else None,
            headers=stored_headers(data),
            created_at=stored_at(data),
            reasoning_content=_str_or_none(data.get("reasoning_content")),
        )

    # -- capture --------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, body: bytes) -> CachedAnswer | None:
        """From a complete ``chat.completion`` body with exactly one choice; ``None`` if it is not one."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("object") != "chat.completion":
            return None
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            return None
        message = choices[0].get("message")
        if not isinstance(message, dict):
            return None
        content = message.get("content")
        tool_calls = message.get("tool_calls")
        return cls(
            model=str(data.get("model") or ""),
            content=content if isinstance(content, str) else None,
            finish_reason=str(choices[0].get("finish_reason") or "stop"),
            tool_calls=tool_calls if isinstance(tool_calls, list) and tool_calls else None,
            refusal=message.get("refusal") if isinstance(message.get("refusal"), str) else None,
            usage=data.get("usage") if isinstance(data.get("usage"), dict) else None,
            system_fingerprint=data.get("system_fingerprint"),
            service_tier=_str_or_none(data.get("service_tier")),
            annotations=message["annotations"] if isinstance(message.get("annotations"), list) else None,
            reasoning_content=_str_or_none(message.get("reasoning_content")),
        )

    def worth_storing(self, *, cache_tool_calls: bool) -> bool:
        return self.finish_reason in CACHEABLE_FINISH and (cache_tool_calls or not self.tool_calls)

    def replay_usage(self) -> Usage | None:
        """The usage a hit reports to the other layers: the stored answer's own figures."""
        return self._usage(self.usage)

    def fill_usage(self, usage: Usage) -> None:
        """Store ``usage`` (read by the router) with an answer whose stream carried none."""
        self.usage = usage.to_openai()

    def keep_headers(self, headers: Any) -> None:
        """Keep the :data:`REPLAYED_HEADERS` among the answer's response ``headers``."""
        self.headers = kept_headers(headers)

    def replayed_headers(self) -> list[tuple[bytes, bytes]]:
        """The stored headers, ready for ``http.response.start``."""
        return list(self._rendered()[2])

    def _rendered(self) -> tuple[tuple[Any, ...], bytes, list[tuple[bytes, bytes]]]:
        """The replay's constant parts, rendered again only when a field was assigned since (compared by
        identity: an equal value of another type, ``1.0`` for ``1``, would render differently)."""
        fields = (
            self.model,
            self.content,
            self.finish_reason,
            self.tool_calls,
            self.refusal,
            self.usage,
            self.system_fingerprint,
            self.service_tier,
            self.annotations,
            self.reasoning_content,
            self.headers,
        )
        memo = self._replay
        if memo is None or not all(map(operator.is_, memo[0], fields)):
            payload: dict[str, Any] = {
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": self._message(),
                        "logprobs": None,
                        "finish_reason": self.finish_reason,
                    }
                ],
                "usage": self.usage,
                "system_fingerprint": self.system_fingerprint,
            }
            if self.service_tier is not None:
                payload["service_tier"] = self.service_tier
            memo = self._replay = (fields, orjson.dumps(payload)[1:], replayed(self.headers))
        return memo

    # -- replay ---------------------------------------------------------------------------------------

    def _message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": self.refusal}
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        if self.annotations is not None:
            message["annotations"] = self.annotations
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message

    def to_json(self) -> bytes:
        """A ``chat.completion`` body, as a live answer would be: a fresh id and time spliced in front
        of the rest, rendered once (the same bytes ``orjson.dumps`` gives for the whole object)."""
        created = str(int(time.time())).encode()
        head = b'{"id":"' + new_completion_id().encode() + b'","object":"chat.completion","created":'
        return head + created + b"," + self._rendered()[1]

    def to_sse(self, *, include_usage: bool) -> list[bytes]:
        """The SSE events of a live stream: role chunk, content (or tool-call) chunks, finish chunk,
        usage chunk when ``include_usage``, ``[DONE]``."""
        base: dict[str, Any] = {
            "id": new_completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }
        if self.service_tier is not None:
            base["service_tier"] = self.service_tier

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                data["usage"] = None
            return encode_data(orjson.dumps(data))

        events = [chunk({"role": "assistant", "content": "" if self.content is not None else None})]
        if self.reasoning_content:
            # thinking streams before the answer, as it did live
            pieces = split_pieces(self.reasoning_content)
            events.extend(chunk({"reasoning_content": piece}) for piece in pieces)
        if self.content:
            events.extend(chunk({"content": piece}) for piece in split_pieces(self.content))
        if self.refusal:
            events.append(chunk({"refusal": self.refusal}))
        if self.annotations:
            events.append(chunk({"annotations": self.annotations}))
        for index, call in enumerate(self.tool_calls or ()):
            events.append(chunk({"tool_calls": [{"index": index, **call}]}))
        events.append(chunk({}, self.finish_reason))
        if include_usage:
            events.append(encode_data(orjson.dumps({**base, "choices": [], "usage": self.usage})))
        events.append(DONE_EVENT)
        return events


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


#: Completion ids: unique without a syscall per replay.
_IDS = IdSource(8)


def new_completion_id() -> str:
    """``chatcmpl-`` and 32 hex digits, as OpenAI's ids look."""
    return f"chatcmpl-{_IDS.prefix}{_IDS.next_number() & 0xFFFFFFFFFFFFFFFF:016x}"


def split_pieces(text: str, size: int = _PIECE_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut after whitespace where possible."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + 1, end)
            if cut > start:
                end = cut
        pieces.append(text[start:end])
        start = end
    return pieces


class StreamAssembler:
    """Rebuilds the final answer from the SSE events of a chat stream as they pass.

    ``failed`` turns true on anything that must not be cached: an ``error`` event, more than one choice,
    an event that is not JSON.
    """

    __slots__ = (
        "_annotations",
        "_content",
        "_reasoning",
        "_refusal",
        "_tools",
        "failed",
        "fingerprint",
        "finish_reason",
        "model",
        "service_tier",
        "usage",
    )

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._tools: dict[int, dict[str, Any]] = {}
        self._annotations: list[Any] = []
        self.service_tier: str | None = None
        self.model = ""
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.fingerprint: str | None = None
        self.failed = False

    def feed(self, raw: bytes) -> None:
        if self.failed:
            return
        data, self.failed = stream_event(raw, skip=b"[DONE]")
        if data is None:
            return
        if "error" in data:
            self.failed = True
            return
        if isinstance(data.get("model"), str) and data["model"]:
            self.model = data["model"]
        if isinstance(data.get("system_fingerprint"), str):
            self.fingerprint = data["system_fingerprint"]
        if isinstance(data.get("service_tier"), str):
            self.service_tier = data["service_tier"]
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                self.failed = True  # n > 1: not cached
                return
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self._content.append(delta["content"])
            if isinstance(delta.get("refusal"), str):
                self._refusal.append(delta["refusal"])
            if isinstance(delta.get("reasoning_content"), str):
                self._reasoning.append(delta["reasoning_content"])
            if isinstance(delta.get("annotations"), list):
                self._annotations.extend(delta["annotations"])
            for call in delta.get("tool_calls") or ():
                self._add_tool_delta(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])

    def _add_tool_delta(self, call: Any) -> None:
        if not isinstance(call, dict):
            return
        slot = self._tools.setdefault(
            int(call.get("index", 0)),
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        if isinstance(function.get("name"), str):
            slot["function"]["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            slot["function"]["arguments"] += function["arguments"]

    def answer(self) -> CachedAnswer | None:
        """The assembled answer, or ``None`` when the stream is not one to cache."""
        if self.failed or self.finish_reason is None:
            return None
        tools = [self._tools[i] for i in sorted(self._tools)] or None
        return CachedAnswer(
            model=self.model,
            content="".join(self._content) if self._content or not tools else None,
            finish_reason=self.finish_reason,
            tool_calls=tools,
            refusal="".join(self._refusal) or None,
            usage=self.usage,
            system_fingerprint=self.fingerprint,
            service_tier=self.service_tier,
            annotations=self._annotations or None,
            reasoning_content="".join(self._reasoning) or None,
        )
