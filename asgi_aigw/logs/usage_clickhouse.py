"""Usage from a ClickHouse or chDB request log table: one aggregate query, grouped in the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .clickhouse import ClickHouseSink
from .usage_row import GROUP_KEYS, GroupKey, UsageQuery, UsageRow, usage_row

#: SQL per group key (``day``: the UTC date, the column's time zone).
_KEYS = {
    "tenant": "tenant",
    "user": "user_id",
    "key": "key_id",
    "dialect": "dialect",
    "model": "model",
    "day": "toDate(timestamp)",
}
# quantileExactInclusive interpolates linearly between the nearest values, as the JSONL reader does,
# so both give the same percentiles (quantile() samples beyond 8192 values)
_FIGURES = """
    count(),
    sum(prompt_tokens), sum(completion_tokens), sum(total_tokens),
    sum(cached_tokens), sum(cache_write_tokens), sum(reasoning_tokens),
    sum(ifNull(cost, 0)),
    countIf(startsWith(cache_status, 'hit')),
    countIf(cache_status NOT IN ('', 'bypass')),
    {percentiles}
"""
# one sort for the three levels (three quantileExactInclusive calls sort three times)
_PERCENTILES = "quantilesExactInclusive(0.5, 0.95, 0.99)(latency_ms)"


def where_clause(query: UsageQuery) -> tuple[str, dict[str, Any]]:
    """`` WHERE ...`` (or ``""``) selecting the rows of ``query``, and its parameters."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if query.start_ms is not None:
        where.append("timestamp >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')")
        params["start"] = query.start_ms
    if query.end_ms is not None:
        where.append("timestamp < fromUnixTimestamp64Milli({end:Int64}, 'UTC')")
        params["end"] = query.end_ms
    if query.tenant is not None:
        where.append("tenant = {tenant:String}")
        params["tenant"] = query.tenant
    return (" WHERE " + " AND ".join(where) if where else ""), params


def usage_of_clickhouse(sink: ClickHouseSink, query: UsageQuery) -> list[UsageRow]:
    """The usage rows of ``query`` over the sink's table (the sink stays open)."""
    where, params = where_clause(query)
    keys = [_KEYS[key] for key in query.group_by]
    # a report that shows no percentiles (the dashboard's daily series) does not pay for them
    figures = _FIGURES.replace("{percentiles}", _PERCENTILES if query.percentiles else "[0, 0, 0]")
    sql = "SELECT " + "".join(f"{k}, " for k in keys) + figures + " FROM {table}" + where
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    rows: list[UsageRow] = []
    for values in sink.query(sql, params):
        *sums, levels = values[len(keys) :]
        if not sums[0]:  # no GROUP BY over no rows still answers one row of zeros
            continue
        rows.append(usage_row(dict(zip(query.group_by, values, strict=False)), [*sums, *levels]))
    return rows


def usage_sets_of_clickhouse(
    sink: ClickHouseSink, query: UsageQuery, sets: Sequence[Sequence[GroupKey]]
) -> list[list[UsageRow]]:
    """The rows of several groupings of ``query`` (its own ``group_by`` aside), in one scan of the table
    (``GROUPING SETS``): a list of rows per set, in the order given."""
    ordered = [tuple(key for key in GROUP_KEYS if key in keys) for keys in sets]
    keys = [key for key in GROUP_KEYS if any(key in one for one in ordered)]
    where, params = where_clause(query)
    figures = _FIGURES.replace("{percentiles}", _PERCENTILES if query.percentiles else "[0, 0, 0]")
    grouping = ", ".join("(" + ", ".join(_KEYS[key] for key in one) + ")" for one in ordered)
    sql = (
        "SELECT "
        + "".join(f"{_KEYS[key]}, " for key in keys)
        + figures
        + " FROM {table}"
        + where
        # the keys a set does not group by are NULL (not ''), which tells the sets apart
        + f" GROUP BY GROUPING SETS ({grouping}) SETTINGS group_by_use_nulls = 1"
    )
    found: dict[tuple[str, ...], list[UsageRow]] = {one: [] for one in ordered}
    for values in sink.query(sql, params):
        *sums, levels = values[len(keys) :]
        if not sums[0]:  # the empty set over no rows still answers one row of zeros
            continue
        present: dict[str, Any] = {k: v for k, v in zip(keys, values, strict=False) if v is not None}
        found[tuple(present)].append(usage_row(present, [*sums, *levels]))
    return [found[one] for one in ordered]
