"""``x-ratelimit-*`` headers (OpenAI's names for the per-minute windows) and ``Retry-After``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from ..kernel.types import Headers
from .windows import WINDOWS, Slot, Window, format_amount, format_duration


@lru_cache(maxsize=64)
def _names(header: str) -> tuple[bytes, bytes, bytes]:
    """The limit, remaining and reset header names of a window's header suffix."""
    return (
        f"x-ratelimit-limit-{header}".encode(),
        f"x-ratelimit-remaining-{header}".encode(),
        f"x-ratelimit-reset-{header}".encode(),
    )


#: Every name, also of the per-user and per-key windows (``x-ratelimit-remaining-user-tokens``).
HEADER_NAMES: frozenset[bytes] = frozenset(
    name
    for w in WINDOWS
    for header in (w.header, f"user-{w.header}", f"key-{w.header}")
    for name in _names(header)
)


def ratelimit_headers(
    slots: Sequence[Slot], used: Sequence[int], limits: Sequence[int], now: float
) -> Headers:
    """Limit, remaining and time to reset of every window that has a limit."""
    out: Headers = []
    for slot, value, limit in zip(slots, used, limits, strict=True):
        if limit < 0:
            continue
        window = slot.window
        limit_name, remaining_name, reset_name = _names(window.header)
        out.append((limit_name, _amount(window, limit)))
        remaining = limit - value
        if remaining <= 0:
            out.append((remaining_name, b"0"))
        elif window.metric == "cost":
            out.append((remaining_name, format_amount(window, remaining).encode()))
        else:
            out.append((remaining_name, b"%d" % remaining))
        left = slot.end - now
        # whole seconds (every reset but a window's last second) are formatted once each
        out.append(
            (reset_name, _whole_seconds(math.ceil(left)) if left >= 1 else format_duration(left).encode())
        )
    return out


@lru_cache(maxsize=1024)
def _amount(window: Window, value: int) -> bytes:
    """A limit as its header shows it (limits change seldom: formatted once each)."""
    return format_amount(window, value).encode()


@lru_cache(maxsize=4096)
def _whole_seconds(seconds: int) -> bytes:
    return format_duration(seconds).encode()


def retry_after(seconds: float) -> bytes:
    """``Retry-After`` in whole seconds (at least 1)."""
    return str(max(1, math.ceil(seconds))).encode()
