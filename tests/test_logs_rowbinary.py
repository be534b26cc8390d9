"""The request log's RowBinary encoder: its straight-line code writes every row byte for byte as the
column-by-column writers do, and a value it does not take as it is (bytes, a datetime, a wrong type)
goes the slow way, written the same or refused by column name."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from asgi_aigw.kernel.context import RequestContext, Usage
from asgi_aigw.logs.clickhouse import _default
from asgi_aigw.logs.row import COLUMNS, LogRow, build_row
from asgi_aigw.logs.rowbinary import _KNOWN_MAX_CHARS, _KNOWN_VALUES, _compile, row_encoder, writer

from .support import LOG_ROW_EVERY_KIND

PLAN = [(name, kind, _default(kind)) for name, kind in COLUMNS]


def column_by_column(rows: list[LogRow]) -> bytes:
    """The rows written by each column's own writer, one value at a time."""
    out = bytearray()
    for row in rows:
        for name, kind, default in PLAN:
            writer(kind)(out, row.get(name, default))
    return bytes(out)


FULL: LogRow = {**LOG_ROW_EVERY_KIND, "ttfb_ms": None}


class Tenant(str):
    """A str of another class (an enum's value, say)."""


@pytest.mark.parametrize(
    "rows",
    [
        [FULL],
        [{}],  # every column its default
        [FULL, {"request_id": "b", "cache_score": None, "cost": None}, FULL],
        [{**FULL, "request_body": "y" * 20000}],  # a three-byte varint
        [{**FULL, "model": b"gpt-4o"}],  # bytes for a string: the slow way, written the same
        [{**FULL, "stream": "yes", "client_disconnected": 0}],  # booleans by truth
    ],
)
def test_the_compiled_rows_are_the_column_writers_rows(rows: list[LogRow]) -> None:
    assert row_encoder(PLAN)(rows) == column_by_column(rows)


def test_a_datetime_timestamp_goes_the_slow_way_and_is_written_as_ticks() -> None:
    when = datetime(2026, 12, 7, 1, 2, 3, 456000, tzinfo=UTC)
    as_ticks = {**FULL, "timestamp": int(when.timestamp() * 1000)}
    assert row_encoder(PLAN)([{**FULL, "timestamp": when}]) == row_encoder(PLAN)([as_ticks])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("prompt_tokens", -1, r"'prompt_tokens' cannot hold -1 \(UInt32\)"),
        ("status", "200", r"'status' cannot hold '200' \(UInt16\)"),
        ("model", None, r"'model' cannot hold None .*not Nullable"),
        ("tenant", "\ud800", r"'tenant' cannot hold"),  # a lone surrogate is not UTF-8
    ],
)
def test_a_value_no_writer_takes_is_refused_by_its_column(column: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        row_encoder(PLAN)([FULL, {**FULL, column: value}])


def built_row() -> LogRow:
    """A row as :func:`build_row` makes it, from a context every layer has filled in."""
    ctx = RequestContext(tenant_id="acme", user_id="ü", route="chat", model="gpt-4o-mini", stream=True)
    ctx.usage = Usage(12, 3, 15, cached_tokens=2)
    ctx.cache_status, ctx.cache_score = "hit-semantic", 0.93
    ctx.status, ctx.attempts, ctx.cost, ctx.token_estimate = 200, 1, 1e-6, 400
    ctx.pii_entities, ctx.budget_remaining = {"EMAIL_ADDRESS": 1}, {"tokens_per_minute": 99.0}
    ctx.first_byte_at = ctx.finished_at = ctx.started_perf + 0.01
    return build_row(ctx, method="POST", path="/v1/chat/completions", route="chat")


@pytest.mark.parametrize("row", [pytest.param(built_row(), id="built"), pytest.param({}, id="empty")])
def test_a_row_as_the_log_builds_it_takes_the_straight_line_code(row: LogRow) -> None:
    """No fallback for the rows the log makes (every column; str, int, float, bool, None, dicts): the
    compiled code writes them itself. A row lacking columns does not take it, and is written the slow
    way with their defaults."""
    compiled = _compile([(name, kind, default, writer(kind)) for name, kind, default in PLAN])
    out = bytearray()
    if not row:
        with pytest.raises(KeyError):
            compiled(out, row)
        assert row_encoder(PLAN)([row]) == column_by_column([row])
        return
    compiled(out, row)  # raises if it would need the slow way
    assert bytes(out) == column_by_column([row])


@pytest.mark.parametrize(
    "change",
    [
        {"pii_entities": MappingProxyType({"EMAIL_ADDRESS": 2})},  # a mapping, not a dict: the slow way
        {"budget_remaining": {"tokens": 1.5, "requests": 2.0}},
        {"pii_entities": {f"TYPE_{i}": i for i in range(200)}},  # a two-byte count
        {"pii_entities": {}, "budget_remaining": None},  # no entries: a zero count
        {"tenant": Tenant("acme")},  # equal to a kept value, of another class: the slow way
    ],
)
def test_maps_and_kept_values_are_written_as_the_column_writers_write_them(change: LogRow) -> None:
    encode = row_encoder(PLAN)
    rows = [FULL, {**FULL, **change}, FULL]
    assert encode(rows) == column_by_column(rows)
    assert encode(rows) == column_by_column(rows)  # again, every value now kept


def test_each_low_cardinality_value_is_encoded_once_and_the_kept_ones_are_bounded() -> None:
    """A tenant, model or route is encoded once and its bytes copied into later rows; a client making up
    model names cannot grow what is kept past its bound."""
    compiled = _compile([(name, kind, default, writer(kind)) for name, kind, default in PLAN])
    kept = compiled.__globals__["known"].__self__
    base = built_row()
    rows = [{**base, "model": f"model-{i}", "tenant": "acme"} for i in range(_KNOWN_VALUES + 10)]
    out = bytearray()
    for row in rows:
        compiled(out, row)
    assert bytes(out) == column_by_column(rows)
    assert "acme" in kept
    assert 0 < len(kept) <= _KNOWN_VALUES
    # a long value (a made-up model name as long as a body) is written, not kept
    long_name = "m" * (_KNOWN_MAX_CHARS + 1)
    kept.clear()
    out = bytearray()
    compiled(out, {**base, "model": long_name})
    assert bytes(out) == column_by_column([{**base, "model": long_name}])
    assert long_name not in kept
    assert base["tenant"] in kept
