"""Usage from the request log: spend, tokens, requests, cache hits and latency per tenant, user, API key,
dialect, model and day, read the same way from ClickHouse, chDB, a JSONL file or a :class:`MemorySink`.

```python
from datetime import timedelta
from asgi_aigw.logs import LogConfig, aread_usage

rows = await aread_usage(LogConfig(store="jsonl://requests.jsonl"), since=timedelta(days=7))
```

:func:`read_usage` is the blocking form; :func:`aread_usage` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

from .clickhouse import ClickHouseSink
from .config import DEFAULT_TABLE, LogConfig
from .sink_url import parse_sink_url
from .sinks import JSONLSink, MemorySink
from .usage_clickhouse import usage_of_clickhouse
from .usage_jsonl import usage_of_jsonl, usage_of_rows
from .usage_row import GROUP_KEYS, GroupKey, UsageQuery, UsageRow

__all__ = ["GROUP_KEYS", "GroupKey", "UsageRow", "aread_usage", "parse_since", "read_usage"]

#: A log to read: its configuration, its URL (``chdb://``, ``clickhouse://``, ``jsonl://``, or a JSONL
#: file path), or an open sink.
UsageSource: TypeAlias = "LogConfig | str | os.PathLike[str] | ClickHouseSink | JSONLSink | MemorySink"
#: A window bound: an instant (naive means UTC), or a duration back from now.
When: TypeAlias = "datetime | timedelta | None"

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str | None) -> timedelta | None:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w``; ``None``/``all``: no limit."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (s, m, h, d, w), as in 7d")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    except OverflowError:  # more days than a timedelta holds (or an infinite number)
        raise ValueError(f"{text!r} is too long a duration") from None


def read_usage(
    source: UsageSource,
    *,
    since: When = None,
    until: When = None,
    tenant: str | None = None,
    group_by: Sequence[GroupKey] = ("tenant", "model"),
    table: str | None = None,
) -> list[UsageRow]:
    """Usage per group of ``group_by`` keys (any of ``tenant``, ``user``, ``key``: the gateway API key's
    id, ``dialect``, ``model``, ``day``; ``()``: one row of totals), for requests started in
    ``[since, until)``, ordered by day, tenant, then spend and requests (most first). Blocks: on an
    event loop use :func:`aread_usage`.

    ``table`` overrides the table of a URL (a :class:`LogConfig` names its own). A ClickHouse or chDB
    sink passed in is left open; one opened from a URL is closed before returning.
    """
    query = _query(since, until, tenant, group_by)
    if isinstance(source, MemorySink):
        return _ordered(usage_of_rows(list(source.rows), query))
    if isinstance(source, JSONLSink):
        return _ordered(usage_of_jsonl(source.path, query))
    if isinstance(source, ClickHouseSink):
        return _ordered(usage_of_clickhouse(source, query))
    return _read_url(source, query, table)


async def aread_usage(
    source: UsageSource,
    *,
    since: When = None,
    until: When = None,
    tenant: str | None = None,
    group_by: Sequence[GroupKey] = ("tenant", "model"),
    table: str | None = None,
) -> list[UsageRow]:
    """:func:`read_usage` in a worker thread, so the event loop keeps serving while the log is read."""
    return await asyncio.to_thread(
        read_usage, source, since=since, until=until, tenant=tenant, group_by=group_by, table=table
    )


def _read_url(
    source: LogConfig | str | os.PathLike[str], query: UsageQuery, table: str | None
) -> list[UsageRow]:
    if isinstance(source, LogConfig):
        if source.store is None:
            raise ValueError("This log configuration has no store (log.store): it records metrics only.")
        url, table = source.store, table or source.table
    else:
        url = os.fspath(source)
        if "://" not in url:
            url = f"jsonl://{url}"
    parsed = parse_sink_url(url, table=table or DEFAULT_TABLE)
    if parsed.scheme == "jsonl":
        assert parsed.path is not None
        return _ordered(usage_of_jsonl(Path(parsed.path), query))
    if parsed.scheme == "memory":
        raise ValueError("memory:// is a new, empty log: pass the MemorySink itself to read its rows.")
    sink = ClickHouseSink(parsed)
    try:
        return _ordered(usage_of_clickhouse(sink, query))
    finally:
        sink.close()


def _query(since: When, until: When, tenant: str | None, group_by: Sequence[GroupKey]) -> UsageQuery:
    if isinstance(group_by, str):
        raise TypeError(f"group_by takes a sequence of keys, as in ({group_by!r},)")
    unknown = [key for key in group_by if key not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"cannot group usage by {unknown[0]!r}: choose among {', '.join(GROUP_KEYS)}")
    keys = tuple(key for key in GROUP_KEYS if key in group_by)  # one order, whatever the caller's
    now = time.time()
    return UsageQuery(_ms(since, now), _ms(until, now), tenant, keys)


def _ms(when: When, now: float) -> int | None:
    if when is None:
        return None
    if isinstance(when, timedelta):
        return int((now - when.total_seconds()) * 1000)
    if when.tzinfo is None:  # a naive instant is UTC, as the log's timestamps are
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _ordered(rows: list[UsageRow]) -> list[UsageRow]:
    """Day, tenant, most spend, most requests, then the other keys: one order for every backend."""
    return sorted(
        rows,
        key=lambda r: (
            r.day or date.min,
            r.tenant or "",
            -r.cost,
            -r.requests,
            r.user or "",
            r.key or "",
            r.dialect or "",
            r.model or "",
        ),
    )
