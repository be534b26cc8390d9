"""Request log benchmark: what logging costs a request, and how many rows per second reach chDB.

    python bench/request_log.py [--rows 200000] [--requests 20000]

Part 1, the request path (microseconds per request, medians of 5 runs, against a baseline measured
in the same run):
  - build_row + enqueue, against a no-op call with the same arguments;
  - metrics.observe;
  - the whole RequestLogMiddleware around a tiny ASGI app, against the same app called bare: with a
    sink that discards rows (the request path alone), and with metrics and chDB inserting in the
    background (what a saturated single process pays, the insert thread competing for the GIL).
Part 2, sustained throughput into chDB (rows/s): rows enqueued as fast as the loop allows until the
writer has flushed them all, with and without the spool, against clickhouse-connect inserting
prepared batches of the same size directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from asgi_aigw.kernel.context import RequestContext, Usage, ensure_context
from asgi_aigw.logs import ClickHouseSink, LogConfig, LogWriter, RequestLogMiddleware
from asgi_aigw.logs.metrics import GatewayMetrics
from asgi_aigw.logs.row import COLUMN_NAMES, COLUMN_TYPES, build_row


def filled_context(i: int = 0) -> RequestContext:
    ctx = RequestContext()
    ctx.route, ctx.tenant_id, ctx.model, ctx.stream = "chat", f"tenant-{i % 10}", "gpt-4o-mini", False
    ctx.provider, ctx.upstream_model, ctx.deployment, ctx.attempts = (
        "openai",
        "gpt-4o-mini",
        "openai/gpt-4o-mini",
        1,
    )
    ctx.usage, ctx.cost, ctx.token_estimate = Usage(120, 40, 160), 0.00042, 180
    ctx.cache_status, ctx.cache_score = "miss", 0.61
    ctx.pii_entities, ctx.budget_remaining = {"EMAIL_ADDRESS": 1}, {"daily_tokens": 99_000.0}
    ctx.status = 200
    ctx.first_byte_at = ctx.started_perf + 0.2
    ctx.finished_at = ctx.started_perf + 0.9
    return ctx


def per_call_us(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def median_of(runs: int, measure: Any) -> float:
    return statistics.median(measure() for _ in range(runs))


class NullSink:
    name = "null"

    def write(self, rows: Any, batch_id: str) -> None:
        pass

    def close(self) -> None:
        pass


async def request_path(data_dir: Path, requests: int) -> None:
    ctx = filled_context()

    def noop(ctx: RequestContext, *, method: str, path: str, route: str | None) -> None:
        return None

    # rows go nowhere here (NullSink): this part measures the request path only
    writer = LogWriter(NullSink(), batch_size=1000, flush_interval=0.5, max_queue=10**7)

    def baseline() -> None:
        noop(ctx, method="POST", path="/v1/chat/completions", route="chat")

    def build_and_enqueue() -> None:
        writer.enqueue(build_row(ctx, method="POST", path="/v1/chat/completions", route="chat"))

    async def enqueue_run() -> float:
        total = 0.0
        for _ in range(requests // 1000):
            total += per_call_us(build_and_enqueue, 1000) * 1000
            await asyncio.sleep(0)  # let the writer seal, as it would between requests
        return total / (requests // 1000 * 1000)

    base = median_of(5, lambda: per_call_us(baseline, requests))
    enqueue = statistics.median([await enqueue_run() for _ in range(5)])
    await writer.aclose()

    metrics = GatewayMetrics(models=["gpt-4o-mini"], tenant_label=True)
    observe = median_of(5, lambda: per_call_us(lambda: metrics.observe(ctx), requests))

    # the whole layer around a tiny app, with chDB flushing in the background
    body = b'{"ok":true}'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        _, c = ensure_context(scope)
        c.model, c.usage = "gpt-4o-mini", Usage(12, 3, 15)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    config = LogConfig(
        store=f"chdb://{data_dir / 'chdb'}", table="bench_path", spool_dir=str(data_dir / "spool")
    )
    logged = RequestLogMiddleware(app, config=config, metrics=GatewayMetrics(models=["gpt-4o-mini"]))
    null_writer = LogWriter(NullSink(), max_queue=10**7)
    logged_null = RequestLogMiddleware(app, store=null_writer)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: Any) -> None:
        pass

    async def run(target: Any) -> float:
        start = time.perf_counter()
        for i in range(requests):
            await target({**scope, "state": {}}, receive, send)
            if i % 1000 == 999:
                await asyncio.sleep(0)
        return (time.perf_counter() - start) / requests * 1e6

    await run(logged)  # warm up: chDB opens, the table is created
    assert logged.writer is not None
    assert await logged.writer.flush(60)
    bare_us, null_us, logged_us = [], [], []
    for _ in range(5):
        bare_us.append(await run(app))
        null_us.append(await run(logged_null))
        logged_us.append(await run(logged))
    assert await logged.writer.flush(60)
    await logged.aclose()
    await null_writer.aclose()

    print("request path (median of 5 runs, us per request)")
    print(f"  no-op call (baseline)              {base:8.2f}")
    print(f"  build_row + enqueue                {enqueue:8.2f}   (+{enqueue - base:.2f} over the baseline)")
    print(f"  metrics.observe                    {observe:8.2f}")
    bare, null, full = statistics.median(bare_us), statistics.median(null_us), statistics.median(logged_us)
    print(f"  bare ASGI app (baseline)           {bare:8.2f}")
    print(f"  RequestLogMiddleware, null sink    {null:8.2f}   (+{null - bare:.2f})")
    print(
        f"  ... + metrics, chDB inserting      {full:8.2f}   (+{full - bare:.2f}; the insert thread shares the GIL)"
    )


async def throughput(data_dir: Path, rows: int) -> None:
    url = f"chdb://{data_dir / 'chdb'}"
    row = build_row(filled_context(), method="POST", path="/v1/chat/completions", route="chat")
    batch = 1000

    # baseline: clickhouse-connect inserting prepared batches (each with its own deduplication token,
    # as the writer sends them; without one, ClickHouse would drop the repeated blocks as duplicates)
    direct = ClickHouseSink(url, table="bench_direct")
    client = direct.client()
    data = [[row[name]] * batch for name in COLUMN_NAMES]
    start = time.perf_counter()
    for _ in range(rows // batch):
        client.insert(
            "bench_direct",
            data,
            column_names=COLUMN_NAMES,
            column_type_names=COLUMN_TYPES,
            column_oriented=True,
            settings={"insert_deduplication_token": uuid.uuid4().hex},
        )
    direct_rate = rows // batch * batch / (time.perf_counter() - start)
    [(count,)] = direct.query("SELECT count() FROM {table}")
    assert count == rows // batch * batch, count

    results = {}
    for label, spool in (("LogWriter, spool on", data_dir / "spool-t"), ("LogWriter, spool off", None)):
        table = "bench_writer_spool" if spool else "bench_writer"
        sink = ClickHouseSink(url, table=table)
        sink.client()
        writer = LogWriter(sink, batch_size=batch, flush_interval=0.2, max_queue=rows + 1, spool_dir=spool)
        start = time.perf_counter()
        for i in range(rows):
            writer.enqueue(dict(row))
            if i % batch == batch - 1:
                await asyncio.sleep(0)
        assert await writer.flush(600)
        elapsed = time.perf_counter() - start
        [(count,)] = sink.query("SELECT count() FROM {table}")
        assert count == rows, (count, rows)
        results[label] = rows / elapsed
        await writer.aclose()
    direct.close()

    print(f"\nthroughput into chDB ({rows} rows, batches of {batch})")
    print(f"  clickhouse-connect insert (baseline) {direct_rate:10,.0f} rows/s")
    for label, rate in results.items():
        print(f"  {label:36} {rate:10,.0f} rows/s   ({rate / direct_rate:.0%} of the baseline)")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, load {os.getloadavg()}"
    )
    data_dir = Path(tempfile.mkdtemp(prefix="aigw-bench-log-"))
    try:
        await request_path(data_dir, args.requests)
        await throughput(data_dir, args.rows)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
