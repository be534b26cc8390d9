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


#: What the headers of a set of slots and limits hold but the figures that change per request: for each
#: window with a limit, its index, its limit header (name and value), its remaining and reset header
#: names, the window when its remaining figure is money, and its end. Limits change seldom and the slots
#: once a minute: worked out once each, not on every request.
_Plan = tuple[tuple[int, tuple[bytes, bytes], bytes, bytes, "Window | None", int], ...]
_plans: dict[tuple[int, str, int, tuple[int, ...]], _Plan] = {}


def _plan(slots: Sequence[Slot], limits: Sequence[int]) -> _Plan:
    # the slots are told apart as the stores tell them apart: first start, last suffix, count
    key = (slots[0].start, slots[-1].suffix, len(slots), tuple(limits))
    plan = _plans.get(key)
    if plan is None:
        if len(_plans) > 1024:
            _plans.clear()
        steps = []
        for index, (slot, limit) in enumerate(zip(slots, limits, strict=True)):
            if limit < 0:
                continue
            window = slot.window
            limit_name, remaining_name, reset_name = _names(window.header)
            money = window if window.metric == "cost" else None
            steps.append(
                (index, (limit_name, _amount(window, limit)), remaining_name, reset_name, money, slot.end)
            )
        plan = _plans[key] = tuple(steps)
    return plan


def ratelimit_headers(
    slots: Sequence[Slot], used: Sequence[int], limits: Sequence[int], now: float
) -> Headers:
    """Limit, remaining and time to reset of every window that has a limit."""
    out: Headers = []
    for index, limit_header, remaining_name, reset_name, money, end in _plan(slots, limits):
        out.append(limit_header)
        remaining = limits[index] - used[index]
        if remaining <= 0:
            out.append((remaining_name, b"0"))
        elif money is not None:
            out.append((remaining_name, format_amount(money, remaining).encode()))
        else:
            out.append((remaining_name, b"%d" % remaining))
        left = end - now
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
