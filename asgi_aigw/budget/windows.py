"""The metered windows, aligned on UTC calendar boundaries, and their header names."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Metric = Literal["requests", "tokens", "cost"]
Period = Literal["minute", "hour", "day", "month"]

#: Money is counted in integer nano-dollars (1e-9 USD) so stores add integers, never floats.
NANOS_PER_DOLLAR = 1_000_000_000
#: The largest limit or usage a store holds exactly, in its units (tokens, requests, nano-dollars): the
#: Lua scripts add in doubles, exact up to 2**53 (about 9 million dollars in nano-dollars).
MAX_UNITS = 2**53


@dataclass(frozen=True, slots=True)
class Window:
    #: The limit's name (``tokens_per_minute``), as in :class:`~asgi_aigw.budget.config.Limits`.
    name: str
    metric: Metric
    period: Period
    #: Short code in store keys.
    code: str
    #: Suffix of ``x-ratelimit-{limit,remaining,reset}-<suffix>``.
    header: str
    #: How the limit reads in error messages.
    label: str


#: Every window, in the order limits are checked and reported. The per-minute ones use OpenAI's
#: header names (``-requests``, ``-tokens``); the others add their period (``-tokens-day``).
WINDOWS: tuple[Window, ...] = (
    Window("requests_per_minute", "requests", "minute", "rpm", "requests", "requests per minute (RPM)"),
    Window("tokens_per_minute", "tokens", "minute", "tpm", "tokens", "tokens per minute (TPM)"),
    Window("tokens_per_hour", "tokens", "hour", "tph", "tokens-hour", "tokens per hour"),
    Window("tokens_per_day", "tokens", "day", "tpd", "tokens-day", "tokens per day"),
    Window("tokens_per_month", "tokens", "month", "tpmo", "tokens-month", "tokens per month"),
    Window("cost_per_day", "cost", "day", "cpd", "cost-day", "spend per day (USD)"),
    Window("cost_per_month", "cost", "month", "cpmo", "cost-month", "spend per month (USD)"),
)
WINDOW_NAMES: tuple[str, ...] = tuple(w.name for w in WINDOWS)
BY_NAME: dict[str, Window] = {w.name: w for w in WINDOWS}


@dataclass(frozen=True, slots=True)
class Slot:
    """One window instance: the window and its bounds in epoch seconds."""

    window: Window
    start: int
    end: int
    #: ``<window code>:<start>``, the slot's part of a store key.
    suffix: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "suffix", f"{self.window.code}:{self.start}")


_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _month_bounds(now: float) -> tuple[int, int]:
    moment = datetime.fromtimestamp(now, UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


class SlotClock:
    """The current slots of every window, computed once per minute (the shortest window)."""

    __slots__ = ("_minute", "_slots")

    def __init__(self) -> None:
        self._minute = -1
        self._slots: tuple[Slot, ...] = ()

    def slots(self, now: float) -> tuple[Slot, ...]:
        second = int(now)
        minute = second - second % 60
        if minute != self._minute:
            self._slots = self._compute(second)
            self._minute = minute
        return self._slots

    @staticmethod
    def _compute(second: int) -> tuple[Slot, ...]:
        month_start, month_end = _month_bounds(second)
        out: list[Slot] = []
        for window in WINDOWS:
            if window.period == "month":
                start, end = month_start, month_end
            else:
                size = _SECONDS[window.period]
                start = second - second % size
                end = start + size
            out.append(Slot(window, start, end))
        return tuple(out)


def to_units(window: Window, value: float) -> int:
    """A configured limit in store units (nano-dollars for money); ``-1`` stays unlimited."""
    if not math.isfinite(value):
        raise ValueError(f"{window.name} must be a number, not {value}")
    if value < 0:
        return -1
    units = round(value * NANOS_PER_DOLLAR) if window.metric == "cost" else int(value)
    if units > MAX_UNITS:
        cost = window.metric == "cost"
        largest = f"{MAX_UNITS / NANOS_PER_DOLLAR:,.0f} dollars" if cost else f"{MAX_UNITS:,}"
        raise ValueError(f"{window.name} can be at most {largest} (or -1: no limit), not {value}")
    return units


def from_units(window: Window, value: int) -> float:
    if window.metric == "cost" and value >= 0:
        return value / NANOS_PER_DOLLAR
    return value


def format_amount(window: Window, value: int) -> str:
    """A store figure as a header or message shows it: integers, or dollars with up to 6 decimals."""
    if window.metric == "cost":
        return f"{value / NANOS_PER_DOLLAR:.6f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``, ``2h3m0s`` (Go durations)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
