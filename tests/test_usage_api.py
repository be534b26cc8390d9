"""Usage from code (``read_usage``/``aread_usage``) and ``aigw usage``: the same rows written to chDB (through
clickhouse-connect), a JSONL file and memory give the same report, per tenant, user, dialect, model and day."""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from asgi_aigw import LogConfig, UsageRow, aread_usage, read_usage
from asgi_aigw.cli import main
from asgi_aigw.logs import ClickHouseSink, JSONLSink, LogRow, MemorySink
from asgi_aigw.logs.row import COLUMNS
from asgi_aigw.logs.usage_table import format_money

DAY1 = datetime(2026, 3, 1, 23, 59, 59, 500000, tzinfo=UTC)  # half a second before midnight UTC
DAY2 = datetime(2026, 3, 2, 0, 0, 0, 250000, tzinfo=UTC)


def _empty(kind: str) -> Any:
    if kind.startswith("Nullable"):
        return None
    if kind.startswith("Map"):
        return {}
    if kind == "Bool":
        return False
    return "" if "String" in kind else 0


def log_row(when: datetime, **values: Any) -> LogRow:
    row: LogRow = {name: _empty(kind) for name, kind in COLUMNS}
    row.update(timestamp=int(when.timestamp() * 1000), request_id=uuid.uuid4().hex, status=200)
    row.update(values)
    return row


def traffic() -> list[LogRow]:
    """Two tenants over two UTC days: cheap and unpriced requests, prompt-cache reads and writes, cache
    hits, misses and bypasses, users and dialects, latencies with distinct percentiles."""
    rows = []
    for i, latency in enumerate([10.0, 20.0, 30.0, 40.0, 500.0]):
        rows.append(
            log_row(
                DAY1 - timedelta(minutes=i),
                tenant="acme",
                user_id="ann" if i % 2 else "bob",
                # two API keys, and one request no key identified
                key_id=["3f9a0c1b2d4e", "3f9a0c1b2d4e", "77aa00bb11cc", "77aa00bb11cc", ""][i],
                dialect="chat",
                model="mini",
                prompt_tokens=100 + i,
                completion_tokens=7,
                total_tokens=107 + i,
                cached_tokens=64,
                cost=0.0000042 * (i + 1),
                cache_status=["hit-exact", "miss", "hit-semantic", "miss", ""][i],
                latency_ms=latency,
            )
        )
    rows.append(
        log_row(
            DAY2,
            tenant="acme",
            dialect="messages",
            model="claude",
            prompt_tokens=2000,
            completion_tokens=50,
            total_tokens=2050,
            cached_tokens=1000,
            cache_write_tokens=900,
            reasoning_tokens=20,
            key_id="3f9a0c1b2d4e",
            cost=0.0125,
            cache_status="miss",
            latency_ms=812.5,
        )
    )
    rows.append(
        log_row(DAY2 + timedelta(hours=1), tenant="zeta", model="mini", cache_status="bypass", latency_ms=3.0)
    )
    return rows


@pytest.fixture
def table() -> str:
    return f"usage_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def chdb_sink(chdb_url: str, table: str) -> Iterator[ClickHouseSink]:
    pytest.importorskip("chdb")
    sink = ClickHouseSink(chdb_url, table=table)
    sink.write(traffic(), "batch-1")
    yield sink
    sink.close()


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    sink = JSONLSink(tmp_path / "requests.jsonl")
    sink.write(traffic(), "batch-1")
    return sink.path


def comparable(rows: list[UsageRow]) -> list[dict[str, Any]]:
    """Rows as dicts, spend rounded: ClickHouse and Python add floats in different orders."""
    return [{**asdict(row), "cost": round(row.cost, 12)} for row in rows]


GROUPINGS: list[tuple[Any, ...]] = [
    ("tenant", "model"),
    ("tenant", "model", "day"),
    ("day",),
    ("tenant", "user", "dialect", "model"),
    ("tenant", "key", "model"),
    ("key",),
    (),
]


@pytest.mark.parametrize("group_by", GROUPINGS)
def test_chdb_and_jsonl_and_memory_give_the_same_report(
    chdb_sink: ClickHouseSink, jsonl: Path, group_by: tuple[Any, ...]
) -> None:
    memory = MemorySink()
    memory.write(traffic(), "batch-1")
    from_chdb = read_usage(chdb_sink, group_by=group_by)
    assert from_chdb, "the chDB table answered no rows"
    assert comparable(read_usage(jsonl, group_by=group_by)) == comparable(from_chdb)
    assert comparable(read_usage(memory, group_by=group_by)) == comparable(from_chdb)


def test_the_figures_per_tenant_model_and_day(jsonl: Path) -> None:
    rows = read_usage(jsonl, group_by=("tenant", "model", "day"))
    assert [(r.day, r.tenant, r.model, r.requests) for r in rows] == [
        (date(2026, 3, 1), "acme", "mini", 5),
        (date(2026, 3, 2), "acme", "claude", 1),  # most spend first within a day and tenant
        (date(2026, 3, 2), "zeta", "mini", 1),
    ]
    mini = rows[0]
    assert (mini.user, mini.dialect) == (None, None)  # not grouped by them
    assert (mini.prompt_tokens, mini.completion_tokens, mini.total_tokens) == (510, 35, 545)
    assert (mini.cached_tokens, mini.cache_write_tokens) == (320, 0)
    assert mini.cost == pytest.approx(0.0000042 * 15)
    # hits: hit-exact, hit-semantic; lookups: every status but "" (no cache ran) and bypass
    assert (mini.cache_hits, mini.cache_lookups, mini.cache_hit_ratio) == (2, 4, 0.5)
    # 10, 20, 30, 40, 500 ms: the median, and the 95th percentile between 40 and 500 (0.8 of the way)
    assert (mini.p50_ms, mini.p95_ms) == (30.0, pytest.approx(408.0))
    claude = rows[1]
    assert (claude.cached_tokens, claude.cache_write_tokens, claude.cost) == (1000, 900, 0.0125)
    assert (claude.reasoning_tokens, mini.reasoning_tokens) == (20, 0)
    zeta = rows[2]
    assert (zeta.cost, zeta.cache_lookups, zeta.cache_hit_ratio) == (0.0, 0, None)


def test_spend_per_api_key(jsonl: Path) -> None:
    rows = read_usage(jsonl, group_by=("key",))
    assert [(r.key, r.requests, round(r.cost, 10)) for r in rows] == [
        ("3f9a0c1b2d4e", 3, round(0.0125 + 0.0000042 * 3, 10)),  # most spend first
        ("77aa00bb11cc", 2, round(0.0000042 * 7, 10)),
        ("", 2, round(0.0000042 * 5, 10)),  # requests no key identified
    ]
    assert rows[0].tenant is None  # not grouped by it


def test_the_window_and_the_tenant_filter(chdb_sink: ClickHouseSink, jsonl: Path) -> None:
    for source in (chdb_sink, jsonl):
        # since is inclusive, until exclusive; a naive datetime is UTC
        [day2] = read_usage(source, since=DAY2, group_by=("day",))
        assert (day2.day, day2.requests) == (date(2026, 3, 2), 2)
        [day1] = read_usage(source, until=DAY2.replace(tzinfo=None), group_by=("day",))
        assert (day1.day, day1.requests) == (date(2026, 3, 1), 5)
        [zeta] = read_usage(source, tenant="zeta", group_by=())
        assert (zeta.tenant, zeta.requests, zeta.p50_ms) == (None, 1, 3.0)
        assert read_usage(source, since=timedelta(hours=1)) == []  # the traffic is older than that
        assert read_usage(source, tenant="nobody", group_by=()) == []


def test_sources_by_configuration_url_and_path(
    chdb_sink: ClickHouseSink, chdb_url: str, table: str, jsonl: Path
) -> None:
    expected = comparable(read_usage(chdb_sink))
    chdb_sink.close()  # the URL opens its own client
    assert comparable(read_usage(LogConfig(store=chdb_url, table=table))) == expected
    assert comparable(read_usage(f"{chdb_url}?table={table}")) == expected
    assert comparable(read_usage(LogConfig(store=f"jsonl://{jsonl}"))) == expected
    assert comparable(read_usage(str(jsonl))) == expected


def test_bad_arguments_are_clear_errors(jsonl: Path) -> None:
    with pytest.raises(ValueError, match="cannot group usage by 'week'"):
        read_usage(jsonl, group_by=("tenant", "week"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of keys"):
        read_usage(jsonl, group_by="tenant")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="records metrics only"):
        read_usage(LogConfig(store=None))
    with pytest.raises(FileNotFoundError):
        read_usage(jsonl.parent / "missing.jsonl")
    jsonl.write_text('{"timestamp": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"requests.jsonl:2 is not a JSON log row"):
        read_usage(jsonl)


async def test_aread_usage_leaves_the_event_loop_free(tmp_path: Path) -> None:
    """The log is a FIFO no one writes to for 0.3 s: reading it blocks, and the loop must keep ticking."""
    fifo = tmp_path / "requests.jsonl"
    os.mkfifo(fifo)
    lines = b"".join(json.dumps(row).encode() + b"\n" for row in traffic())

    def feed() -> None:
        with open(fifo, "wb") as file:
            file.write(lines)

    ticks = 0
    stop = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    timer = threading.Timer(0.3, feed)
    timer.start()
    beating = asyncio.create_task(heartbeat())
    try:
        rows = await asyncio.wait_for(aread_usage(fifo, group_by=()), timeout=10)
    finally:
        stop.set()
        await beating
        timer.join()
    assert rows[0].requests == 7
    assert ticks >= 10, f"the event loop ticked {ticks} times in 0.3 s: the read blocked it"


def test_small_amounts_print_readably() -> None:
    assert format_money(0.000042) == "0.000042"
    assert format_money(0.0012345) == "0.0012"
    assert format_money(0.0000000031) == "0.0000000031"
    assert format_money(4.2e-15) == "4.2e-15"
    assert format_money(2.0) == "2.0000"
    assert format_money(1234.5) == "1,234.5000"
    assert format_money(0.0) == "0.0000"


def test_aigw_usage_reads_a_jsonl_log_by_day(jsonl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--url", str(jsonl), "--by-day"]) == 0
    out = capsys.readouterr().out
    assert f"from jsonl://{jsonl}" in out
    lines = [line.split() for line in out.splitlines() if line.startswith(("2026", "all"))]
    # day tenant model requests prompt completion total cache-read cache-write reasoning spend
    # cache-hit p50 p95
    assert lines[0][:12] == [
        *("2026-03-01", "acme", "mini", "5", "510", "35", "545", "320", "0", "0", "0.000063", "50.0%")
    ]
    assert lines[1][:11] == [
        *("2026-03-02", "acme", "claude", "1", "2,000", "50", "2,050", "1,000", "900", "20", "0.0125")
    ]
    assert lines[2][:11] == ["2026-03-02", "zeta", "mini", "1", "0", "0", "0", "0", "0", "0", "0.0000"]
    assert lines[3][:10] == ["all", "all", "all", "7", "2,510", "85", "2,595", "1,320", "900", "20"]
    header = next(line for line in out.splitlines() if line.startswith("DAY"))
    assert "TOTAL TOK CACHE READ CACHE WRITE REASONING SPEND CACHE HIT" in " ".join(header.split())

    assert main(["usage", "--url", f"jsonl://{jsonl}", "--by-day", "--tenant", "zeta", "--json"]) == 0
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (record["day"], record["tenant"], record["model"], record["requests"]) == (
        "2026-03-02",
        "zeta",
        "mini",
        1,
    )
    assert "user" not in record  # not a key of this report


def test_aigw_usage_reads_the_jsonl_log_a_configuration_names(
    jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "aigw.yaml"
    config.write_text(f"log:\n  store: jsonl://{jsonl}\n")
    assert main(["usage", "--config", str(config), "--by-user"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:4] for line in out.splitlines() if line.startswith("acme")] == [
        ["acme", "-", "claude", "1"],  # the Messages request named no user
        ["acme", "bob", "mini", "3"],
        ["acme", "ann", "mini", "2"],
    ]
    assert main(["usage", "--url", str(tmp_path / "none.jsonl")]) == 1
    assert "no request log at" in capsys.readouterr().err


def test_aigw_usage_by_key(jsonl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--url", str(jsonl), "--by-key"]) == 0
    out = capsys.readouterr().out
    assert "TENANT  KEY" in out
    assert [line.split()[:4] for line in out.splitlines() if line.startswith(("acme", "zeta"))] == [
        ["acme", "3f9a0c1b2d4e", "claude", "1"],
        ["acme", "77aa00bb11cc", "mini", "2"],
        ["acme", "-", "mini", "1"],  # no key identified it
        ["acme", "3f9a0c1b2d4e", "mini", "2"],
        ["zeta", "-", "mini", "1"],
    ]
    assert main(["usage", "--url", str(jsonl), "--by-key", "--tenant", "acme", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["key"], r["model"], r["requests"]) for r in records][:2] == [
        ("3f9a0c1b2d4e", "claude", 1),
        ("77aa00bb11cc", "mini", 2),
    ]


def test_aigw_usage_on_chdb_by_day(
    chdb_sink: ClickHouseSink, chdb_url: str, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    chdb_sink.close()
    assert main(["usage", "--url", chdb_url, "--table", table, "--by-day", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["day"], r["tenant"], r["model"], r["requests"]) for r in records] == [
        ("2026-03-01", "acme", "mini", 5),
        ("2026-03-02", "acme", "claude", 1),
        ("2026-03-02", "zeta", "mini", 1),
    ]


SNIPPET = Path(__file__).resolve().parent.parent / "docs" / "snippets" / "usage_daily.py"


def test_the_documented_snippet_prints_the_daily_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/usage.md includes docs/snippets/usage_daily.py: run it as a script over a fresh JSONL log."""
    now = datetime.now(UTC)
    rows = [
        log_row(now - timedelta(days=9), tenant="acme", model="mini", cost=1.0),  # outside the 7 days
        log_row(now, tenant="acme", model="mini", total_tokens=30, cached_tokens=8, cost=0.000042),
        log_row(now, tenant="acme", model="mini", total_tokens=12, cost=0.000001, latency_ms=120.0),
    ]
    JSONLSink(tmp_path / "requests.jsonl").write(rows, "batch-1")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(SNIPPET), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == [
        f"{now.date()} acme mini: 2 requests, 42 tokens (8 from the prompt cache), spend 0.000043, p95 114 ms"
    ]


@pytest.mark.parametrize("since", ["99999999999d", "9" * 400 + "w"])
def test_aigw_usage_refuses_a_duration_no_date_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], since: str
) -> None:
    # a timedelta of that many days overflows: was an OverflowError traceback
    path = tmp_path / "requests.jsonl"
    path.touch()
    assert main(["usage", "--url", f"jsonl://{path}", "--since", since]) == 2
    assert "is too long a duration" in capsys.readouterr().err
