"""Token counts for estimates and for answers cut short, from the offline runtime's tokenizers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import orjson

from ..runtime import tokens as runtime_tokens
from ..runtime.assets import AssetError

logger = logging.getLogger("asgi_aigw.budget")


class TokenCounter(Protocol):
    """Counts prompts and text. A counter may also have ``count_messages(request, model)`` for Anthropic
    Messages requests and ``count_responses(request, model)`` for OpenAI Responses requests; one without
    them (written before those dialects) is stood in for by the :class:`ApproximateCounter` on those
    requests."""

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int: ...

    def count_text(self, text: str, model: str | None) -> int: ...


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


class ApproximateCounter:
    """About four characters per token, plus OpenAI's per-message overhead: the fallback when no
    tokenizer is installed (it errs on the high side for English, as an estimate should)."""

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        total = 3
        for message in request.get("messages") or ():
            total += 4
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                total += self.count_text(content, model)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                        total += self.count_text(part["text"], model)
        return total

    def count_messages(self, request: Mapping[str, Any], model: str | None) -> int:
        """A Messages request: its system prompt, messages and tools as JSON text (an over-estimate)."""
        return self._fields(request, ("system", "messages", "tools"), model)

    def count_responses(self, request: Mapping[str, Any], model: str | None) -> int:
        """A Responses request: its instructions, input and tools as JSON text (an over-estimate)."""
        return self._fields(request, ("instructions", "input", "tools"), model)

    def count_text(self, text: str, model: str | None) -> int:
        return (len(text) + 3) // 4

    def _fields(self, request: Mapping[str, Any], fields: tuple[str, ...], model: str | None) -> int:
        total = 3
        for field in fields:
            value = request.get(field)
            if value:
                total += self.count_text(value if isinstance(value, str) else _json(value), model)
        return total


class RuntimeTokenCounter:
    """:mod:`asgi_aigw.runtime.tokens`: tiktoken encodings loaded offline, once per process; exact for
    OpenAI models, a documented over-estimate for the others. When no tokenizer can be loaded (the
    ``tokens`` extra is missing, or its encoding files are), it warns once and falls back to the
    :class:`ApproximateCounter` rather than failing every request."""

    def __init__(self) -> None:
        self._fallback: ApproximateCounter | None = None

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        return self._count("count_chat", runtime_tokens.count_chat_tokens, request, model)

    def count_messages(self, request: Mapping[str, Any], model: str | None) -> int:
        return self._count("count_messages", runtime_tokens.count_messages_tokens, request, model)

    def count_responses(self, request: Mapping[str, Any], model: str | None) -> int:
        return self._count("count_responses", runtime_tokens.count_responses_tokens, request, model)

    def count_text(self, text: str, model: str | None) -> int:
        return self._count("count_text", runtime_tokens.count_text_tokens, text, model)

    def _count(self, method: str, exact: Callable[..., int], *args: Any) -> int:
        """``exact`` (the runtime's tokenizer); once it cannot load, the approximate counter's ``method``."""
        if self._fallback is None:
            try:
                return exact(*args)
            except (ImportError, AssetError) as exc:
                self._fall_back(exc)
        assert self._fallback is not None
        count: Callable[..., int] = getattr(self._fallback, method)
        return count(*args)

    def _fall_back(self, exc: BaseException) -> None:
        logger.warning("No tokenizer available (%s): token estimates fall back to 4 characters a token", exc)
        self._fallback = ApproximateCounter()


#: Texts of more bytes than this are counted in a worker thread (one at a time): tiktoken takes about
#: 2 ms for 64 KB and 28 ms for 1 MB, which would hold every other request of the loop meanwhile; it lets
#: go of the GIL while it counts. Smaller ones are counted inline, where the hop would cost more.
COUNT_INLINE_BYTES = 64 * 1024


class WarmCounter:
    """Runs the first count in a worker thread: loading an encoding takes up to a second, which must
    not block the event loop. Requests arriving meanwhile wait for that one load instead of each
    taking a thread (dozens of threads fighting for the GIL starve the event loop); later counts take
    microseconds and run inline, but for a text of more than :data:`COUNT_INLINE_BYTES` (``size``: the
    bytes of the body counted, or the characters of a text), which goes to a worker thread, one at a time."""

    __slots__ = ("_approximate", "_counter", "_limiters", "_lock", "_warm")

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter
        self._approximate = ApproximateCounter()
        self._warm = False
        self._lock: asyncio.Lock | None = None
        self._limiters: dict[int, anyio.CapacityLimiter] = {}

    async def _first(self, function: Callable[..., int], *args: Any) -> int:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._warm:
                return function(*args)
            try:
                return await anyio.to_thread.run_sync(function, *args)
            finally:
                self._warm = True

    async def _run(self, size: int, function: Callable[..., int], *args: Any) -> int:
        if not self._warm:
            return await self._first(function, *args)
        if size <= COUNT_INLINE_BYTES:
            return function(*args)
        loop = id(asyncio.get_running_loop())
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(function, *args, limiter=limiter)

    async def count_chat(self, request: Mapping[str, Any], model: str | None, *, size: int = 0) -> int:
        return await self._run(size, self._counter.count_chat, request, model)

    async def count_messages(self, request: Mapping[str, Any], model: str | None, *, size: int = 0) -> int:
        return await self._count_dialect("count_messages", request, model, size)

    async def count_responses(self, request: Mapping[str, Any], model: str | None, *, size: int = 0) -> int:
        return await self._count_dialect("count_responses", request, model, size)

    async def _count_dialect(
        self, method: str, request: Mapping[str, Any], model: str | None, size: int
    ) -> int:
        """The counter's ``method``, else the approximate one (a counter written before the dialect)."""
        count: Callable[[Mapping[str, Any], str | None], int] | None = getattr(self._counter, method, None)
        if count is None:
            count = getattr(self._approximate, method)
        return await self._run(size, count, request, model)

    async def count_text(self, text: str, model: str | None) -> int:
        if not text:
            return 0
        return await self._run(len(text), self._counter.count_text, text, model)


def cache_lifetime(request: Mapping[str, Any]) -> str | None:
    """The longest lifetime a Messages request's prompt-cache breakpoints ask for: ``"1h"`` when any
    says ``"ttl": "1h"``, ``"5m"`` (the default) when there are others, ``None`` when there are none."""
    blocks: list[Any] = []
    for field in ("tools", "system"):
        value = request.get(field)
        if isinstance(value, list):
            blocks.extend(value)
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            blocks.extend(content)
    found: str | None = None
    for block in blocks:
        if isinstance(block, Mapping) and "cache_control" in block:
            control = block["cache_control"]
            if isinstance(control, Mapping) and control.get("ttl") == "1h":
                return "1h"
            found = "5m"
    return found
