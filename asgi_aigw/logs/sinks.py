"""Where request log rows go: one small protocol, chosen by object or by URL.

Sinks are synchronous: the writer calls them from a worker thread, never on the event loop, one call
at a time. ``write`` either stores the whole batch or raises; a batch may be written again after an
error (the write may have succeeded before the error reached us), so sinks drop a batch id they have
already stored (ClickHouse does it with the batch id as its insert deduplication token).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import orjson

from ..kernel.url_text import url_flag
from .row import LogRow
from .sink_url import parse_sink_url


@runtime_checkable
class LogSink(Protocol):
    """A destination for request log rows."""

    #: What the sink writes to, without secrets (logs, and the name of its spool sub-directory).
    name: str

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        """Store ``rows``, all or nothing; a ``batch_id`` already stored is not stored again."""

    def close(self) -> None:
        """Release connections and files; a later ``write`` opens them again."""


class _RecentIds:
    """The last few batch ids written, to drop a batch retried after a write whose ack was lost."""

    def __init__(self, size: int = 4096) -> None:
        self._order: deque[str] = deque(maxlen=size)
        self._ids: set[str] = set()

    def __contains__(self, batch_id: str) -> bool:
        return batch_id in self._ids

    def add(self, batch_id: str) -> None:
        if len(self._order) == self._order.maxlen:
            self._ids.discard(self._order[0])
        self._order.append(batch_id)
        self._ids.add(batch_id)


class MemorySink:
    """Keeps rows in a list: tests, and applications that read their own log."""

    name = "memory"

    def __init__(self) -> None:
        self.rows: list[LogRow] = []
        self.batch_ids: list[str] = []
        self._recent = _RecentIds()
        self._lock = threading.Lock()

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        with self._lock:
            if batch_id in self._recent:
                return
            self.rows.extend(rows)
            self.batch_ids.append(batch_id)
            self._recent.add(batch_id)

    def close(self) -> None:
        pass


class JSONLSink:
    """Appends one JSON object per line to a file (rotate it with copytruncate, or by renaming it:
    the file is opened for each batch)."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path).absolute()
        self.name = f"jsonl://{self.path}"
        self._fsync = fsync
        self._recent = _RecentIds()

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        if batch_id in self._recent:
            return
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as file:
            file.write(data)
            file.flush()
            if self._fsync:
                os.fsync(file.fileno())
        self._recent.add(batch_id)

    def close(self) -> None:
        pass


def open_sink(url: str, *, table: str | None = None, ttl_days: int | None = None) -> LogSink:
    """The sink a URL names: ``clickhouse://``/``clickhouses://`` (a ClickHouse server over HTTP),
    ``chdb://`` (ClickHouse in process), ``jsonl://`` or ``memory://`` (registered in
    :mod:`asgi_aigw.stores.registry`)."""
    parsed = parse_sink_url(url, table=table, ttl_days=ttl_days)
    if parsed.scheme == "memory":
        return MemorySink()
    if parsed.scheme == "jsonl":
        assert parsed.path is not None
        return JSONLSink(parsed.path, fsync=bool(url_flag(parsed.options.get("fsync", "false"))))
    from .clickhouse import ClickHouseSink

    return ClickHouseSink(parsed)
