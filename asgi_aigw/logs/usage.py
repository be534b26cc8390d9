"""Usage per tenant (and user, and dialect) and model from the request log table: spend, tokens,
requests, cache hits, latency."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .clickhouse import ClickHouseSink

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

_SELECT = """
SELECT {keys}
    count() AS requests,
    sum(prompt_tokens), sum(completion_tokens), sum(total_tokens),
    sum(ifNull(cost, 0)),
    countIf(startsWith(cache_status, 'hit')),
    countIf(cache_status != '' AND cache_status != 'bypass'),
    quantile(0.5)(latency_ms), quantile(0.95)(latency_ms)
FROM {table}
WHERE timestamp >= fromUnixTimestamp64Milli({since:Int64}) {tenant_filter}
{group}
"""


def parse_since(text: str | None) -> timedelta | None:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w``; ``None``/``all``: no limit."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (s, m, h, d, w), as in 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass
class UsageRow:
    tenant: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float
    cache_hits: int
    cache_lookups: int
    p50_ms: float
    p95_ms: float
    #: Who asked, when the report is by user (``""``: requests that named no user).
    user: str | None = None
    #: The wire format spoken (``chat``, ``messages``, ``responses``), when the report is by dialect
    #: (``""``: other routes, such as embeddings).
    dialect: str | None = None

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits over requests that looked the cache up (None when no cache ran)."""
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None


def usage_report(
    sink: ClickHouseSink,
    *,
    since: timedelta | None = None,
    tenant: str | None = None,
    by_user: bool = False,
    by_dialect: bool = False,
) -> tuple[list[UsageRow], UsageRow | None]:
    """One row per (tenant, model), with the user (``by_user``) and the dialect (``by_dialect``) as
    further keys, most expensive first within a tenant, and the totals."""
    params: dict[str, Any] = {"since": 0}
    if since is not None:
        params["since"] = int((time.time() - since.total_seconds()) * 1000)
    tenant_filter = ""
    if tenant is not None:
        tenant_filter = "AND tenant = {tenant:String}"
        params["tenant"] = tenant
    names = ["tenant", *(["user_id"] if by_user else []), *(["dialect"] if by_dialect else []), "model"]
    keys = ", ".join(names)
    grouped = sink.query(
        _SELECT.replace("{keys}", keys + ",")
        .replace("{tenant_filter}", tenant_filter)
        .replace("{group}", f"GROUP BY {keys} ORDER BY tenant, sum(ifNull(cost, 0)) DESC, requests DESC"),
        params,
    )
    rows: list[UsageRow] = []
    for values in grouped:
        key = dict(zip(names, values, strict=False))
        rows.append(
            _usage_row(
                key["tenant"],
                key["model"],
                values[len(names) :],
                user=key.get("user_id"),
                dialect=key.get("dialect"),
            )
        )
    if not rows:
        return [], None
    totals = sink.query(
        _SELECT.replace("{keys}", "").replace("{tenant_filter}", tenant_filter).replace("{group}", ""), params
    )
    every = "all"
    user, dialect = (every if by_user else None), (every if by_dialect else None)
    return rows, _usage_row(every, every, totals[0], user=user, dialect=dialect)


def _usage_row(
    tenant: str, model: str, values: tuple[Any, ...], user: str | None = None, dialect: str | None = None
) -> UsageRow:
    requests, prompt, completion, total, cost, hits, lookups, p50, p95 = values
    return UsageRow(
        tenant=tenant,
        model=model,
        requests=int(requests),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        total_tokens=int(total),
        cost=float(cost),
        cache_hits=int(hits),
        cache_lookups=int(lookups),
        p50_ms=_number(p50),
        p95_ms=_number(p95),
        user=user,
        dialect=dialect,
    )


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if number != number else number  # NaN when there were no rows


_HEADERS = (
    "TENANT",
    "MODEL",
    "REQUESTS",
    "PROMPT TOK",
    "COMPL TOK",
    "TOTAL TOK",
    "SPEND",
    "CACHE HIT",
    "P50 MS",
    "P95 MS",
)


def format_table(rows: list[UsageRow], totals: UsageRow | None) -> str:
    """A fixed-width table, totals last; USER and DIALECT columns when the rows are by user, by dialect."""
    by_user = any(row.user is not None for row in rows)
    by_dialect = any(row.dialect is not None for row in rows)
    keys = ("USER",) * by_user + ("DIALECT",) * by_dialect
    headers = (_HEADERS[0], *keys, *_HEADERS[1:])
    lines = [_cells(row, by_user, by_dialect) for row in rows]
    if totals is not None and len(rows) > 1:
        lines.append(_cells(totals, by_user, by_dialect))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    left = set(range(2 + len(keys)))

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [render(headers), "  ".join("-" * w for w in widths)]
    out.extend(render(line) for line in lines[: len(rows)])
    if len(lines) > len(rows):
        out.append("  ".join("-" * w for w in widths))
        out.append(render(lines[-1]))
    return "\n".join(line.rstrip() for line in out)


def _cells(row: UsageRow, by_user: bool = False, by_dialect: bool = False) -> tuple[str, ...]:
    ratio = row.cache_hit_ratio
    who = (
        (row.tenant or "-",) + ((row.user or "-",) if by_user else ()) + ((row.dialect or "-",) * by_dialect)
    )
    return (
        *who,
        row.model or "-",
        f"{row.requests:,}",
        f"{row.prompt_tokens:,}",
        f"{row.completion_tokens:,}",
        f"{row.total_tokens:,}",
        f"{row.cost:,.4f}",
        "-" if ratio is None else f"{ratio:.1%}",
        f"{row.p50_ms:,.1f}",
        f"{row.p95_ms:,.1f}",
    )
