"""LogWriter: batching, retries with backoff, the spool (spill, replay, adoption), shutdown and exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from asgi_aigw.config import ConfigError, parse_config
from asgi_aigw.logs import ClickHouseSink, JSONLSink, LogConfig, LogRow, LogWriter, MemorySink
from asgi_aigw.logs.encoded import EncodedRows
from asgi_aigw.logs.sinks import parse_sink_url
from asgi_aigw.stores.registry import LOG_STORES

from .support import eventually


def rows(n: int, start: int = 0) -> list[LogRow]:
    return [{"request_id": f"r{i:05d}", "n": i} for i in range(start, start + n)]


class FlakySink(MemorySink):
    """A memory sink that fails its first ``failures`` writes: before storing (the sink is down) or,
    with ``lost_ack``, after storing (the acknowledgement is lost, as on a network timeout)."""

    name = "flaky"

    def __init__(self, failures: int = 0, *, lost_ack: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.lost_ack = lost_ack
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        self.gate.wait(30)
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            if self.lost_ack:
                super().write(rows, batch_id)
            raise ConnectionError("sink is down")
        super().write(rows, batch_id)


def ids(sink: MemorySink) -> list[str]:
    return [row["request_id"] for row in sink.rows]


def spool_files(root: Path, pattern: str = "*.jsonl") -> list[Path]:
    return sorted(root.rglob(pattern))


# -- batching -----------------------------------------------------------------------------------------


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, batch_size=10, flush_interval=3600)
    for row in rows(10):
        writer.enqueue(row)
    assert await eventually(lambda: len(sink.rows) == 10)
    assert len(sink.batch_ids) == 1
    await writer.aclose()


async def test_rows_are_written_after_the_flush_interval() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, batch_size=1000, flush_interval=0.05)
    for row in rows(3):
        writer.enqueue(row)
    assert await eventually(lambda: len(sink.rows) == 3)
    await writer.aclose()


async def test_flush_splits_into_batches_and_keeps_the_order() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, batch_size=10, flush_interval=3600)
    for row in rows(25):
        writer.enqueue(row)
    assert await writer.flush()
    assert ids(sink) == [r["request_id"] for r in rows(25)]
    assert len(sink.batch_ids) == 3
    assert writer.queue_depth == 0
    await writer.aclose()


# -- failures, retries, spool -------------------------------------------------------------------------


@pytest.mark.parametrize("lost_ack", [False, True], ids=["down", "lost-ack"])
async def test_a_sink_that_fails_then_recovers_gets_every_row_once_in_order(
    tmp_path: Path, lost_ack: bool
) -> None:
    sink = FlakySink(failures=4, lost_ack=lost_ack)
    writer = LogWriter(
        sink, batch_size=7, flush_interval=0.01, spool_dir=tmp_path, retry_initial=0.01, retry_max=0.05
    )
    expected = [r["request_id"] for r in rows(50)]
    for row in rows(50):
        writer.enqueue(row)
    assert await writer.flush()
    assert ids(sink) == expected  # exactly once each, in order
    assert sink.calls > len(sink.batch_ids)  # some batches were retried
    assert writer.failures == 4
    assert writer.spilled > 0
    assert spool_files(tmp_path) == []  # every spooled batch removed once stored
    await writer.aclose()


async def test_retries_back_off_exponentially(tmp_path: Path) -> None:
    sink = FlakySink(failures=100)
    writer = LogWriter(
        sink, batch_size=1, flush_interval=0.01, spool_dir=tmp_path, retry_initial=0.02, retry_max=0.08
    )
    writer.enqueue(rows(1)[0])
    assert await eventually(lambda: writer.failures >= 4)
    assert writer._backoff == pytest.approx(0.08)  # 0.02, 0.04, 0.08, capped
    sink.failures = 0
    assert await writer.flush()
    assert writer._backoff == 0.0
    await writer.aclose()


async def test_while_the_sink_is_down_batches_spill_to_disk_and_memory_stays_bounded(tmp_path: Path) -> None:
    sink = FlakySink()
    sink.gate.clear()  # the sink hangs: the first insert never returns until released
    writer = LogWriter(sink, batch_size=10, flush_interval=0.01, spool_dir=tmp_path, max_queue=40)
    for i in range(20):
        for row in rows(10, start=i * 10):
            assert writer.enqueue(row)  # never dropped: sealed batches go to the spool
        assert await eventually(lambda: writer.memory_rows < 10)
    assert len(spool_files(tmp_path)) == 20
    assert writer.queue_depth == 200
    assert writer.dropped == 0
    sink.gate.set()
    assert await writer.flush()
    assert ids(sink) == [r["request_id"] for r in rows(200)]
    assert spool_files(tmp_path) == []
    await writer.aclose()


async def test_without_a_spool_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    sink = FlakySink(failures=10**6)
    writer = LogWriter(
        sink, batch_size=5, flush_interval=0.01, max_queue=20, retry_initial=0.01, retry_max=0.01
    )
    accepted = [writer.enqueue(row) for row in rows(30)]
    assert accepted.count(False) == 10
    assert writer.dropped == 10
    assert writer.memory_rows == 20
    sink.failures = 0
    assert await writer.flush()
    assert ids(sink) == [r["request_id"] for r in rows(20)]
    await writer.aclose()


async def test_a_restart_replays_the_spool_of_the_previous_writer_first_in_order(tmp_path: Path) -> None:
    down = FlakySink(failures=10**6)
    first = LogWriter(down, batch_size=4, flush_interval=0.01, spool_dir=tmp_path, retry_initial=0.01)
    for row in rows(10):
        first.enqueue(row)
    assert not await first.aclose(timeout=0.2)  # the sink never came back: rows stay on disk
    assert len(spool_files(tmp_path)) == 3
    assert down.rows == []

    sink = MemorySink()
    sink.name = down.name  # the same destination: its spool directory is shared
    second = LogWriter(sink, batch_size=4, flush_interval=0.01, spool_dir=tmp_path)
    for row in rows(5, start=10):
        second.enqueue(row)
    assert await second.flush()
    assert ids(sink) == [r["request_id"] for r in rows(15)]
    assert spool_files(tmp_path) == []
    await second.aclose()


async def test_a_spool_is_not_adopted_while_its_writer_lives(tmp_path: Path) -> None:
    down = FlakySink(failures=10**6)
    alive = LogWriter(down, batch_size=2, flush_interval=0.01, spool_dir=tmp_path, retry_initial=10)
    for row in rows(4):
        alive.enqueue(row)
    assert await eventually(lambda: len(spool_files(tmp_path)) == 2)
    sink = MemorySink()
    sink.name = down.name
    other = LogWriter(sink, batch_size=2, flush_interval=0.01, spool_dir=tmp_path)
    other.enqueue({"request_id": "other"})
    assert await other.flush()
    assert ids(sink) == ["other"]  # the live writer's batches are its own
    assert len(spool_files(tmp_path)) == 2
    await other.aclose()
    await alive.aclose(timeout=0)


async def test_an_unreadable_spool_file_is_set_aside_and_counted(tmp_path: Path) -> None:
    sink = FlakySink(failures=10**6)
    writer = LogWriter(
        sink, batch_size=2, flush_interval=0.01, spool_dir=tmp_path, retry_initial=0.01, max_queue=4
    )
    for row in rows(4):
        writer.enqueue(row)
    assert await eventually(lambda: len(spool_files(tmp_path)) == 2)
    for row in rows(2, start=4):
        writer.enqueue(row)
    assert await eventually(lambda: len(spool_files(tmp_path)) == 3)
    # the first batches stay cached in memory (up to max_queue rows); the third is read back from disk
    third = spool_files(tmp_path)[2]
    await asyncio.to_thread(third.write_bytes, b"{not json\n")
    sink.failures = 0
    assert await writer.flush()
    assert ids(sink) == ["r00000", "r00001", "r00002", "r00003"]
    assert writer.dropped == 2
    assert len(spool_files(tmp_path, "*.bad")) == 1
    await writer.aclose()


# -- shutdown and exit --------------------------------------------------------------------------------


async def test_aclose_flushes_everything() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, batch_size=1000, flush_interval=3600)
    for row in rows(42):
        writer.enqueue(row)
    assert sink.rows == []
    assert await writer.aclose()
    assert len(sink.rows) == 42


async def test_the_writer_starts_again_after_aclose() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, batch_size=1000, flush_interval=3600)
    writer.enqueue(rows(1)[0])
    await writer.aclose()
    writer.enqueue(rows(1, start=1)[0])
    assert await writer.aclose()
    assert ids(sink) == ["r00000", "r00001"]


async def test_a_writer_restarted_after_aclose_replays_what_it_left_in_its_spool(tmp_path: Path) -> None:
    sink = FlakySink(failures=10**6)
    writer = LogWriter(sink, batch_size=3, flush_interval=0.01, spool_dir=tmp_path, retry_initial=0.01)
    for row in rows(7):
        writer.enqueue(row)
    assert not await writer.aclose(timeout=0.1)
    assert len(spool_files(tmp_path)) == 3
    sink.failures = 0
    writer.enqueue(rows(1, start=7)[0])
    assert await writer.flush()
    assert ids(sink) == [r["request_id"] for r in rows(8)]
    assert spool_files(tmp_path) == []
    await writer.aclose()


async def test_an_idle_sink_is_closed_and_reopened_on_the_next_batch() -> None:
    class CountingSink(MemorySink):
        closes = 0

        def close(self) -> None:
            self.closes += 1

    sink = CountingSink()
    writer = LogWriter(sink, batch_size=1, flush_interval=0.01, idle_close=0.05)
    writer.enqueue(rows(1)[0])
    assert await eventually(lambda: sink.closes == 1)
    writer.enqueue(rows(1, start=1)[0])
    assert await eventually(lambda: len(sink.rows) == 2 and sink.closes == 2)
    await writer.aclose()


def test_close_sync_ships_rows_enqueued_outside_an_event_loop() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, batch_size=3)
    for row in rows(7):
        writer.enqueue(row)
    assert writer.close_sync()
    assert ids(sink) == [r["request_id"] for r in rows(7)]


def test_close_sync_leaves_what_the_sink_refuses_in_the_spool(tmp_path: Path) -> None:
    writer = LogWriter(FlakySink(failures=10**6), batch_size=3, spool_dir=tmp_path, retry_initial=0.01)
    for row in rows(7):
        writer.enqueue(row)
    assert not writer.close_sync(timeout=0.05)
    assert [len(Path(p).read_bytes().splitlines()) for p in spool_files(tmp_path)] == [3, 3, 1]


def test_rows_left_at_interpreter_exit_are_written_by_the_exit_hook(tmp_path: Path) -> None:
    """A server without lifespan (Django): the loop ends, the process exits, the atexit hook flushes."""
    target = tmp_path / "requests.jsonl"
    script = textwrap.dedent(
        f"""
        import asyncio
        from asgi_aigw.logs import LogWriter
        from asgi_aigw.stores.registry import LOG_STORES

        writer = LogWriter(LOG_STORES.open({f"jsonl://{target}"!r}), batch_size=1000, flush_interval=3600)

        async def main():
            for i in range(25):
                writer.enqueue({{"request_id": f"r{{i}}"}})

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == [f"r{i}" for i in range(25)]


# -- sinks and URLs -----------------------------------------------------------------------------------


def test_jsonl_sink_appends_lines_and_skips_a_batch_it_already_wrote(tmp_path: Path) -> None:
    sink = JSONLSink(tmp_path / "sub" / "log.jsonl")
    sink.write(rows(2), "b1")
    sink.write(rows(2), "b1")
    sink.write(rows(1, start=2), "b2")
    lines = (tmp_path / "sub" / "log.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["n"] for line in lines] == [0, 1, 2]


def test_sink_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(LOG_STORES.open("memory://"), MemorySink)
    jsonl = LOG_STORES.open("jsonl://logs/requests.jsonl")
    assert isinstance(jsonl, JSONLSink)
    assert jsonl.path == tmp_path / "logs" / "requests.jsonl"
    chdb = LOG_STORES.open("chdb://.aigw/chdb?table=t1", ttl_days=30)
    assert isinstance(chdb, ClickHouseSink)
    assert chdb.is_chdb
    assert chdb.url is not None
    assert chdb.url.path == str(tmp_path / ".aigw" / "chdb")
    assert (chdb.table, chdb.ttl_days, chdb.idle_close) == ("t1", 30, 1.0)
    assert parse_sink_url("chdb:///var/lib/aigw").path == "/var/lib/aigw"
    assert parse_sink_url("chdb://:memory:").path is None
    server = parse_sink_url("clickhouses://user:p%40ss@ch.example:8443/logs?ttl_days=7", table="x")
    assert (server.scheme, server.host, server.port, server.username, server.password) == (
        "clickhouses", "ch.example", 8443, "user", "p@ss",
    )  # fmt: skip
    assert (server.database, server.table, server.ttl_days) == ("logs", "x", 7)
    http = LOG_STORES.open("clickhouse://ch:8123/logs")
    assert isinstance(http, ClickHouseSink)
    assert http.idle_close is None
    assert "p@ss" not in http.name


def test_unknown_sink_schemes_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match=r"Unknown log store .*: use one of chdb://, clickhouse://"):
        LOG_STORES.open("postgres://db/logs")
    with pytest.raises(ConfigError, match="Unknown log store 'kafka://broker/topic'"):
        parse_config({"log": {"store": "kafka://broker/topic"}})
    with pytest.raises(ConfigError, match="not a valid ClickHouse"):
        LOG_STORES.open("chdb:///tmp/x?table=drop;table")
    with pytest.raises(ConfigError, match="not a valid ClickHouse"):  # '$' matches before a final newline
        LOG_STORES.open("chdb:///tmp/x?table=requests%0A")
    assert parse_config({"log": {"store": None}}).log == LogConfig(store=None)


class HangingOpenSink(MemorySink):
    """A sink that asks to be opened at startup and whose opening never returns (until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def open_early(self) -> None:
        self.release.wait(10)


async def test_a_sink_that_hangs_when_opened_early_does_not_hold_startup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from asgi_aigw.logs import writer as writer_module

    monkeypatch.setattr(writer_module, "OPEN_EARLY_TIMEOUT", 0.2)
    sink = HangingOpenSink()
    writer = LogWriter(sink, spool_dir=None)
    try:
        await asyncio.wait_for(writer.prepare(), timeout=5)
        assert "opening memory" in caplog.text
        assert "TimeoutError" in caplog.text
    finally:
        sink.release.set()
        await writer.aclose()


# -- encoding on the event loop ---------------------------------------------------------------------------


class EncodingSink(MemorySink):
    """A sink that encodes its rows (as the ClickHouse sink does): records where and how much each
    ``encode`` call did, and the encoded bytes ``write`` got."""

    name = "encoding"

    def __init__(self, *, bad: str | None = None) -> None:
        super().__init__()
        self.bad = bad
        self.encode_calls: list[tuple[int, int]] = []  # (rows, thread id)
        self.encoded: list[bytes] = []

    def encode(self, rows: Sequence[LogRow]) -> bytes:
        self.encode_calls.append((len(rows), threading.get_ident()))
        if any(row["request_id"] == self.bad for row in rows):
            raise ValueError("not a row this sink can store")
        return b"".join(orjson.dumps(row) + b"\n" for row in rows)

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        if isinstance(rows, EncodedRows):
            self.encoded.append(rows.encoded)
            super().write([orjson.loads(line) for line in rows.encoded.splitlines()], batch_id)
            return
        self.encode(rows)  # refuses what it cannot store
        super().write(rows, batch_id)


async def test_a_sink_that_encodes_gets_its_batch_encoded_on_the_event_loop_a_slice_at_a_time() -> None:
    """Encoding is pure Python: in the shipping thread it held the GIL and the event loop answered late."""
    sink = EncodingSink()
    writer = LogWriter(sink, batch_size=300, flush_interval=3600)
    loop_thread = threading.get_ident()
    for row in rows(300):
        writer.enqueue(row)
    assert await eventually(lambda: len(sink.rows) == 300)
    assert ids(sink) == [f"r{i:05d}" for i in range(300)]
    assert [size for size, _ in sink.encode_calls] == [128, 128, 44]
    assert {thread for _, thread in sink.encode_calls} == {loop_thread}
    assert len(sink.encoded) == 1
    await writer.aclose()


async def test_a_batch_the_sink_cannot_encode_fails_as_its_write_would() -> None:
    sink = EncodingSink(bad="r00003")
    writer = LogWriter(sink, batch_size=10, flush_interval=3600)
    for row in rows(10):
        writer.enqueue(row)
    assert await eventually(lambda: writer.failures >= 1)
    assert sink.rows == []
    assert sink.encoded == []
    await writer.aclose()
