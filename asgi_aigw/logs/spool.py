"""The spool: sealed batches on local disk until the sink has them.

Layout: ``<root>/<sink key>/<writer id>/<seq>-<batch id>.jsonl``. ``seq`` is a nanosecond clock, forced
to increase, zero-padded, so file names sort in the order batches were sealed; the batch id travels
with the file, so a replayed batch keeps its deduplication token. Each writer holds an exclusive
``flock`` on its own directory while it lives; a directory whose lock is free belongs to a process
that has exited, and the next writer for the same sink adopts its files (moves them into its own
directory) and replays them first. Files are written to a temporary name and renamed, so a crash never
leaves half a batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson

from .row import LogRow

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - no adoption of other writers' spools without flock
    fcntl = None

logger = logging.getLogger("asgi_aigw.logs")

_SUFFIX = ".jsonl"
_LOCK = ".lock"


@dataclass(frozen=True)
class SpooledBatch:
    seq: int
    batch_id: str
    path: Path
    rows: int


def sink_key(name: str) -> str:
    """A directory name for a sink: readable prefix plus a hash of its full name."""
    readable = "".join(c if c.isalnum() else "-" for c in name.split("://", 1)[0])[:16]
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _parse_name(path: Path) -> tuple[int, str] | None:
    stem = path.name[: -len(_SUFFIX)]
    seq, sep, batch_id = stem.partition("-")
    if not sep or not seq.isdigit() or not batch_id:
        return None
    return int(seq), batch_id


class Spool:
    """One writer's spool directory (created and locked by :meth:`open`)."""

    def __init__(self, root: str | os.PathLike[str], sink_name: str, *, fsync: bool = False) -> None:
        self.base = Path(root).absolute() / sink_key(sink_name)
        self.dir = self.base / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._fsync = fsync
        self._lock_fd: int | None = None

    def open(self) -> list[SpooledBatch]:
        """Create and lock this writer's directory; return the batches to replay, oldest first: those
        it holds from before a :meth:`close`, and those of exited writers (which it adopts). Safe to
        call again while open: it then only adopts directories orphaned since."""
        adopted: list[SpooledBatch] = []
        if self._lock_fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock_fd = fd
            for path in self.files():
                if parsed := _parse_name(path):
                    adopted.append(SpooledBatch(parsed[0], parsed[1], path, _count_rows(path)))
        for other in sorted(self.base.iterdir()):
            if other == self.dir or not other.is_dir():
                continue
            try:
                adopted.extend(self._adopt(other))
            except FileNotFoundError:
                continue  # another writer adopted it first
        adopted.sort(key=lambda b: (b.seq, b.batch_id))
        return adopted

    def _adopt(self, other: Path) -> list[SpooledBatch]:
        if fcntl is None:
            return []
        lock_path = other / _LOCK
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            return []
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return []  # a live writer owns it
            batches: list[SpooledBatch] = []
            for path in other.iterdir():
                if path.name.endswith(_SUFFIX) and (parsed := _parse_name(path)):
                    target = self.dir / path.name
                    os.replace(path, target)
                    batches.append(SpooledBatch(parsed[0], parsed[1], target, _count_rows(target)))
                elif path.name != _LOCK:
                    with contextlib.suppress(OSError):
                        path.unlink()  # a temporary file of a write the crash interrupted
            with contextlib.suppress(OSError):
                lock_path.unlink()
                other.rmdir()
            if batches:
                logger.info("replaying %d request log batches left by an earlier process", len(batches))
            return batches
        finally:
            os.close(fd)

    def write(self, seq: int, batch_id: str, rows: list[LogRow]) -> Path:
        """Write one batch; returns its path (the rename makes it appear whole or not at all)."""
        path = self.dir / f"{seq:020d}-{batch_id}{_SUFFIX}"
        temporary = path.with_name(path.name + ".tmp")
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        with open(temporary, "wb") as file:
            file.write(data)
            if self._fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
        return path

    @staticmethod
    def read(path: Path) -> list[LogRow]:
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    @staticmethod
    def quarantine(path: Path) -> None:
        """Keep an unreadable file for inspection, out of the replay order."""
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".bad"))

    def files(self) -> list[Path]:
        """This writer's spooled batches, oldest first."""
        return sorted(p for p in self.dir.glob(f"*{_SUFFIX}") if _parse_name(p))

    def close(self) -> None:
        """Release the lock; remove the directory when it is empty (else the next writer adopts it)."""
        if self._lock_fd is None:
            return
        empty = not any(p.name != _LOCK for p in self.dir.iterdir())
        if empty:
            with contextlib.suppress(OSError):
                (self.dir / _LOCK).unlink()
                self.dir.rmdir()
        os.close(self._lock_fd)
        self._lock_fd = None


def _count_rows(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0
