"""The dashboard's figures for one time range and tenant, as the JSON its page draws.

The request log does the aggregation: a ClickHouse or chDB table answers six ``GROUP BY``/``LIMIT``
queries (seven with a tenant filter); a JSONL log has no database, so its rows are read once and
grouped in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..logs.clickhouse import ClickHouseSink
from ..logs.row import LogRow
from ..logs.sinks import MemorySink
from ..logs.usage_clickhouse import usage_of_clickhouse, usage_sets_of_clickhouse, where_clause
from ..logs.usage_detail import RecentRequest, UsageDetail, detail_of_clickhouse, detail_of_rows
from ..logs.usage_jsonl import read_jsonl, selected, usage_of_rows
from ..logs.usage_row import GroupKey, UsageQuery, UsageRow

#: A log the dashboard reads: a ClickHouse/chDB table, a JSONL file, or rows in memory.
LogSource = ClickHouseSink | Path | MemorySink
#: The longest run of days a chart draws (an ``all`` range over years shows its last days).
MAX_DAYS = 400


@dataclass(frozen=True)
class Range:
    """Requests started in ``[start, end)`` (``None``: unbounded), of one tenant or all."""

    start: datetime | None
    end: datetime | None
    tenant: str | None

    def query(
        self, group_by: tuple[GroupKey, ...], *, tenant: bool = True, percentiles: bool = True
    ) -> UsageQuery:
        who = self.tenant if tenant else None
        return UsageQuery(_ms(self.start), _ms(self.end), who, group_by, percentiles)


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


class _Reader:
    """Runs usage and detail queries on one source (a JSONL log is read once per summary)."""

    def __init__(self, source: LogSource, span: Range) -> None:
        self.sink = source if isinstance(source, ClickHouseSink) else None
        self.rows: list[LogRow] = []
        if isinstance(source, MemorySink):
            self.rows = list(source.rows)
        elif isinstance(source, Path):
            everyone = span.query(())
            everyone = UsageQuery(everyone.start_ms, everyone.end_ms, None, ())
            try:
                self.rows = list(selected(read_jsonl(source), everyone))
            except FileNotFoundError:  # no request logged yet
                self.rows = []

    def usage(self, query: UsageQuery) -> list[UsageRow]:
        if self.sink is not None:
            return usage_of_clickhouse(self.sink, query)
        return usage_of_rows(self.rows, query)

    def usage_sets(self, query: UsageQuery, sets: list[tuple[GroupKey, ...]]) -> list[list[UsageRow]]:
        if self.sink is not None:
            return usage_sets_of_clickhouse(self.sink, query, sets)
        return [usage_of_rows(self.rows, replace(query, group_by=keys)) for keys in sets]

    def tenants(self, query: UsageQuery) -> list[str]:
        """Every tenant with a request in ``query``'s range."""
        if self.sink is not None:
            where, params = where_clause(query)
            rows = self.sink.query("SELECT DISTINCT tenant FROM {table}" + where, params)
            return [str(row[0]) for row in rows]
        return list({str(row.get("tenant") or "") for row in selected(self.rows, query)})

    def detail(self, query: UsageQuery, recent: int) -> UsageDetail:
        if self.sink is not None:
            return detail_of_clickhouse(self.sink, query, recent)
        return detail_of_rows(self.rows, query, recent)


def read_summary(source: LogSource, span: Range, *, recent: int = 10) -> dict[str, Any]:
    """Every figure the page shows, except budgets (they come from the budget store). Blocks."""
    reader = _Reader(source, span)
    # one scan for the totals and the per tenant and per model figures (with their percentiles)
    totals, tenants, models = reader.usage_sets(span.query(()), [(), ("tenant",), ("model",)])
    daily = reader.usage(span.query(("tenant", "model", "day"), percentiles=False))
    # the tenant list for the filter ignores the tenant filter (to switch to another one)
    names = [row.tenant or "" for row in tenants]
    if span.tenant is not None:
        names = reader.tenants(span.query((), tenant=False))
    detail = reader.detail(span.query(()), recent)
    total = totals[0] if totals else None
    days = _days(span, daily)
    return {
        "totals": _figures(total) | {"saved": detail.saved},
        "errors": detail.errors(),
        "outcomes": [
            {"status": o.status, "error_code": o.error_code, "requests": o.requests, "kind": o.kind}
            for o in sorted(detail.outcomes, key=lambda o: (-o.requests, o.status, o.error_code))
        ],
        "days": [day.isoformat() for day in days],
        "series": {"tenant": _series(daily, days, "tenant"), "model": _series(daily, days, "model")},
        "tenants": [
            {"tenant": row.tenant} | _figures(row)
            for row in sorted(tenants, key=lambda r: (-r.cost, -r.requests, r.tenant or ""))
        ],
        "tenant_names": sorted(names),
        "models": [
            {"model": row.model} | _figures(row)
            for row in sorted(models, key=lambda r: (-r.cost, -r.requests, r.model or ""))
        ],
        "savings": [
            {"model": s.model, "cache_hits": s.cache_hits, "hit_tokens": s.hit_tokens, "saved": s.saved}
            for s in sorted(detail.savings, key=lambda s: -s.saved)
        ],
        "slowest": [_request(r) for r in detail.slowest],
        "dearest": [_request(r) for r in detail.dearest],
    }


def _figures(row: UsageRow | None) -> dict[str, Any]:
    if row is None:
        row = UsageRow(0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, 0.0)
    return {
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cost": row.cost,
        "cache_hits": row.cache_hits,
        "cache_lookups": row.cache_lookups,
        "cache_hit_ratio": row.cache_hit_ratio,
        "p50_ms": row.p50_ms,
        "p95_ms": row.p95_ms,
        "p99_ms": row.p99_ms,
    }


def _days(span: Range, rows: list[UsageRow]) -> list[date]:
    """Every day of the range (with no gaps), from its start (else the first day logged) to its end
    (else the last day logged, or today)."""
    seen = [row.day for row in rows if row.day is not None]
    today = datetime.now(UTC).date()
    first = span.start.astimezone(UTC).date() if span.start else min(seen, default=today)
    if span.end is not None:
        last = (span.end - timedelta(milliseconds=1)).astimezone(UTC).date()
    else:
        last = max([*seen, today])
    first = max(first, last - timedelta(days=MAX_DAYS - 1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _series(rows: list[UsageRow], days: list[date], key: str) -> dict[str, dict[str, list[float]]]:
    """Per value of ``key`` (tenant or model): requests, tokens and spend per day of ``days``."""
    index = {day: i for i, day in enumerate(days)}
    out: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        i = index.get(row.day) if row.day is not None else None
        if i is None:
            continue
        name = str(getattr(row, key) or "")
        series = out.get(name)
        if series is None:
            zero = [0.0] * len(days)
            series = out[name] = {"requests": list(zero), "total_tokens": list(zero), "cost": list(zero)}
        series["requests"][i] += row.requests
        series["total_tokens"][i] += row.total_tokens
        series["cost"][i] += row.cost
    return out


def _request(r: RecentRequest) -> dict[str, Any]:
    return {
        "timestamp": r.timestamp.astimezone(UTC).isoformat(timespec="milliseconds"),
        "request_id": r.request_id,
        "tenant": r.tenant,
        "model": r.model,
        "status": r.status,
        "cache_status": r.cache_status,
        "latency_ms": r.latency_ms,
        "cost": r.cost,
        "total_tokens": r.total_tokens,
    }
