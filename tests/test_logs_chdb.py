"""The request log in chDB through clickhouse-connect: the real stack, failures, dedup, shutdown, usage.

chDB hosts one data directory per process, so every test here shares one (session-scoped) and uses
its own table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

pytest.importorskip("chdb")

from asgi_aigw.app import build_app
from asgi_aigw.cli import main
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.logs import ClickHouseSink, LogConfig, LogRow, LogWriter, RequestLogMiddleware
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from . import logs_helpers
from .logs_helpers import log_config
from .support import FAKE_URL, LOG_ROW_EVERY_KIND, fake_config, served

CHAT = "/ai/v1/chat/completions"


table = logs_helpers.table_named("requests")
reader = logs_helpers.reader


def gateway(fake: FakeProvider, config: LogConfig, *, inner: Any = None) -> RequestLogMiddleware:
    gateway_config = fake_config()
    gateway_config.log = config
    app = build_app(gateway_config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    assert isinstance(app, RequestLogMiddleware)
    return app


def hello(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


async def test_chdb_is_opened_at_startup_not_by_the_first_insert(
    fake: FakeProvider, chdb_url: str, table: str, tmp_path: Path
) -> None:
    # opening chDB starts its engine: done by the first insert, in a worker thread holding the GIL,
    # it stalled the requests being served
    app = gateway(fake, log_config(chdb_url, table, tmp_path))
    writer = app.writer
    assert writer is not None
    assert not writer._sink_open
    async with LifespanManager(app):
        assert writer._sink_open  # before any request, and closed when idle like after a write
        sink = writer.sink
        assert isinstance(sink, ClickHouseSink)
        assert sink._client is not None
        assert sink._schema_ready


async def test_n_requests_through_the_stack_make_n_rows_in_chdb(
    fake: FakeProvider, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    app = gateway(fake, log_config(chdb_url, table, tmp_path, batch_size=7))
    # the first request: upstream down for all three attempts (one try and two retries)
    fake.enqueue(FakeBehaviour(status=503), times=3)
    async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://t") as client:
        sent = []
        for i in range(20):
            stream = i % 4 == 1
            response = await client.post(
                CHAT, json=hello(f"question {i}", stream=stream), headers={"x-request-id": f"req-{i:03d}"}
            )
            sent.append((response.headers["x-request-id"], response.status_code, stream))
        bad = await client.post(CHAT, content=b"{oops", headers={"x-request-id": "req-bad"})
    assert bad.status_code == 400
    assert await app.aclose() is None
    rows = reader.query(
        "SELECT request_id, status, stream, model, provider, upstream_model, error_code, completion_tokens,"
        " total_tokens, latency_ms, ttfb_ms, timestamp, route FROM {table} ORDER BY request_id"
    )
    assert len(rows) == 21
    by_id = {row[0]: row for row in rows}
    statuses = [status for _, status, _ in sent]
    assert statuses.count(200) == 19
    assert statuses.count(503) == 1
    for request_id, status, stream in sent:
        _, logged_status, logged_stream, model, provider, upstream, error_code, completion, total, latency, ttfb, _, route = by_id[request_id]  # fmt: skip
        assert (logged_status, bool(logged_stream), model, route) == (status, stream, "gpt-4o-mini", "chat")
        if status == 200:
            assert (provider, upstream, error_code, completion) == ("openai", "gpt-4o-mini", "", 3)
            assert total > completion
            assert 0 < ttfb <= latency
        else:
            assert (provider, error_code, total) == ("", "upstream_unavailable", 0)
    assert by_id["req-bad"][1:2] == (400,)
    assert by_id["req-bad"][6] == "invalid_request"
    assert all(row[11].year >= 2024 for row in rows)


async def test_the_table_is_mergetree_by_tenant_and_time_with_monthly_partitions_and_ttl(
    chdb_url: str, table: str, reader: ClickHouseSink
) -> None:
    sink = ClickHouseSink(chdb_url, table=table, ttl_days=30)
    sink.write([{"request_id": "one", "timestamp": int(time.time() * 1000), "tenant": "t"}], "b1")
    sink.close()
    [(engine, partition, sorting, full)] = reader.query(
        "SELECT engine, partition_key, sorting_key, engine_full FROM system.tables"
        " WHERE database = 'default' AND name = {name:String}",
        {"name": table},
    )
    assert (engine, partition, sorting) == ("MergeTree", "toYYYYMM(timestamp)", "tenant, timestamp")
    assert "TTL toDateTime(timestamp) + toIntervalDay(30)" in full
    assert reader.query("SELECT request_id, tenant, status, pii_entities FROM {table}") == [
        ("one", "t", 0, {})
    ]


class FlakyClickHouse(ClickHouseSink):
    """chDB that fails its first inserts: before inserting (down), or after (the ack is lost)."""

    def __init__(self, *args: Any, failures: int, lost_ack: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures
        self.lost_ack = lost_ack
        self.stored: list[str] = []

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            if self.lost_ack:
                super().write(rows, batch_id)
            raise ConnectionError("ClickHouse is down")
        super().write(rows, batch_id)
        self.stored.extend(row["request_id"] for row in rows)


@pytest.mark.parametrize("lost_ack", [False, True], ids=["down", "lost-ack"])
async def test_a_sink_that_fails_for_a_while_still_gets_exactly_n_rows_in_order(
    fake: FakeProvider, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path, lost_ack: bool
) -> None:
    sink = FlakyClickHouse(chdb_url, table=table, failures=3, lost_ack=lost_ack)
    config = log_config(chdb_url, table, tmp_path, batch_size=5, flush_interval=0.01, retry_initial=0.01)
    app = gateway(fake, config)
    app.writer = LogWriter(
        sink, batch_size=5, flush_interval=0.01, spool_dir=tmp_path / "spool", retry_initial=0.01
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for i in range(40):
            await client.post(CHAT, json=hello(f"q{i}"), headers={"x-request-id": f"req-{i:03d}"})
    assert await app.writer.flush()
    expected = [f"req-{i:03d}" for i in range(40)]
    [(count, unique)] = reader.query("SELECT count(), uniqExact(request_id) FROM {table}")
    assert (count, unique) == (40, 40)  # none lost, none duplicated (lost-ack: by the dedup token)
    assert sorted(r[0] for r in reader.query("SELECT request_id FROM {table}")) == expected
    if not lost_ack:
        assert sink.stored == expected  # inserted in the order the requests ended
    assert app.writer.failures == 3
    assert app.writer.spilled > 0
    assert list((tmp_path / "spool").rglob("*.jsonl")) == []
    await app.aclose()


async def test_a_real_server_shutdown_flushes_the_log(
    fake: FakeProvider, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    app = gateway(fake, log_config(chdb_url, table, tmp_path, flush_interval=3600))
    reader.client()  # creates the table
    async with served(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            for i in range(6):
                response = await client.post(CHAT, json=hello(f"q{i}"))
                assert response.status_code == 200
        assert reader.query("SELECT count() FROM {table}") == [(0,)]  # nothing flushed while it ran
    # uvicorn sent lifespan.shutdown: the log layer flushed before the server stopped
    assert reader.query("SELECT count() FROM {table}") == [(6,)]


async def test_aigw_usage_reports_per_tenant_and_model(
    chdb_url: str, table: str, reader: ClickHouseSink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    async def answer(scope: Any, receive: Any, send: Any) -> None:
        from asgi_aigw.kernel.context import Usage

        _, ctx = ensure_context(scope)
        headers = dict(scope["headers"])
        ctx.tenant_id = headers[b"x-tenant"].decode()
        ctx.model = headers[b"x-model"].decode()
        ctx.usage = Usage(100, 20, 120)
        ctx.cost = 0.5
        ctx.cache_status = headers[b"x-cache"].decode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = RequestLogMiddleware(answer, config=log_config(chdb_url, table, tmp_path))
    traffic = (
        [("acme", "gpt-4o", "hit-exact")] * 3
        + [("acme", "gpt-4o", "miss")]
        + [("zeta", "mini", "bypass")] * 2
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for tenant, model, cache in traffic:
            await client.post(
                "/v1/chat/completions", headers={"x-tenant": tenant, "x-model": model, "x-cache": cache}
            )
    await app.aclose()

    assert main(["usage", "--url", chdb_url, "--table", table, "--since", "1h"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.startswith(("acme", "zeta", "all"))]
    # tenant model requests prompt completion total cache-read cache-write reasoning spend cache-hit
    # p50 p95
    assert lines[0][:11] == ["acme", "gpt-4o", "4", "400", "80", "480", "0", "0", "0", "2.0000", "75.0%"]
    assert lines[1][:11] == ["zeta", "mini", "2", "200", "40", "240", "0", "0", "0", "1.0000", "-"]
    assert lines[2][:11] == ["all", "all", "6", "600", "120", "720", "0", "0", "0", "3.0000", "75.0%"]

    assert main(["usage", "--url", chdb_url, "--table", table, "--tenant", "zeta", "--json"]) == 0
    [report] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (report["tenant"], report["requests"], report["cost"], report["cache_hit_ratio"]) == (
        "zeta",
        2,
        1.0,
        None,
    )
    assert report["p95_ms"] >= report["p50_ms"] > 0


def test_aigw_usage_explains_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--url", "memory://"]) == 2
    assert "reads ClickHouse, chDB or JSONL" in capsys.readouterr().err
    assert main(["usage", "--url", f"chdb://{tmp_path}/missing"]) == 1
    assert "no request log" in capsys.readouterr().err
    assert main(["usage", "--since", "yesterday"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_the_exit_hook_writes_to_chdb_when_there_is_no_lifespan(tmp_path: Path) -> None:
    """Django sends no lifespan: rows queued when the process exits reach chDB through atexit."""
    script = textwrap.dedent(
        f"""
        import asyncio, atexit

        def count():  # registered first, so it runs after the gateway's own exit hook
            import clickhouse_connect
            client = clickhouse_connect.get_client(interface="chdb", path={str(tmp_path / "chdb")!r})
            print("rows:", client.query("SELECT count() FROM default.aigw_requests").result_rows[0][0])

        atexit.register(count)

        from asgi_aigw.logs import LogConfig, RequestLogMiddleware

        async def ok(scope, receive, send):
            await send({{"type": "http.response.start", "status": 200, "headers": []}})
            await send({{"type": "http.response.body", "body": b"{{}}"}})

        config = LogConfig(store={f"chdb://{tmp_path / 'chdb'}"!r}, spool_dir=None, flush_interval=3600)
        app = RequestLogMiddleware(ok, config=config)

        async def main():
            async def receive():
                return {{"type": "http.request", "body": b""}}
            async def send(message):
                pass
            for _ in range(12):
                await app({{"type": "http", "method": "GET", "path": "/v1/models", "headers": []}}, receive, send)

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "rows: 12" in result.stdout


async def test_rows_carry_the_user_and_older_tables_get_the_column(
    chdb_url: str, table: str, reader: ClickHouseSink, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The identity's user reaches the row (``user_id``), a table made before the column existed gets
    it added, and ``aigw usage --by-user`` reports per user."""
    from asgi_aigw.kernel.context import Identity, Usage
    from asgi_aigw.logs.clickhouse import create_table_sql
    from asgi_aigw.tenant import TenantConfig, TenantMiddleware

    old_schema = create_table_sql("default", table).replace("`user_id` String,", "")
    assert "user_id" not in old_schema
    reader.client(ensure_schema=False).command(old_schema)

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        _, ctx = ensure_context(scope)
        ctx.model = "gpt-4o"
        ctx.usage = Usage(10, 5, 15)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def login(scope: Any) -> Identity:
        return Identity("acme", dict(scope["headers"])[b"x-user"].decode())

    tenants = TenantMiddleware(answer, config=TenantConfig(), resolver=login)
    app = RequestLogMiddleware(tenants, config=log_config(chdb_url, table, tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for user in ["alice", "alice", "bob"]:
            response = await client.post("/v1/chat/completions", json={}, headers={"x-user": user})
            assert response.status_code == 200
    await app.aclose()

    rows = reader.query(
        "SELECT tenant, user_id, count() FROM {table} GROUP BY tenant, user_id ORDER BY user_id"
    )
    assert rows == [("acme", "alice", 2), ("acme", "bob", 1)]
    assert main(["usage", "--url", chdb_url, "--table", table, "--by-user"]) == 0
    lines = [
        line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("acme", "all"))
    ]
    # tenant user model requests prompt completion total
    assert [line[:7] for line in lines] == [
        ["acme", "alice", "gpt-4o", "2", "20", "10", "30"],
        ["acme", "bob", "gpt-4o", "1", "10", "5", "15"],
        ["all", "all", "all", "3", "30", "15", "45"],
    ]


def test_rows_are_stored_as_clickhouse_connect_stores_them(
    chdb_url: str, table: str, reader: ClickHouseSink
) -> None:
    """The sink writes RowBinary itself (clickhouse-connect's insert imports pandas); every column holds
    what clickhouse-connect's own insert of the same rows holds."""
    from asgi_aigw.logs.clickhouse import create_table_sql
    from asgi_aigw.logs.row import COLUMN_NAMES, COLUMN_TYPES, COLUMNS

    full = LOG_ROW_EVERY_KIND
    sparse = {"request_id": "old", "timestamp": 0, "cache_score": None, "cost": None, "tenant": ""}
    rows: list[LogRow] = [full, sparse]
    sink = ClickHouseSink(chdb_url, table=table)
    sink.write(rows, "b1")
    sink.close()
    twin = f"{table}_twin"
    client = reader.client(ensure_schema=False)
    client.command(create_table_sql("default", twin))
    defaults = {"Bool": False, "Nullable": None, "Map": {}, "String": "", "Float": 0.0}
    columns = [
        [row.get(name, next((v for k, v in defaults.items() if k in kind), 0)) for row in rows]
        for name, kind in COLUMNS
    ]
    client.insert(
        twin, columns, column_names=COLUMN_NAMES, column_type_names=COLUMN_TYPES, column_oriented=True
    )
    select = "SELECT * FROM {} ORDER BY request_id"
    ours = reader.query(select.format("{table}"))
    theirs = reader.query(select.format(f"default.{twin}"))
    assert ours == theirs
    assert len(ours) == 2
    assert ours[1][COLUMN_NAMES.index("pii_entities")] == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}


def test_a_value_a_column_cannot_hold_is_refused_by_name(chdb_url: str, table: str) -> None:
    sink = ClickHouseSink(chdb_url, table=table)
    try:
        sink.write([{"request_id": "good", "timestamp": 0}], "b0")
        with pytest.raises(ValueError, match=r"'prompt_tokens' cannot hold -1 \(UInt32\)"):
            sink.write([{"request_id": "r", "timestamp": 0, "prompt_tokens": -1}], "b1")
        with pytest.raises(ValueError, match=r"'status' cannot hold '200' \(UInt16\)"):
            sink.write([{"request_id": "r", "timestamp": 0, "status": "200"}], "b2")
        with pytest.raises(ValueError, match=r"'model' cannot hold None .*not Nullable"):
            sink.write([{"request_id": "r", "timestamp": 0, "model": None}], "b3")
        assert sink.query("SELECT request_id FROM {table}") == [("good",)]  # nothing half-written
    finally:
        sink.close()
