"""A usage report's row and query, shared by the backends that compute them (ClickHouse, JSONL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

GroupKey = Literal["tenant", "user", "key", "dialect", "model", "day"]
#: Every key a report can be grouped by.
GROUP_KEYS: tuple[GroupKey, ...] = ("tenant", "user", "key", "dialect", "model", "day")


@dataclass
class UsageRow:
    """The figures of one group of requests; a key the report is not grouped by is ``None``."""

    requests: int
    #: Prompt tokens, cache reads and writes included (OpenAI's convention).
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    #: Prompt tokens read from the provider's prompt cache, and written to it.
    cached_tokens: int
    cache_write_tokens: int
    #: Spend in the price table's currency (requests without a price count 0).
    cost: float
    #: Requests the gateway's cache answered, and requests that looked it up (not ``bypass``).
    cache_hits: int
    cache_lookups: int
    #: Latency percentiles in ms (linear interpolation between the nearest requests).
    p50_ms: float
    p95_ms: float
    #: Completion tokens spent thinking (included in ``completion_tokens``).
    reasoning_tokens: int = 0
    p99_ms: float = 0.0
    tenant: str | None = None
    #: Who asked (``""``: requests that named no user).
    user: str | None = None
    #: The gateway API key's id (``""``: requests no key identified).
    key: str | None = None
    #: ``chat``, ``messages`` or ``responses`` (``""``: other routes, such as embeddings).
    dialect: str | None = None
    model: str | None = None
    #: The UTC day the requests started.
    day: date | None = None

    @property
    def cache_hit_ratio(self) -> float | None:
        """Hits over requests that looked the cache up (None when no cache ran)."""
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None


@dataclass(frozen=True)
class UsageQuery:
    """What a backend computes: rows with ``start_ms <= timestamp < end_ms`` of one tenant (or all)."""

    start_ms: int | None
    end_ms: int | None
    tenant: str | None
    group_by: tuple[GroupKey, ...]
    #: Compute the latency percentiles (``False``: they are 0, and the query is cheaper).
    percentiles: bool = True


def usage_row(key: dict[str, Any], values: Sequence[Any]) -> UsageRow:
    """A row from its group key and its figures in :data:`FIGURES` order (both backends build with it)."""
    requests, prompt, completion, total, cached, written, reasoning, cost, hits, lookups, p50, p95, p99 = (
        values
    )
    return UsageRow(
        requests=int(requests),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        total_tokens=int(total),
        cached_tokens=int(cached),
        cache_write_tokens=int(written),
        reasoning_tokens=int(reasoning),
        cost=float(cost),
        cache_hits=int(hits),
        cache_lookups=int(lookups),
        p50_ms=_number(p50),
        p95_ms=_number(p95),
        p99_ms=_number(p99),
        **key,
    )


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if number != number else number  # NaN when there were no rows


def is_cache_hit(status: str) -> bool:
    return status.startswith("hit")


def is_cache_lookup(status: str) -> bool:
    return status not in ("", "bypass")
