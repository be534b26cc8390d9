"""Token counts for estimates and for answers cut short, from the offline runtime's tokenizers."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

import anyio


class TokenCounter(Protocol):
    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int: ...

    def count_text(self, text: str, model: str | None) -> int: ...


class RuntimeTokenCounter:
    """:mod:`asgi_aigw.runtime.tokens` (tiktoken encodings loaded offline, once per process)."""

    def __init__(self) -> None:
        self._tokens: Any = None

    def _module(self) -> Any:
        if self._tokens is None:
            self._tokens = importlib.import_module("asgi_aigw.runtime.tokens")
        return self._tokens

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        return int(self._module().count_chat_tokens(request, model))

    def count_text(self, text: str, model: str | None) -> int:
        return int(self._module().count_text_tokens(text, model))


class WarmCounter:
    """Runs the first count in a worker thread: loading an encoding takes up to a second, which must
    not block the event loop; later counts take microseconds and run inline."""

    __slots__ = ("_counter", "_warm")

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter
        self._warm = False

    async def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        if not self._warm:
            result = await anyio.to_thread.run_sync(self._counter.count_chat, request, model)
            self._warm = True
            return result
        return self._counter.count_chat(request, model)

    async def count_text(self, text: str, model: str | None) -> int:
        if not text:
            return 0
        if not self._warm:
            result = await anyio.to_thread.run_sync(self._counter.count_text, text, model)
            self._warm = True
            return result
        return self._counter.count_text(text, model)
