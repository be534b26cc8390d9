"""LogWriter: rows in, batches out, away from the request path, nothing lost on the way.

The request path calls :meth:`LogWriter.enqueue`, which appends to a list and returns (no I/O, no
await). Two background tasks, started on the first enqueue of an event loop (Django sends no lifespan):

- the *sealer* cuts the rows into batches every ``flush_interval`` seconds or as soon as
  ``batch_size`` rows are waiting, and writes each batch to the spool (a worker thread) before it is
  handed on: from then on the batch survives a crash, and a restart replays it;
- the *shipper* inserts batches in the order they were sealed, one at a time, in a worker thread. A
  failed insert is retried with exponential backoff; meanwhile new batches keep going to the spool,
  so memory stays bounded however long the sink is down. After a successful insert the batch's
  spool file is removed.

Every batch carries an id that sinks use to drop a batch they already stored (ClickHouse: the insert
deduplication token), so a retry after a lost acknowledgement, or a replay after a crash between the
insert and the removal of the file, stores no row twice.

Shutdown: :meth:`aclose` (lifespan shutdown) and an ``atexit`` hook (servers without lifespan) seal and
ship what is left; what the sink does not take in ``shutdown_timeout`` stays in the spool for the next
start. A hard kill loses only the rows not yet sealed: at most one batch (``batch_size`` rows, or
``flush_interval`` seconds of traffic).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures.thread  # noqa: F401  (registers its exit hook now: it cannot at exit)
import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .encoded import EncodedRows
from .row import LogRow
from .sinks import LogSink
from .spool import Spool

if TYPE_CHECKING:
    import os

logger = logging.getLogger("asgi_aigw.logs")

#: Seconds lifespan startup waits for a sink opened early (chDB: well under one second when healthy).
OPEN_EARLY_TIMEOUT = 30.0

#: Seconds between repeated warnings about the same kind of trouble.
_WARN_EVERY = 60.0


class WriterMetrics(Protocol):
    """What the writer reports (implemented by :class:`asgi_aigw.logs.metrics.GatewayMetrics`)."""

    def log_rows_written(self, count: int) -> None: ...
    def log_rows_spilled(self, count: int) -> None: ...
    def log_rows_dropped(self, count: int) -> None: ...
    def log_insert_failed(self) -> None: ...
    def watch_writer(self, writer: LogWriter) -> None: ...


#: Rows encoded per turn of the event loop (a few hundred µs of pure Python: 2-3 µs a row).
_ENCODE_SLICE = 128


@dataclass(eq=False)
class _Batch:
    seq: int
    batch_id: str
    size: int
    rows: list[LogRow] | None
    path: Path | None = None
    #: Set (under the ship lock) once the sink has the batch, or it was given up.
    done: bool = False
    failures: int = 0
    #: The rows as the sink stores them, encoded on the event loop (sinks with ``encode``).
    encoded: bytes | None = None


@dataclass
class _Warner:
    """Log a kind of trouble once, then at most every ``_WARN_EVERY`` seconds with a count."""

    last: float = -_WARN_EVERY
    suppressed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, level: int, message: str, *args: Any) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.last < _WARN_EVERY:
                self.suppressed += 1
                return
            suppressed, self.suppressed, self.last = self.suppressed, 0, now
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        logger.log(level, message, *args)


class LogWriter:
    """Batches rows to a :class:`~asgi_aigw.logs.LogSink` from a bounded queue, with a spool on disk.

    One event loop at a time: the tasks start on the loop of the first :meth:`enqueue` and start again
    on a new loop if that one has gone (test suites).
    """

    def __init__(
        self,
        sink: LogSink,
        *,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        max_queue: int = 10000,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_fsync: bool = False,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        shutdown_timeout: float = 10.0,
        idle_close: float | None = None,
        metrics: WriterMetrics | None = None,
    ) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.shutdown_timeout = shutdown_timeout
        #: Close the sink after this many idle seconds (chDB: free its directory for other processes).
        #: The wait doubles after each such close: chDB leaks threads, descriptors and memory every
        #: time its engine is closed and opened again (chdb 4.4: ~5 threads, ~2 MB), so a sink
        #: reopened by sparse traffic may only do so a logarithmic number of times over the uptime.
        self.idle_close: float | None = (
            idle_close if idle_close is not None else getattr(sink, "idle_close", None)
        )
        self.metrics = metrics
        self.spool = Spool(spool_dir, sink.name, fsync=spool_fsync) if spool_dir is not None else None

        self._rows: list[LogRow] = []
        #: Rows held only in memory: not sealed yet, or sealed but not spooled (no spool, or it failed).
        self._unsaved = 0
        #: Sealed batches in order; the head is the next to ship.
        self._pending: deque[_Batch] = deque()
        #: Batches being written to the spool (visible to the exit hook if the loop dies meanwhile).
        self._sealing: list[_Batch] = []
        self._adopted: list[_Batch] = []
        self._seq = 0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        self._running = False
        self._seal_event: asyncio.Event | None = None
        self._ship_event: asyncio.Event | None = None
        self._seal_lock: asyncio.Lock | None = None
        self._progress: asyncio.Condition | None = None

        self._ship_lock = threading.Lock()
        self._spool_lock = threading.Lock()
        self._spool_open = False
        self._force = 0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._failed_at = 0.0
        self._sink_open = False
        self._last_write = 0.0
        self._closed = False

        #: Totals since the writer was created.
        self.written = 0
        self.spilled = 0
        self.dropped = 0
        self.failures = 0
        self._warn_insert = _Warner()
        self._warn_drop = _Warner()
        self._warn_spool = _Warner()

        _live_writers.add(self)
        if metrics is not None:
            metrics.watch_writer(self)

    # -- the request path ---------------------------------------------------------------------------

    def enqueue(self, row: LogRow) -> bool:
        """Queue one row (no I/O). False when the queue is full and the row was dropped."""
        if self._unsaved >= self.max_queue:
            self._drop(1, "the request log queue is full (the spool cannot keep up or is disabled)")
            return False
        self._rows.append(row)
        self._unsaved += 1
        self._closed = False
        if self._ensure_started() and len(self._rows) >= self.batch_size:
            assert self._seal_event is not None
            self._seal_event.set()
        return True

    @property
    def queue_depth(self) -> int:
        """Rows enqueued and not yet in the sink (in memory or in the spool)."""
        sealing = sum(b.size for b in self._sealing)
        return len(self._rows) + sealing + sum(b.size for b in self._pending if not b.done)

    @property
    def memory_rows(self) -> int:
        """Rows that exist only in memory (lost by a hard kill)."""
        return self._unsaved

    # -- lifecycle ----------------------------------------------------------------------------------

    def _ensure_started(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # called outside a loop: the exit hook ships the rows
        if loop is not self._loop or not self._running:
            self._start(loop)
        return True

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._seal_event = asyncio.Event()
        self._ship_event = asyncio.Event()
        self._seal_lock = asyncio.Lock()
        self._progress = asyncio.Condition()
        # batches sealed on a loop that died while spooling them: ship them from memory
        if self._sealing:
            self._pending.extend(b for b in self._sealing if not b.done)
            self._pending = deque(sorted(self._pending, key=lambda b: b.seq))
            self._sealing = []
        self._running = True
        self._tasks = (
            loop.create_task(self._seal_loop(), name="aigw-log-sealer"),
            loop.create_task(self._ship_loop(), name="aigw-log-shipper"),
        )

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (a deadline, not I/O)
        """Seal the rows queued so far and wait until the sink has every batch sealed before this call
        (retrying without the usual backoff). False if ``timeout`` (default ``shutdown_timeout``) ran
        out first; the batches then stay in the spool, or in memory without one."""
        self._ensure_started()
        assert self._progress is not None
        timeout = self.shutdown_timeout if timeout is None else timeout
        self._force += 1
        try:
            await self._seal()
            target = self._seq
            assert self._ship_event is not None
            self._ship_event.set()

            def shipped() -> bool:
                # not ``b.done``: a worker thread sets it before it has removed the spool file; the
                # shipper takes a batch off ``_pending`` only once that thread has returned
                return not any(b.seq <= target for b in (*self._pending, *self._adopted))

            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(shipped)
            return True
        except TimeoutError:
            return False
        finally:
            self._force -= 1

    async def prepare(self) -> None:
        """Open a sink that says it is worth opening early (chDB: its first connection starts the engine,
        holding the GIL for a few hundred milliseconds; done by the first insert, in a worker thread,
        that stalled the event loop serving requests). Called at lifespan startup, before requests; a
        failure is logged and left to the first insert."""
        open_early = getattr(self.sink, "open_early", None)
        if open_early is None:
            return

        def prepare() -> None:
            with self._ship_lock:
                open_early()
                self._sink_open = True
                self._last_write = time.monotonic()  # closed when idle, like after a write

        try:
            # bounded: a sink that hangs must not keep the server from serving (rows wait, then drop)
            await asyncio.wait_for(asyncio.to_thread(prepare), OPEN_EARLY_TIMEOUT)
        except Exception as exc:
            logger.warning(
                "request log: opening %s at startup failed (%r); retried on insert", self.sink.name, exc
            )

    async def aclose(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Flush, stop the background tasks, close the sink and release the spool. True when every row
        reached the sink. A later :meth:`enqueue` starts the writer again."""
        shipped = await self.flush(timeout) if self._running or self._rows or self._pending else True
        tasks, self._tasks = self._tasks, ()
        self._running = False
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._finish)
        self._recount()
        return shipped

    def close_sync(self, timeout: float | None = None) -> bool:
        """Ship everything left, synchronously: the exit hook for servers without lifespan (Django).
        Runs when the event loop is gone; True when every row reached the sink."""
        if self._closed:
            return True
        timeout = self.shutdown_timeout if timeout is None else timeout
        rows, self._rows = self._rows, []
        batches = [b for b in (*self._pending, *self._sealing, *self._adopted) if not b.done]
        self._adopted = []
        batches.extend(self._make_batches(rows))
        batches.sort(key=lambda b: b.seq)
        self._pending = deque(batches)
        self._sealing = []
        deadline = time.monotonic() + timeout
        for batch in batches:
            while not self._ship(batch):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(self.retry_initial, remaining))
            if not batch.done:
                break
        self._finish()
        self._recount()
        return all(b.done for b in batches)

    def _finish(self) -> None:
        """Close the sink; spool what is still only in memory; release the spool (worker thread)."""
        with self._ship_lock:
            left = [b for b in self._pending if not b.done]
            memory_only = [b for b in left if b.path is None and b.rows is not None]
            if memory_only and self.spool is not None:
                with contextlib.suppress(OSError):
                    self._spool_batches(memory_only)
            lost = sum(b.size for b in left if b.path is None)
            if lost:
                self._drop(lost, "the sink did not take these rows before shutdown and there is no spool")
                for batch in left:
                    if batch.path is None:
                        batch.done = True
                self._pending = deque(b for b in self._pending if not b.done)
            elif left:
                logger.warning(
                    "%d request log rows stay in the spool (%s); they are replayed at the next start",
                    sum(b.size for b in left),
                    self.spool.dir if self.spool else "-",
                )
            with contextlib.suppress(Exception):
                self.sink.close()
            self._sink_open = False
            if self.spool is not None and self._spool_open:
                with self._spool_lock:
                    self.spool.close()
                    self._spool_open = False
                    # from now on the files are the only copy: whoever opens the spool next (this
                    # writer again, or another process) replays them
                    self._pending = deque(b for b in self._pending if b.path is None and not b.done)
                    self._adopted = []
        self._closed = True

    def _recount(self) -> None:
        """Recompute the rows held only in memory (after shutdown moved batches around)."""
        memory = sum(b.size for b in self._pending if b.path is None and not b.done)
        self._unsaved = len(self._rows) + memory

    # -- sealing ------------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = max(time.time_ns(), self._seq + 1)
        return self._seq

    def _make_batches(self, rows: list[LogRow]) -> list[_Batch]:
        size = self.batch_size
        return [
            _Batch(self._next_seq(), uuid.uuid4().hex, len(chunk), chunk)
            for chunk in (rows[i : i + size] for i in range(0, len(rows), size))
        ]

    async def _seal_loop(self) -> None:
        assert self._seal_event is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._seal_event.wait()
            self._seal_event.clear()
            try:
                await self._seal()
            except Exception:  # never let the task die: rows would pile up until dropped
                logger.exception("sealing request log rows failed")

    async def _seal(self) -> None:
        assert self._seal_lock is not None
        assert self._ship_event is not None
        async with self._seal_lock:
            if not self._rows:
                return
            rows, self._rows = self._rows, []
            batches = self._make_batches(rows)
            if self.spool is not None:
                self._sealing = batches
                try:
                    await asyncio.to_thread(self._spool_batches, batches)
                except OSError as exc:
                    self._warn_spool(
                        logging.ERROR, "cannot write the request log spool (%s): keeping rows in memory", exc
                    )
                finally:
                    self._sealing = []
            # spooled rows stay in memory as a cache (no read back) while the cache is within max_queue
            cached = sum(b.size for b in self._pending if b.path is not None and b.rows is not None)
            for batch in batches:
                if batch.path is not None:
                    self._unsaved -= batch.size
                    if cached + batch.size > self.max_queue:
                        batch.rows = None  # on disk only; read back when its turn comes
                    else:
                        cached += batch.size
            self._pending.extend(batches)
            self._ship_event.set()

    def _open_spool(self) -> None:
        assert self.spool is not None
        with self._spool_lock:
            if self._spool_open:
                return
            adopted = self.spool.open()
            self._spool_open = True
            self._adopted.extend(_Batch(s.seq, s.batch_id, s.rows, None, s.path) for s in adopted)

    def _spool_batches(self, batches: list[_Batch]) -> None:
        """Worker thread: write each batch to the spool, recording its path on it."""
        assert self.spool is not None
        self._open_spool()
        for batch in batches:
            if batch.path is None and batch.rows is not None:
                batch.path = self.spool.write(batch.seq, batch.batch_id, batch.rows)

    # -- shipping -----------------------------------------------------------------------------------

    async def _ship_loop(self) -> None:
        assert self._ship_event is not None
        if self.spool is not None:
            try:
                await asyncio.to_thread(self._open_spool)
            except OSError as exc:
                self._warn_spool(logging.ERROR, "cannot open the request log spool (%s)", exc)
        while True:
            self._ship_event.clear()
            try:
                await self._ship_step()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("shipping request log rows failed")
                await asyncio.sleep(self.retry_initial)

    async def _ship_step(self) -> None:
        assert self._ship_event is not None
        assert self._progress is not None
        if self._adopted:
            with self._spool_lock:  # held only by short file operations
                adopted, self._adopted = self._adopted, []
            self._pending = deque(sorted([*self._pending, *adopted], key=lambda b: (b.seq, b.batch_id)))
        while self._pending and self._pending[0].done:
            self._pending.popleft()
        batch = self._pending[0] if self._pending else None
        if batch is None:
            async with self._progress:
                self._progress.notify_all()
            idle = self.idle_close if self._sink_open else None
            if not await _wait(self._ship_event, idle) and idle is not None:
                await asyncio.to_thread(self._close_idle_sink)
            return
        now = time.monotonic()
        ready_at = self._retry_at
        if self._force:
            ready_at = min(ready_at, self._failed_at + self.retry_initial)
        if ready_at > now:
            await _wait(self._ship_event, ready_at - now)
            return
        await self._encode(batch)
        shipped = await asyncio.to_thread(self._ship, batch)
        if shipped:
            self._pending.popleft()
            if batch.path is None:
                self._unsaved -= batch.size
            self._backoff = 0.0
            self._retry_at = 0.0
        else:
            self._failed_at = time.monotonic()
            self._backoff = min(self.retry_max, self._backoff * 2 if self._backoff else self.retry_initial)
            self._retry_at = self._failed_at + self._backoff
            if batch.failures == 1:
                # the first failure of a batch: it waits in the spool (or in memory) for a retry
                self.spilled += batch.size
                if self.metrics is not None:
                    self.metrics.log_rows_spilled(batch.size)
        async with self._progress:
            self._progress.notify_all()

    async def _encode(self, batch: _Batch) -> None:
        """Encode ``batch`` for a sink that can (``encode``, then :class:`EncodedRows`) here, on the loop,
        ``_ENCODE_SLICE`` rows at a time. Encoding is pure Python: in the shipping thread it held the GIL
        for tens of milliseconds a batch, and the event loop, waiting for it in 5 ms turns, answered
        late (the request log's p99). A slice here costs about a millisecond and nothing waits."""
        encode = getattr(self.sink, "encode", None)
        rows = batch.rows
        if encode is None or rows is None or batch.encoded is not None:
            return
        parts: list[bytes] = []
        for start in range(0, len(rows), _ENCODE_SLICE):
            try:
                parts.append(encode(rows[start : start + _ENCODE_SLICE]))
            except Exception:
                return  # the sink's write refuses the batch the same way, and says why
            await asyncio.sleep(0)
        batch.encoded = b"".join(parts)

    def _ship(self, batch: _Batch) -> bool:
        """Worker thread (or the exit hook): write one batch; True once the sink has it."""
        with self._ship_lock:
            if batch.done:
                return True
            rows = batch.rows
            if rows is None:
                assert batch.path is not None
                try:
                    rows = Spool.read(batch.path)
                except (OSError, ValueError) as exc:
                    logger.error("request log spool file %s is unreadable (%s): set aside", batch.path, exc)
                    Spool.quarantine(batch.path)
                    batch.done = True
                    self._count_dropped(batch.size)
                    return True
            try:
                encoded = batch.encoded
                self.sink.write(rows if encoded is None else EncodedRows(rows, encoded), batch.batch_id)
            except Exception as exc:
                batch.failures += 1
                self.failures += 1
                if self.metrics is not None:
                    self.metrics.log_insert_failed()
                where = f"; {self.queue_depth} rows wait in the spool" if self.spool else ""
                self._warn_insert(
                    logging.WARNING, "request log sink %s failed (%s)%s", self.sink.name, exc, where
                )
                return False
            batch.done = True
            if batch.path is not None:
                Spool.remove(batch.path)
            self._sink_open = True
            self._last_write = time.monotonic()
            self.written += batch.size
            if self.metrics is not None:
                self.metrics.log_rows_written(batch.size)
            _exit_hook_after_sink_imports()
            return True

    def _close_idle_sink(self) -> None:
        with self._ship_lock:
            if not self._sink_open or self.idle_close is None:
                return
            if time.monotonic() - self._last_write < self.idle_close:
                return
            with contextlib.suppress(Exception):
                self.sink.close()
            self._sink_open = False
            self.idle_close *= 2

    # -- losses -------------------------------------------------------------------------------------

    def _drop(self, count: int, why: str) -> None:
        self._count_dropped(count)
        self._warn_drop(logging.ERROR, "dropped %d request log rows: %s", count, why)

    def _count_dropped(self, count: int) -> None:
        self.dropped += count
        if self.metrics is not None:
            self.metrics.log_rows_dropped(count)


async def _wait(event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
    if timeout is None:
        await event.wait()
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


# -- process exit -------------------------------------------------------------------------------------

_live_writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()
_hook_moved = False


def _close_all_writers() -> None:
    global _hook_moved
    _hook_moved = True  # never re-register while atexit is running the hooks
    for writer in list(_live_writers):
        try:
            writer.close_sync()
        except Exception:
            logger.exception("flushing the request log at exit failed")


def _exit_hook_after_sink_imports() -> None:
    """atexit runs hooks last-registered first: once a sink has connected (and its libraries registered
    their own exit hooks, which close connection pools), move ours to run before theirs."""
    global _hook_moved
    if not _hook_moved:
        _hook_moved = True
        atexit.unregister(_close_all_writers)
        atexit.register(_close_all_writers)


atexit.register(_close_all_writers)
