"""Qdrant Edge (``qdrant-edge-py``): Qdrant's Rust engine in this process, on a local directory.

Its API is synchronous, so its calls go to a worker thread, one at a time (a lock: the shard is one
mutable object; the calls of an event loop wait for their turn on the loop, not each in a thread),
except a search of a small shard, which runs on the event loop (see :data:`INLINE_POINTS`). A
directory can be open in one process only (Qdrant's write-ahead log is locked): with several server
workers, give each its own directory or use a Qdrant server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..kernel.optional import require
from .vector import EXPIRES, SCOPE, TENANT, VectorEntry, VectorMatch, match_from_payload

#: One keyword of tenant and scope together: a search filters on it alone. Each condition of a filter
#: costs about as much as the vector comparisons themselves (10,000 entries: 0.45 ms with this one,
#: 3.1 ms with tenant, scope and expiry as three), so expiry is checked on the nearest found instead.
PARTITION = "partition"
#: Neighbours fetched beyond ``limit``, so that expired ones (swept every few minutes) rarely leave
#: fewer than ``limit`` to verify.
EXPIRED_MARGIN = 3


def partition(tenant: str, scope: str) -> str:
    return f"{tenant}\x1f{scope}"


#: Threads of a shard's search pool. Qdrant Edge sizes the pool from the CPUs when not told (8 on a
#: 2-core host, each idle for the process's life); the calls here run one at a time over a shard of a
#: few segments, so one thread serves them all.
SEARCH_THREADS = 1

logger = logging.getLogger("asgi_aigw.cache")

#: A search of a shard of at most this many points runs on the event loop, when no other call holds
#: the shard: it scans them in a few hundred microseconds (about 40 ns a point at 128 dimensions),
#: and handing it to the worker thread and back cost more CPU than that (a unique question of the full
#: stack, in process: about 2,200 µs with the hop, 1,500 without). A larger shard is searched in the
#: worker thread, so no single search holds the loop longer than that.
INLINE_POINTS = 10_000

#: Seconds a shard that failed to open is not tried again: each try reads the shard before failing on
#: its lock (about 60 ms of CPU), which every lookup would pay while another process holds it.
RETRY_OPEN_SECONDS = 30.0


class ShardUnavailable(RuntimeError):
    """The shard cannot be opened (another process holds its directory, or it is damaged)."""


class QdrantEdgeStore:
    def __init__(self, path: str | Path, *, search_threads: int = SEARCH_THREADS) -> None:
        self.path = Path(path)
        self.search_threads = search_threads
        self._shard: Any = None
        self._lock = threading.Lock()
        self._limiters: dict[int, anyio.CapacityLimiter] = {}
        self._qe: Any = None
        #: Why the last open failed, and until when it is not tried again.
        self._failure: ShardUnavailable | None = None
        self._retry_at = 0.0
        #: The shard's points, at most (counted when opened and after a delete; every upsert adds one).
        self._points = 0

    def _module(self) -> Any:
        if self._qe is None:
            self._qe = require("qdrant_edge", "qdrant")
        return self._qe

    def _open(self, dimension: int | None, *, create: bool = True) -> Any:
        """The shard, loaded from ``path`` or created there with ``dimension`` (None: load only). A
        shard of vectors of another size was made by another embedder: it is set aside, not mixed in."""
        if self._shard is not None:
            return self._shard
        if self._failure is not None and time.monotonic() < self._retry_at:
            raise self._failure
        try:
            return self._open_now(dimension, create=create)
        except Exception as exc:
            self._failure = ShardUnavailable(
                f"Qdrant Edge cannot open {self.path} ({exc}); a directory serves one process at a time: "
                "give each process its own (cache.vector_store) or use a Qdrant server. Tried again in "
                f"{RETRY_OPEN_SECONDS:.0f} s."
            )
            self._retry_at = time.monotonic() + RETRY_OPEN_SECONDS
            raise self._failure from exc

    def _open_now(self, dimension: int | None, *, create: bool) -> Any:
        qe = self._module()
        saved = self.path / "edge_config.json"
        if saved.exists():
            size = _saved_size(saved)
            if dimension is None or size is None or size == dimension:
                shard = qe.EdgeShard.load(str(self.path), self._sized(qe, saved))
                if PARTITION not in shard.info().payload_schema:
                    # a shard of an earlier version: its entries lack the field and age out unseen
                    shard.update(
                        qe.UpdateOperation.create_field_index(PARTITION, qe.PayloadSchemaType.Keyword)
                    )
                self._shard = shard
                self._points = int(shard.info().points_count)
                return shard
            self._set_aside(size, dimension)
        if dimension is None or not create:
            return None
        self.path.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine),
            max_search_threads=self.search_threads,
        )
        shard = qe.EdgeShard.create(str(self.path), config)
        # Payload indexes make the tenant/scope/expiry filter an index lookup, not a scan.
        shard.update(qe.UpdateOperation.create_field_index(TENANT, qe.PayloadSchemaType.Keyword))
        shard.update(qe.UpdateOperation.create_field_index(SCOPE, qe.PayloadSchemaType.Keyword))
        shard.update(qe.UpdateOperation.create_field_index(EXPIRES, qe.PayloadSchemaType.Float))
        shard.update(qe.UpdateOperation.create_field_index(PARTITION, qe.PayloadSchemaType.Keyword))
        self._shard = shard
        self._points = 0
        return shard

    def _set_aside(self, size: int, dimension: int) -> None:
        """Rename the shard of ``size``-long vectors beside its path (its answers are not lost: moving
        it back with the embedder that made it serves them again)."""
        aside = self.path.with_name(f"{self.path.name}.{size}d-{int(time.time())}")
        self.path.rename(aside)
        logger.warning(
            "semantic cache: %s holds vectors of %d dimensions but the embedder gives %d (another "
            "embedder made them); it was moved to %s and a new vector store starts empty",
            self.path,
            size,
            dimension,
            aside,
        )

    def _sized(self, qe: Any, saved: Path) -> Any:
        """The configuration to load a shard with: its own, with this store's search threads when it
        was saved with others (or none: a shard made before they were set); None to load it as saved."""
        try:
            data = json.loads(saved.read_text(encoding="utf-8"))
            vector = data["vectors"][""]
            size, distance = vector["size"], vector["distance"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not a shard this store made: loaded as it is
        if data.get("max_search_threads") == self.search_threads or data.get("sparse_vectors"):
            return None
        if distance != "Cosine" or len(data["vectors"]) != 1:
            return None
        vectors = qe.EdgeVectorParams(size=size, distance=qe.Distance.Cosine)
        return qe.EdgeConfig(vectors=vectors, max_search_threads=self.search_threads)

    def _filter(
        self,
        *,
        tenant: str | None,
        expired_at: float | None = None,
    ) -> Any:
        qe = self._module()
        must: list[Any] = []
        if tenant is not None:
            must.append(qe.FieldCondition(TENANT, match=qe.MatchValue(tenant)))
        if expired_at is not None:
            must.append(qe.FieldCondition(EXPIRES, range=qe.RangeFloat(lte=expired_at)))
        return qe.Filter(must=must)

    # -- synchronous bodies, run in a worker thread -----------------------------------------------

    def _search_sync(
        self, vector: list[float], tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        with self._lock:
            shard = self._open(len(vector), create=False)
            if shard is None:
                return []
            return self._search_open(shard, vector, tenant, scope, limit, now)

    def _search_open(
        self, shard: Any, vector: list[float], tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        """:meth:`_search_sync` on the open ``shard``, the lock held."""
        qe = self._module()
        where = qe.Filter(must=[qe.FieldCondition(PARTITION, match=qe.MatchValue(partition(tenant, scope)))])
        request = qe.QueryRequest(
            limit=limit + EXPIRED_MARGIN, query=qe.Query.Nearest(vector), filter=where, with_payload=True
        )
        points = shard.query(request)
        out = [
            match_from_payload(p.id, p.score, p.payload)
            for p in points
            if _alive(p.payload, now) and p.payload.get(TENANT) == tenant and p.payload.get(SCOPE) == scope
        ]
        return [m for m in out if m is not None][:limit]

    def _upsert_sync(self, entry: VectorEntry) -> None:
        with self._lock:
            self._upsert_open(self._open(len(entry.vector)), entry)

    def _upsert_open(self, shard: Any, entry: VectorEntry) -> None:
        """:meth:`_upsert_sync` on the open ``shard``, the lock held."""
        qe = self._module()
        payload = entry.payload() | {PARTITION: partition(entry.tenant, entry.scope)}
        shard.update(qe.UpdateOperation.upsert_points([qe.Point(entry.id, entry.vector, payload)]))
        self._points += 1

    def _delete_sync(self, tenant: str | None, expired_at: float | None) -> int:
        with self._lock:
            shard = self._open(None)
            if shard is None:
                return 0
            qe = self._module()
            where = self._filter(tenant=tenant, expired_at=expired_at)
            count = int(shard.count(qe.CountRequest(filter=where)))
            if count:
                shard.update(qe.UpdateOperation.delete_points_by_filter(where))
                self._points = int(shard.info().points_count)
            return count

    def _close_sync(self) -> None:
        with self._lock:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None
                self._points = 0

    def _calls(self) -> anyio.CapacityLimiter:
        """One worker thread at a time per event loop: the calls run one at a time anyway (the lock),
        and a call waiting for it in a thread of its own held that thread (13 threads for 16
        concurrent requests); now it waits on the event loop."""
        loop = id(asyncio.get_running_loop())
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(1)
        return limiter

    # -- the protocol -------------------------------------------------------------------------------

    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        shard = self._shard
        if shard is not None and self._points <= INLINE_POINTS and self._lock.acquire(blocking=False):
            # a small shard nobody else is using: searched here (see INLINE_POINTS); a call holding
            # the lock (an upsert, a sweep, a close) is waited for in the worker thread, never here
            try:
                if self._shard is shard:
                    return self._search_open(shard, vector, tenant, scope, limit, now)
            finally:
                self._lock.release()
        return await anyio.to_thread.run_sync(
            self._search_sync, vector, tenant, scope, limit, now, limiter=self._calls()
        )

    async def upsert(self, entry: VectorEntry) -> None:
        shard = self._shard
        if shard is not None and self._lock.acquire(blocking=False):
            # one point, written to memory (the write-ahead log and segments are mapped files: about
            # 8 µs, 90 µs at the 99.9th percentile, a few ms when a file grows), where the hop to the
            # worker thread and back cost over 100 µs of CPU; a busy shard is waited for in the thread
            try:
                if self._shard is shard:
                    self._upsert_open(shard, entry)
                    return
            finally:
                self._lock.release()
        await anyio.to_thread.run_sync(self._upsert_sync, entry, limiter=self._calls())

    async def delete_expired(self, now: float) -> int:
        return await anyio.to_thread.run_sync(self._delete_sync, None, now, limiter=self._calls())

    async def purge(self, tenant: str | None = None) -> int:
        return await anyio.to_thread.run_sync(self._delete_sync, tenant, None, limiter=self._calls())

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close_sync, limiter=self._calls())


def _alive(payload: dict[str, Any] | None, now: float) -> bool:
    expires = (payload or {}).get(EXPIRES)
    return isinstance(expires, (int, float)) and expires > now


def _saved_size(saved: Path) -> int | None:
    """The vector size a shard was created with, from its saved configuration (None: unreadable)."""
    try:
        size = json.loads(saved.read_text(encoding="utf-8"))["vectors"][""]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) else None


def open_store(url: str, **_: object) -> QdrantEdgeStore:
    """``qdrant-edge://PATH``: Qdrant's engine in this process, its data under PATH."""
    return QdrantEdgeStore(Path(url[len("qdrant-edge://") :] or ".aigw/cache-vectors"))
