"""The request log writer over a long uptime: what an idle or sparsely used chDB sink costs.

chDB (4.4) leaks about five threads, a few descriptors and ~2 MB each time its engine is closed and
opened again. The writer closes an idle chDB sink (so ``aigw usage`` can open the directory), so
sparse traffic, one batch after each pause, reopened it for every batch: a leak per request. The
pause it waits before letting go now doubles after each release, which bounds the reopens to a
logarithm of the uptime.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asgi_aigw.logs import LogWriter, MemorySink

ROOT = Path(__file__).resolve().parents[2]


class CountingSink(MemorySink):
    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


async def test_sparse_traffic_closes_an_idle_sink_a_logarithmic_number_of_times() -> None:
    sink = CountingSink()
    writer = LogWriter(sink, batch_size=1, flush_interval=0.005, idle_close=0.01)
    # a row every 0.1 s: each pause is ten times the first idle allowance
    for i in range(20):
        writer.enqueue({"request_id": f"r{i}"})
        await asyncio.sleep(0.1)
    assert len(sink.rows) == 20
    # without doubling: one close per row (20); with it, 0.01 * 2**k outgrows the pause after a few
    # (at most log2(pause / 0.01) + 1: 8 even if the loaded machine stretches a pause to a second)
    assert 1 <= sink.closes <= 8
    assert writer.idle_close is not None
    assert writer.idle_close == 0.01 * 2**sink.closes
    await writer.aclose()


async def test_an_idle_writer_does_not_reopen_its_sink() -> None:
    class OpenCounting(CountingSink):
        writes = 0

        def write(self, rows: object, batch_id: str) -> None:
            self.writes += 1
            super().write(rows, batch_id)  # type: ignore[arg-type]

    sink = OpenCounting()
    writer = LogWriter(sink, batch_size=10, flush_interval=0.01, idle_close=0.02)
    writer.enqueue({"request_id": "only"})
    await asyncio.sleep(0.5)  # fifty flush intervals with nothing to seal
    assert (sink.writes, sink.closes) == (1, 1)
    await writer.aclose()


#: In a process of its own: chDB hosts one directory per process, and its threads are counted.
_SPARSE_CHDB = """
import asyncio, os, sys, time
from asgi_aigw.logs import ClickHouseSink, LogWriter

def threads():
    return len(os.listdir("/proc/self/task"))

async def main():
    path, rows, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sink = ClickHouseSink(f"chdb://{path}/chdb", table="sparse")
    writer = LogWriter(sink, batch_size=1, flush_interval=0.01, idle_close=0.05, spool_dir=f"{path}/spool")
    writer.enqueue({"request_id": "warm", "timestamp": int(time.time() * 1000), "tenant": "t"})
    await asyncio.sleep(pause)
    before = threads()
    for i in range(rows):
        writer.enqueue({"request_id": f"r{i}", "timestamp": int(time.time() * 1000), "tenant": "t"})
        await asyncio.sleep(pause)
    after = threads()
    assert await writer.aclose()
    [(count,)] = sink.query("SELECT count() FROM {table}")
    sink.close()
    print(f"rows={count} threads_before={before} threads_after={after}")

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_sparse_traffic_into_chdb_does_not_leak_a_thread_pool_per_request(tmp_path: Path) -> None:
    pytest.importorskip("chdb")
    rows = 12
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SPARSE_CHDB), str(tmp_path), str(rows), "0.3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    figures = dict(item.split("=") for item in result.stdout.split()[-3:])
    assert int(figures["rows"]) == rows + 1
    # reopening chDB for each of the 12 rows adds ~60 threads; with the doubling pause it reopens
    # about three times (0.05, 0.1, 0.2 s < 0.3 s pause), allow twice that
    growth = int(figures["threads_after"]) - int(figures["threads_before"])
    assert growth <= 30, result.stdout
