"""The fake's Anthropic prompt cache (docs.anthropic.com, "Prompt caching"), so answers to requests with
``cache_control`` breakpoints report cache writes and reads as the real API does.

Each breakpoint caches the prompt up to and including its block (tools, then system, then messages), for
its ``ttl`` (``5m`` by default, or ``1h``), once that prefix holds at least ``min_tokens``. A request
reads the longest cached prefix among its breakpoints and writes each later breakpoint's prefix: the
tokens up to a 1-hour breakpoint as 1-hour writes, those after it as 5-minute writes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ._fake_text import count_tokens

#: The shortest prompt prefix Anthropic caches (Sonnet and Opus 4.1 and older; some models need more).
MIN_CACHEABLE_TOKENS = 1024
_LIFETIMES = {"5m": 300.0, "1h": 3600.0}
#: Entries kept at most: a long-running demo must not grow without bound (lapsed ones go first).
_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CacheFigures:
    """Prompt tokens read from the cache and written to it, by lifetime."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def written(self) -> int:
        return self.write_5m + self.write_1h


@dataclass(frozen=True)
class _Breakpoint:
    key: bytes
    tokens: int  # prompt tokens up to and including the block
    ttl: str


class PromptCache:
    """Prefixes cached per model, with their expiry; safe to share between threads."""

    def __init__(
        self, min_tokens: int = MIN_CACHEABLE_TOKENS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_tokens = min_tokens
        self._clock = clock
        self._expiry: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()

    def use(self, body: dict[str, Any], prompt_tokens: int) -> CacheFigures:
        """Read and write the cache for a Messages request whose prompt is ``prompt_tokens`` long."""
        points = _breakpoints(body)
        if not points:
            return CacheFigures()
        now = self._clock()
        with self._lock:
            if len(self._expiry) >= _MAX_ENTRIES:
                self._expiry = {key: until for key, until in self._expiry.items() if until > now}
                if len(self._expiry) >= _MAX_ENTRIES:
                    self._expiry.clear()
            base = 0
            start = 0
            for i in range(len(points) - 1, -1, -1):
                if self._expiry.get(points[i].key, 0.0) > now:
                    base, start = points[i].tokens, i + 1
                    # a read refreshes the entry's lifetime
                    self._expiry[points[i].key] = now + _LIFETIMES[points[i].ttl]
                    break
            read, writes = base, {"5m": 0, "1h": 0}
            for point in points[start:]:
                if point.tokens < self.min_tokens or point.tokens <= base:
                    continue
                writes[point.ttl] += point.tokens - base
                base = point.tokens
                self._expiry[point.key] = now + _LIFETIMES[point.ttl]
        # the figures are parts of the prompt the answer reports: never more than it
        read = min(read, prompt_tokens)
        hour = min(writes["1h"], prompt_tokens - read)
        minutes = min(writes["5m"], prompt_tokens - read - hour)
        return CacheFigures(read, minutes, hour)


def ttl_problem(body: dict[str, Any]) -> str | None:
    """The real API's 400 message for a breakpoint's ``ttl``: ``5m`` or ``1h``, and never a ``1h`` after a
    ``5m`` (the lifetimes may only shorten along the prompt), else ``None``."""
    seen_short = False
    for at, block in _located_blocks(body):
        control = block.get("cache_control") if isinstance(block, dict) else None
        if not isinstance(control, dict):
            continue
        ttl = control.get("ttl", "5m")
        if ttl not in _LIFETIMES:
            return f"{at}.cache_control.ephemeral.ttl: Input should be '5m' or '1h'"
        if ttl == "1h" and seen_short:
            return (
                f"{at}.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' "
                "cache_control block. Note that blocks are processed in the following order: `tools`, "
                "`system`, `messages`."
            )
        seen_short = seen_short or ttl == "5m"
    return None


def _located_blocks(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The prompt's list blocks with their place in the body (``system.0``, ``messages.1.content.2``)."""
    out: list[tuple[str, Any]] = [(f"tools.{i}", tool) for i, tool in enumerate(body.get("tools") or [])]
    system = body.get("system")
    if isinstance(system, list):
        out.extend((f"system.{i}", block) for i, block in enumerate(system))
    for m, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            out.extend((f"messages.{m}.content.{i}", block) for i, block in enumerate(content))
    return out


def _breakpoints(body: dict[str, Any]) -> list[_Breakpoint]:
    """Each breakpoint's prefix key (the model and the blocks before it), token count and lifetime."""
    digest = hashlib.sha256(str(body.get("model")).encode())
    tokens = 0
    points: list[_Breakpoint] = []
    for role, block in _blocks(body):
        control = block.get("cache_control") if isinstance(block, dict) else None
        content = (
            {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
        )
        digest.update(role.encode() + b"\0" + orjson.dumps(content, option=orjson.OPT_SORT_KEYS) + b"\0")
        text = content.get("text") if isinstance(content, dict) else content
        tokens += count_tokens(text if isinstance(text, str) else orjson.dumps(content).decode())
        if isinstance(control, dict):
            ttl = "1h" if control.get("ttl") == "1h" else "5m"
            points.append(_Breakpoint(digest.copy().digest(), tokens, ttl))
    return points


def _blocks(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The prompt's blocks in cache order, each with where it sits (tools, system, a message's role)."""
    out: list[tuple[str, Any]] = [("tools", tool) for tool in body.get("tools") or []]
    system = body.get("system")
    out.extend(
        ("system", block) for block in (system if isinstance(system, list) else [system] if system else [])
    )
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role, content = str(message.get("role")), message.get("content")
        out.extend((role, block) for block in (content if isinstance(content, list) else [content]))
    return out
