"""What the usage figures leave out: refusals and errors by kind, the slowest and the most expensive
requests (their ids, never their bodies), and the money the gateway's cache saved. The same figures
from a ClickHouse or chDB table (aggregated in the database) and from rows in Python (a JSONL log).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from heapq import nlargest
from typing import Any, Literal

from .clickhouse import ClickHouseSink
from .row import CLIENT_CLOSED_REQUEST, LogRow
from .usage_clickhouse import where_clause
from .usage_jsonl import selected
from .usage_row import UsageQuery, is_cache_hit

#: How an answer that was not a success is counted: ``budget`` (429, a budget or rate limit),
#: ``pii`` (422, PII the configuration blocks), ``upstream`` (5xx: the provider or the gateway
#: failed), ``disconnected`` (499, the client left), ``client`` (any other 4xx: a bad request).
ErrorKind = Literal["budget", "pii", "upstream", "disconnected", "client"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("budget", "pii", "upstream", "disconnected", "client")


def error_kind(status: int) -> ErrorKind | None:
    """The kind of an answer's status, ``None`` for a success."""
    if status < 400:
        return None
    if status == 429:
        return "budget"
    if status == 422:
        return "pii"
    if status == CLIENT_CLOSED_REQUEST:
        return "disconnected"
    return "upstream" if status >= 500 else "client"


@dataclass
class Outcome:
    """Requests answered with one status and error code (``""``: none recorded)."""

    status: int
    error_code: str
    requests: int

    @property
    def kind(self) -> ErrorKind | None:
        return error_kind(self.status)


@dataclass
class RecentRequest:
    """One request, as the dashboard lists it: ids and figures only."""

    timestamp: datetime
    request_id: str
    tenant: str
    model: str
    status: int
    cache_status: str
    latency_ms: float
    cost: float
    total_tokens: int


@dataclass
class ModelSavings:
    """A model's cache hits, and what its answers from the provider cost per token."""

    model: str
    cache_hits: int
    #: Tokens of the answers the cache gave (the usage of the answer it had stored).
    hit_tokens: int
    #: Tokens and spend of priced answers that did not come from the cache.
    miss_tokens: int
    miss_cost: float

    @property
    def saved(self) -> float:
        """The hits' tokens at the price per token the model's other answers paid (an estimate: a
        model never answered at a price saves 0)."""
        return self.hit_tokens * self.miss_cost / self.miss_tokens if self.miss_tokens else 0.0


@dataclass
class UsageDetail:
    outcomes: list[Outcome]
    #: The slowest requests, slowest first, and the most expensive, dearest first.
    slowest: list[RecentRequest]
    dearest: list[RecentRequest]
    savings: list[ModelSavings]

    @property
    def saved(self) -> float:
        return sum(s.saved for s in self.savings)

    def errors(self) -> dict[ErrorKind, int]:
        """Requests per error kind, every kind present (0 when none)."""
        counts: dict[ErrorKind, int] = dict.fromkeys(ERROR_KINDS, 0)
        for outcome in self.outcomes:
            kind = outcome.kind
            if kind is not None:
                counts[kind] += outcome.requests
        return counts


_RECENT = (
    "timestamp, request_id, tenant, model, status, cache_status, latency_ms, ifNull(cost, 0), total_tokens"
)
_HIT = "startsWith(cache_status, 'hit')"
_SAVINGS = (
    f"SELECT model, countIf({_HIT}), sumIf(total_tokens, {_HIT}),"
    f" sumIf(total_tokens, NOT {_HIT} AND ifNull(cost, 0) > 0),"
    f" sumIf(ifNull(cost, 0), NOT {_HIT} AND ifNull(cost, 0) > 0)"
    " FROM {table}"
)


def detail_of_clickhouse(sink: ClickHouseSink, query: UsageQuery, recent: int = 10) -> UsageDetail:
    """The detail of ``query`` over the sink's table: four aggregate queries (the sink stays open)."""
    where, params = where_clause(query)
    failed = where + (" AND " if where else " WHERE ") + "status >= 400"
    outcomes = [
        Outcome(int(status), str(code), int(count))
        for status, code, count in sink.query(
            "SELECT status, error_code, count() FROM {table}" + failed + " GROUP BY status, error_code",
            params,
        )
    ]
    limit = {**params, "limit": recent}
    # ties go to the latest request (then the id): the same order as the rows' in Python
    order = " ORDER BY {order} DESC, timestamp DESC, request_id DESC LIMIT {limit:UInt32}"
    top = "SELECT " + _RECENT + " FROM {table}" + where + order
    slowest = [_recent(v) for v in sink.query(top.replace("{order}", "latency_ms"), limit)]
    dearest = [
        _recent(v)
        for v in sink.query(top.replace("{order}", "ifNull(cost, 0)"), limit)
        if v[7]  # unpriced and free requests are not "expensive"
    ]
    savings = [
        ModelSavings(str(model), int(hits), int(hit_tokens), int(miss_tokens), float(miss_cost))
        for model, hits, hit_tokens, miss_tokens, miss_cost in sink.query(
            _SAVINGS + where + " GROUP BY model", params
        )
        if hits
    ]
    return UsageDetail(outcomes, slowest, dearest, savings)


def _recent(values: tuple[Any, ...]) -> RecentRequest:
    stamp, request_id, tenant, model, status, cache_status, latency, cost, tokens = values
    if isinstance(stamp, datetime) and stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return RecentRequest(
        stamp, str(request_id), str(tenant), str(model), int(status), str(cache_status), float(latency),
        float(cost or 0.0), int(tokens),
    )  # fmt: skip


def _recent_of_row(row: LogRow) -> RecentRequest:
    return _recent(
        (
            datetime.fromtimestamp(int(row["timestamp"]) / 1000, UTC),
            *(row.get(name) or "" for name in ("request_id", "tenant", "model")),
            int(row.get("status") or 0),
            row.get("cache_status") or "",
            float(row.get("latency_ms") or 0.0),
            row.get("cost") or 0.0,
            int(row.get("total_tokens") or 0),
        )
    )


def detail_of_rows(rows: Iterable[LogRow], query: UsageQuery, recent: int = 10) -> UsageDetail:
    """The same detail over log rows, in one pass (a JSONL log has no database to aggregate in)."""
    outcomes: Counter[tuple[int, str]] = Counter()
    savings: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    kept: list[LogRow] = []
    for row in selected(rows, query):
        kept.append(row)
        status = int(row.get("status") or 0)
        if status >= 400:
            outcomes[(status, str(row.get("error_code") or ""))] += 1
        figures = savings[str(row.get("model") or "")]
        tokens = int(row.get("total_tokens") or 0)
        cost = float(row.get("cost") or 0.0)
        if is_cache_hit(str(row.get("cache_status") or "")):
            figures[0] += 1
            figures[1] += tokens
        elif cost > 0:
            figures[2] += tokens
            figures[3] += cost

    def by(name: str) -> Callable[[LogRow], tuple[float, int, str]]:
        return lambda r: (float(r.get(name) or 0.0), int(r["timestamp"]), str(r.get("request_id") or ""))

    slowest = nlargest(recent, kept, key=by("latency_ms"))
    dearest = nlargest(recent, (r for r in kept if r.get("cost")), key=by("cost"))
    return UsageDetail(
        [Outcome(status, code, count) for (status, code), count in outcomes.items()],
        [_recent_of_row(r) for r in slowest],
        [_recent_of_row(r) for r in dearest],
        [
            ModelSavings(model, int(f[0]), int(f[1]), int(f[2]), float(f[3]))
            for model, f in savings.items()
            if f[0]
        ],
    )
