"""``aigw usage``'s table: fixed-width columns, the keys the report is grouped by, totals last.

Prompt tokens include the cache reads and writes (``CACHE READ``, ``CACHE WRITE``), completion tokens
include the ``REASONING`` ones.
"""

from __future__ import annotations

import math

from .usage_row import UsageRow

_FIGURES = (
    "REQUESTS",
    "PROMPT TOK",
    "COMPL TOK",
    "TOTAL TOK",
    "CACHE READ",
    "CACHE WRITE",
    "REASONING",
    "SPEND",
    "CACHE HIT",
    "P50 MS",
    "P95 MS",
)
_KEYS = (
    ("day", "DAY"),
    ("tenant", "TENANT"),
    ("user", "USER"),
    ("key", "KEY"),
    ("dialect", "DIALECT"),
    ("model", "MODEL"),
)


def format_money(amount: float) -> str:
    """Four decimals, or below 0.01 as many as two significant digits need (``0.000042``; scientific
    below 1e-12): a cheap model's spend per request must not print as ``0.0000``."""
    if amount == 0 or not math.isfinite(amount) or abs(amount) >= 0.01:
        return f"{amount:,.4f}"
    decimals = 1 - math.floor(math.log10(abs(amount)))
    if decimals > 12:
        return f"{amount:.1e}"
    return f"{amount:.{decimals}f}"


def format_table(rows: list[UsageRow], totals: UsageRow | None) -> str:
    """One line per row with a column per grouping key (a key of no row is left out), totals last."""
    keys = [(name, header) for name, header in _KEYS if any(getattr(r, name) is not None for r in rows)]
    headers = (*(header for _, header in keys), *_FIGURES)
    lines = [_cells(row, [name for name, _ in keys]) for row in rows]
    if totals is not None and len(rows) > 1:
        lines.append(_cells(totals, [name for name, _ in keys], fill="all"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < len(keys) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    out = [render(headers), rule, *(render(line) for line in lines[: len(rows)])]
    if len(lines) > len(rows):
        out += [rule, render(lines[-1])]
    return "\n".join(line.rstrip() for line in out)


def _cells(row: UsageRow, keys: list[str], fill: str | None = None) -> tuple[str, ...]:
    ratio = row.cache_hit_ratio
    who = tuple(fill or str(getattr(row, name) or "-") for name in keys)
    return (
        *who,
        f"{row.requests:,}",
        f"{row.prompt_tokens:,}",
        f"{row.completion_tokens:,}",
        f"{row.total_tokens:,}",
        f"{row.cached_tokens:,}",
        f"{row.cache_write_tokens:,}",
        f"{row.reasoning_tokens:,}",
        format_money(row.cost),
        "-" if ratio is None else f"{ratio:.1%}",
        f"{row.p50_ms:,.1f}",
        f"{row.p95_ms:,.1f}",
    )
