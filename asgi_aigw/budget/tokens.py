"""Token counts for estimates and for answers cut short, from the offline runtime's tokenizers."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio

logger = logging.getLogger("asgi_aigw.budget")


class TokenCounter(Protocol):
    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int: ...

    def count_text(self, text: str, model: str | None) -> int: ...


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

    def count_text(self, text: str, model: str | None) -> int:
        return (len(text) + 3) // 4


class RuntimeTokenCounter:
    """:mod:`asgi_aigw.runtime.tokens` (tiktoken encodings loaded offline, once per process); the
    :class:`ApproximateCounter` when the runtime cannot be imported (logged once)."""

    def __init__(self) -> None:
        self._chat: Any = None
        self._text: Any = None

    def _load(self) -> None:
        try:
            tokens = importlib.import_module("asgi_aigw.runtime.tokens")
            self._chat, self._text = tokens.count_chat_tokens, tokens.count_text_tokens
        except ImportError as exc:
            logger.warning("No tokenizer available (%s): token estimates are approximate", exc)
            fallback = ApproximateCounter()
            self._chat, self._text = fallback.count_chat, fallback.count_text

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        if self._chat is None:
            self._load()
        return int(self._chat(request, model))

    def count_text(self, text: str, model: str | None) -> int:
        if self._text is None:
            self._load()
        return int(self._text(text, model))


class WarmCounter:
    """Runs the first count in a worker thread: loading an encoding takes up to a second, which must
    not block the event loop. Requests arriving meanwhile wait for that one load instead of each
    taking a thread (dozens of threads fighting for the GIL starve the event loop); later counts take
    microseconds and run inline."""

    __slots__ = ("_counter", "_lock", "_warm")

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter
        self._warm = False
        self._lock: asyncio.Lock | None = None

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

    async def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        if not self._warm:
            return await self._first(self._counter.count_chat, request, model)
        return self._counter.count_chat(request, model)

    async def count_text(self, text: str, model: str | None) -> int:
        if not text:
            return 0
        if not self._warm:
            return await self._first(self._counter.count_text, text, model)
        return self._counter.count_text(text, model)
