"""Usage from a ClickHouse or chDB request log table: one aggregate query, grouped in the database."""

from __future__ import annotations

from typing import Any

from .clickhouse import ClickHouseSink
from .usage_row import UsageQuery, UsageRow, usage_row

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
    quantileExactInclusive(0.5)(latency_ms), quantileExactInclusive(0.95)(latency_ms)
"""


def usage_of_clickhouse(sink: ClickHouseSink, query: UsageQuery) -> list[UsageRow]:
    """The usage rows of ``query`` over the sink's table (the sink stays open)."""
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
    keys = [_KEYS[key] for key in query.group_by]
    sql = "SELECT " + "".join(f"{k}, " for k in keys) + _FIGURES + " FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    rows: list[UsageRow] = []
    for values in sink.query(sql, params):
        figures = values[len(keys) :]
        if not figures[0]:  # no GROUP BY over no rows still answers one row of zeros
            continue
        rows.append(usage_row(dict(zip(query.group_by, values, strict=False)), figures))
    return rows
