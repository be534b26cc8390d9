"""Usage from a JSONL request log (or rows in memory): the rows are read and grouped here, with the same
figures as the ClickHouse query (sums, cache counts, linearly interpolated percentiles)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .row import LogRow
from .usage_row import UsageQuery, UsageRow, is_cache_hit, is_cache_lookup, usage_row

_TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)

#: The log column of a group key, where it is not named as the key.
_COLUMNS = {"user": "user_id", "key": "key_id"}


class _Group:
    __slots__ = ("costs", "hits", "latencies", "lookups", "requests", "tokens")

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = [0] * len(_TOKENS)
        self.costs: list[float] = []
        self.hits = 0
        self.lookups = 0
        self.latencies: list[float] = []

    def add(self, row: LogRow) -> None:
        self.requests += 1
        for i, name in enumerate(_TOKENS):
            self.tokens[i] += int(row.get(name) or 0)  # rows from older versions lack some columns
        self.costs.append(float(row.get("cost") or 0.0))
        status = str(row.get("cache_status") or "")
        self.hits += is_cache_hit(status)
        self.lookups += is_cache_lookup(status)
        self.latencies.append(float(row.get("latency_ms") or 0.0))

    def figures(self) -> list[Any]:
        latencies = sorted(self.latencies)
        return [
            self.requests,
            *self.tokens,
            math.fsum(self.costs),
            self.hits,
            self.lookups,
            quantile(latencies, 0.5),
            quantile(latencies, 0.95),
            quantile(latencies, 0.99),
        ]


def quantile(ordered: list[float], level: float) -> float:
    """The ``level`` quantile of sorted values, interpolating between the nearest two (ClickHouse's
    ``quantileExactInclusive``, R-7)."""
    if not ordered:
        return 0.0
    position = level * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _key(row: LogRow, query: UsageQuery) -> tuple[Any, ...]:
    values: list[Any] = []
    for key in query.group_by:
        if key == "day":
            values.append(datetime.fromtimestamp(int(row["timestamp"]) / 1000, UTC).date())
        else:
            values.append(str(row.get(_COLUMNS.get(key, key)) or ""))
    return tuple(values)


def selected(rows: Iterable[LogRow], query: UsageQuery) -> Iterator[LogRow]:
    """The rows in ``query``'s time range and of its tenant (every tenant's when it names none)."""
    for row in rows:
        stamp = int(row["timestamp"])
        if query.start_ms is not None and stamp < query.start_ms:
            continue
        if query.end_ms is not None and stamp >= query.end_ms:
            continue
        if query.tenant is not None and row.get("tenant", "") != query.tenant:
            continue
        yield row


def usage_of_rows(rows: Iterable[LogRow], query: UsageQuery) -> list[UsageRow]:
    """The usage rows of ``query`` over log rows (dicts as :func:`~asgi_aigw.logs.row.build_row` makes)."""
    groups: dict[tuple[Any, ...], _Group] = {}
    for row in selected(rows, query):
        key = _key(row, query)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        group.add(row)
    return [usage_row(dict(zip(query.group_by, key, strict=True)), g.figures()) for key, g in groups.items()]


def read_jsonl(path: Path) -> Iterator[LogRow]:
    """The rows of a JSONL log, line by line; a line that is not a JSON object is an error naming it."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number} is not a JSON log row: {exc}") from None
            if not isinstance(row, dict) or "timestamp" not in row:
                raise ValueError(f"{path}:{number} is not a request log row (no timestamp)")
            yield row


def usage_of_jsonl(path: Path, query: UsageQuery) -> list[UsageRow]:
    """The usage rows of ``query`` over a JSONL log file (missing: ``FileNotFoundError``)."""
    return usage_of_rows(read_jsonl(path), query)
