"""Qdrant Edge (``qdrant-edge-py``): Qdrant's Rust engine in this process, on a local directory.

Its API is synchronous. A search of a small shard (see :data:`INLINE_POINTS`) and a one-point upsert
run on the event loop when no other call holds the shard; the other calls go to a worker thread, one
at a time (a lock: the shard is one mutable object), and a call that finds the shard busy waits for its
turn on the loop, not in a thread of its own. Every
:data:`INDEX_AFTER` points written, a copy of the shard is indexed in a process of its own and swapped
in (:mod:`.edge_indexer`), so a search walks a graph rather than scanning every point. A
directory can be open in one process only (Qdrant's write-ahead log is locked): with several server
workers, give each its own directory or use a Qdrant server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..kernel.optional import require
from . import edge_indexer
from .edge_indexer import shard_config
from .vector import EXPIRES, SCOPE, TENANT, VectorEntry, VectorMatch, engine_threshold, match_from_payload

#: One keyword of tenant and scope together: a search filters on it alone. Each condition of a filter
#: costs about as much as the vector comparisons themselves (10,000 entries: 0.45 ms with this one,
#: 3.1 ms with tenant, scope and expiry as three), so expiry is checked on the nearest found instead.
PARTITION = "partition"
#: The question and the answer in one field: the question's length, a colon, the question, the answer.
#: Qdrant Edge's binding converts a payload field by trying other types first (about 3 µs a text field),
#: so a point holds only what its filters and its match need: tenant, partition, expiry and this. Points
#: written before hold ``question``, ``answer`` and ``scope`` instead, and are read as they were.
ENTRY = "entry"
#: Partitions a shard may hold and still have them all known (see :meth:`QdrantEdgeStore._learn_partitions`):
#: past this many a search always filters.
KNOWN_PARTITIONS = 256
#: Neighbours fetched beyond ``limit`` when the ``limit`` nearest held one the search turns away (expired,
#: swept every few minutes), so that expired ones rarely leave fewer than ``limit`` to verify.
EXPIRED_MARGIN = 3


def partition(tenant: str, scope: str) -> str:
    return f"{tenant}\x1f{scope}"


#: Threads of a shard's search pool. Qdrant Edge sizes the pool from the CPUs when not told (8 on a
#: 2-core host, each idle for the process's life); the calls here run one at a time over a shard of a
#: few segments, so one thread serves them all.
SEARCH_THREADS = 1

logger = logging.getLogger("asgi_aigw.cache")

#: A search of a shard with at most this many points outside its index runs on the event loop, when no
#: other call holds the shard: it scans them in a few hundred microseconds (about 40 ns a point at 128
#: dimensions), and handing it to the worker thread and back cost more CPU than that (a unique question
#: of the full stack, in process: about 2,200 µs with the hop, 1,500 without). A shard with more is
#: searched in the worker thread, so no single search holds the loop longer than that.
INLINE_POINTS = 10_000
#: Points written since the shard was last indexed that start an index build (:mod:`.edge_indexer`):
#: until the build is swapped in, searches scan them (about 0.2 ms for 5,000).
INDEX_AFTER = 5_000
#: Seconds an index build may take (a million points: a few minutes), and seconds before another
#: build is tried after one failed.
INDEX_TIMEOUT = 1800.0
INDEX_RETRY_SECONDS = 600.0
#: Writes kept while a copy is indexed, replayed on it when it is swapped in; past this many (the shard
#: changes faster than it is indexed) the build is given up and tried again later.
JOURNAL_MAX = 20_000
#: Graph candidates weighed per search: recall@3 of 0.999 against an exact scan on 60,000 clustered
#: vectors, in 146 µs where Qdrant's default (the build's 100) took 381.
SEARCH_EF = 64

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
        #: Set while the shard's files are copied for an index build: searches go on, writes wait
        #: (they would tear the copy), told by ``_settled`` when it is taken.
        self._copying = False
        self._settled = threading.Condition(self._lock)
        self._limiters: dict[int, anyio.CapacityLimiter] = {}
        self._qe: Any = None
        #: Why the last open failed, and until when it is not tried again.
        self._failure: ShardUnavailable | None = None
        self._retry_at = 0.0
        #: Points outside the index (what a search scans), or a few more: a write counts one (an entry
        #: stored again adds none), and the shard is asked for the true figure before it starts a build.
        self._unindexed = 0
        #: Every partition a point of the open shard is in (None: not known, or too many). A search of
        #: the only partition needs no filter: the filter costs as much as the scan itself (a third of a
        #: unique question's CPU at 5,000 points), and a search of a partition not there needs no scan.
        self._partitions: set[str] | None = None
        #: The index build under way (see :meth:`_index`), the writes made since its copy was taken
        #: (None: no copy, or too many), and when a failed build may be tried again.
        self._build: asyncio.Task[None] | None = None
        self._journal: list[tuple[str, tuple[Any, ...]]] | None = None
        self._index_retry_at = 0.0
        #: Index builds swapped in (for tests and logs).
        self.builds = 0

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

    def _open_now(self, dimension: int | None, *, create: bool, tidy: bool = True) -> Any:
        """See :meth:`_open`; ``tidy``: remove what an index build cut short left (not during a swap,
        whose old shard is kept until its writes are replayed)."""
        qe = self._module()
        replaced = _replaced(self.path)
        if not self.path.exists() and replaced.exists():
            replaced.rename(self.path)  # a process stopped in the middle of a swap: the shard as it was
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
                self._count(shard)
                self._learn_partitions(shard)
                if tidy:
                    # what an index build that never ended left (the process stopped): its copy, or the
                    # shard its indexed copy had already replaced
                    shutil.rmtree(_indexing(self.path), ignore_errors=True)
                    shutil.rmtree(replaced, ignore_errors=True)
                return shard
            self._set_aside(size, dimension)
        if dimension is None or not create:
            return None
        self.path.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(str(self.path), shard_config(qe, dimension, self.search_threads))
        # Payload indexes make the tenant/scope/expiry filter an index lookup, not a scan.
        shard.update(qe.UpdateOperation.create_field_index(TENANT, qe.PayloadSchemaType.Keyword))
        # no point written now has a scope of its own (it is in its partition), so this index costs
        # nothing; kept so that every shard, new or written by an earlier version, has the same ones
        shard.update(qe.UpdateOperation.create_field_index(SCOPE, qe.PayloadSchemaType.Keyword))
        shard.update(qe.UpdateOperation.create_field_index(EXPIRES, qe.PayloadSchemaType.Float))
        shard.update(qe.UpdateOperation.create_field_index(PARTITION, qe.PayloadSchemaType.Keyword))
        self._shard = shard
        self._unindexed = 0
        self._partitions = set()
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
        """The configuration to load a shard with: this store's (:func:`.edge_indexer.shard_config`: its
        search threads, its index settings) for a shard of one cosine vector, as the store makes them,
        whatever it was saved with (a shard of an earlier version had neither); None to load any other
        shard as saved."""
        try:
            data = json.loads(saved.read_text(encoding="utf-8"))
            vector = data["vectors"][""]
            size, distance = vector["size"], vector["distance"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # not a shard this store made: loaded as it is
        if data.get("sparse_vectors") or distance != "Cosine" or len(data["vectors"]) != 1:
            return None
        return shard_config(qe, size, self.search_threads)

    def _count(self, shard: Any) -> None:
        info = shard.info()
        self._unindexed = max(0, int(info.points_count) - int(info.indexed_vectors_count))

    def _learn_partitions(self, shard: Any) -> None:
        """Which partitions the shard's points are in (about 6 µs): known only when every point is
        counted in one of at most :data:`KNOWN_PARTITIONS` (a point of an earlier version has none)."""
        qe = self._module()
        hits = shard.facet(qe.FacetRequest(PARTITION, limit=KNOWN_PARTITIONS + 1, exact=True)).hits
        counted = sum(int(hit.count) for hit in hits)
        known = len(hits) <= KNOWN_PARTITIONS and counted == int(shard.info().points_count)
        # a value whose points were all deleted is still listed, with no point
        self._partitions = {str(hit.value) for hit in hits if hit.count} if known else None

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
        self, vector: list[float], tenant: str, scope: str, limit: int, now: float, min_score: float | None
    ) -> list[VectorMatch]:
        with self._lock:
            shard = self._open(len(vector), create=False)
            if shard is None:
                return []
            return self._search_open(shard, vector, tenant, scope, limit, now, min_score)

    def _search_open(
        self,
        shard: Any,
        vector: list[float],
        tenant: str,
        scope: str,
        limit: int,
        now: float,
        min_score: float | None,
    ) -> list[VectorMatch]:
        """:meth:`_search_sync` on the open ``shard``, the lock held."""
        qe = self._module()
        wanted = partition(tenant, scope)
        known = self._partitions
        where = None
        if known is None or len(known) > 1:
            where = qe.Filter(must=[qe.FieldCondition(PARTITION, match=qe.MatchValue(wanted))])
        if known is not None and wanted not in known:
            return []
        # unfiltered, every point is in the partition; its entries are checked below all the same
        params = qe.SearchParams(hnsw_ef=SEARCH_EF)
        floor = float("-inf") if min_score is None else min_score

        def nearest(count: int) -> tuple[list[VectorMatch], bool]:
            """The first ``limit`` live entries among the ``count`` nearest points, and whether there
            were ``count`` points (so maybe more beyond them)."""
            # points under ``min_score`` are left out in the engine: their payloads are never converted
            request = qe.QueryRequest(
                limit=count,
                query=qe.Query.Nearest(vector),
                filter=where,
                with_payload=True,
                params=params,
                score_threshold=engine_threshold(min_score),
            )
            points = shard.query(request)
            out: list[VectorMatch] = []
            for point in points:
                if point.score < floor:
                    break  # nearest first: the rest score under it too
                # each read of ``payload`` converts the whole of it from Rust again (answer included)
                payload = point.payload
                mine = payload.get(PARTITION) == wanted and payload.get(TENANT) == tenant
                if mine and _alive(payload, now):
                    match = _match(point.id, point.score, payload)
                    if match is not None:
                        out.append(match)
                        if len(out) == limit:
                            break
            return out, len(points) == count

        # ``limit`` points first: each point found costs its payload, read and converted, and an entry
        # the check below turns away (expired, and not yet swept) is rare
        found, more = nearest(limit)
        if len(found) < limit and more:
            found, _ = nearest(limit + EXPIRED_MARGIN)
        return found

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The lock, once no copy of the shard is being taken."""
        with self._lock:
            while self._copying:
                self._settled.wait()
            yield

    def _upsert_sync(self, entry: VectorEntry) -> None:
        with self._writing():
            self._upsert_open(self._open(len(entry.vector)), entry)

    def _upsert_open(self, shard: Any, entry: VectorEntry) -> None:
        """:meth:`_upsert_sync` on the open ``shard``, the lock held."""
        where = partition(entry.tenant, entry.scope)
        question = entry.question
        payload = {
            TENANT: entry.tenant,
            PARTITION: where,
            EXPIRES: entry.expires_at,
            ENTRY: f"{len(question)}:{question}{entry.answer}",
        }
        self._write_point(shard, where, self._module().Point(entry.id, entry.vector, payload))

    def _write_point(self, shard: Any, where: str, point: Any) -> None:
        """Write ``point`` of partition ``where`` to the open ``shard``, the lock held."""
        shard.update(self._module().UpdateOperation.upsert_points([point]))
        # at most one point more (an entry stored again replaces its own): counted, not asked (the
        # shard's info costs 7 µs, a tenth of the write), until the count would start an index build
        self._unindexed += 1
        if self._unindexed >= INDEX_AFTER:
            self._count(shard)
        known = self._partitions
        if known is not None and where not in known:
            known.add(where)
            if len(known) > KNOWN_PARTITIONS:
                self._partitions = None
        # the point, not the entry: the binding takes about 20 µs to make one (its payload converted
        # field by field), more than the write, and a swap replays the journal while searches wait
        self._record("write", where, point)

    def _delete_sync(self, tenant: str | None, expired_at: float | None) -> int:
        with self._writing():
            shard = self._open(None)
            if shard is None:
                return 0
            return self._delete_open(shard, tenant, expired_at)

    def _delete_open(self, shard: Any, tenant: str | None, expired_at: float | None) -> int:
        """:meth:`_delete_sync` on the open ``shard``, the lock held."""
        qe = self._module()
        where = self._filter(tenant=tenant, expired_at=expired_at)
        count = int(shard.count(qe.CountRequest(filter=where)))
        if count:
            shard.update(qe.UpdateOperation.delete_points_by_filter(where))
            self._count(shard)
            self._learn_partitions(shard)
            self._record("delete", tenant, expired_at)
        return count

    def _record(self, kind: str, *args: Any) -> None:
        """Keep a write for the copy being indexed, if any (the lock held)."""
        journal = self._journal
        if journal is None:
            return
        if len(journal) >= JOURNAL_MAX:
            self._journal = None  # the build is given up when it ends
            return
        journal.append((kind, args))

    def _close_sync(self) -> None:
        with self._writing():
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
                self._shard = None
                self._unindexed = 0
                self._partitions = None
                self._journal = None

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
        return await self._search(vector, tenant, scope, limit, now, None)

    async def search_above(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float, min_score: float
    ) -> list[VectorMatch]:
        """:meth:`search`, of the entries scoring ``min_score`` or more: a new question's nearest points
        score under it, and their payloads (answers included) are never converted from the engine's."""
        return await self._search(vector, tenant, scope, limit, now, min_score)

    async def _search(
        self, vector: list[float], tenant: str, scope: str, limit: int, now: float, min_score: float | None
    ) -> list[VectorMatch]:
        def run(shard: Any) -> list[VectorMatch]:
            return self._search_open(shard, vector, tenant, scope, limit, now, min_score)

        # a shard of few points outside its index is searched here (see INLINE_POINTS)
        small = self._unindexed <= INLINE_POINTS
        if small and (found := self._inline(run)) is not _BUSY:
            return found  # type: ignore[return-value]
        async with self._calls():
            if small and (found := self._inline(run)) is not _BUSY:
                return found  # type: ignore[return-value]
            return await anyio.to_thread.run_sync(
                self._search_sync, vector, tenant, scope, limit, now, min_score
            )

    async def prepare(self, dimension: int) -> None:
        """Open the shard now (creating it for ``dimension``-long vectors), in the worker thread, rather
        than at the first write (see :class:`~asgi_aigw.cache.vector.VectorStore`)."""

        def run() -> None:
            with self._writing():
                self._open(dimension)

        await anyio.to_thread.run_sync(run, limiter=self._calls())

    def upsert_now(self, entry: VectorEntry) -> bool:
        """Write ``entry`` now, on the event loop, if the shard is open and free (about 60 µs); False
        when the call must wait for its turn (then :meth:`upsert` it)."""
        if self._inline(lambda shard: self._upsert_open(shard, entry), write=True) is _BUSY:
            return False
        self._maybe_index()
        return True

    async def upsert(self, entry: VectorEntry) -> None:
        # one point, written to memory (the write-ahead log and segments are mapped files: about 8 µs,
        # 90 µs at the 99.9th percentile, a few ms when a file grows), where the hop to the worker
        # thread and back cost over 100 µs of CPU
        def run(shard: Any) -> None:
            self._upsert_open(shard, entry)

        if self._inline(run, write=True) is _BUSY:
            async with self._calls():
                if self._inline(run, write=True) is _BUSY:
                    await anyio.to_thread.run_sync(self._upsert_sync, entry)
        self._maybe_index()

    def _inline(self, run: Callable[[Any], object], *, write: bool = False) -> object:
        """``run(shard)`` here, on the event loop, if the shard is open and no other call holds it (nor,
        for a ``write``, is being copied); else :data:`_BUSY`. A call that finds it busy waits for its
        turn on the loop (the worker thread's calls go one at a time), then tries here again: waiting
        in the thread instead, every call behind a busy moment went there too, and held the shard for
        the next ones (seen: upserts queued for 400 ms, and the cache skipping most stores)."""
        shard = self._shard
        if shard is None or not self._lock.acquire(blocking=False):
            return _BUSY
        try:
            if self._shard is not shard or (write and self._copying):
                return _BUSY
            return run(shard)
        finally:
            self._lock.release()

    def _maybe_index(self) -> None:
        """Start an index build once :data:`INDEX_AFTER` points are outside the index (on the loop)."""
        if self._unindexed < INDEX_AFTER or self._build is not None:
            return
        if time.monotonic() < self._index_retry_at:
            return
        self._build = asyncio.get_running_loop().create_task(self._index(), name="aigw-qdrant-edge-index")

    async def delete_expired(self, now: float) -> int:
        return await anyio.to_thread.run_sync(self._delete_sync, None, now, limiter=self._calls())

    async def purge(self, tenant: str | None = None) -> int:
        return await anyio.to_thread.run_sync(self._delete_sync, tenant, None, limiter=self._calls())

    async def aclose(self) -> None:
        build = self._build
        if build is not None and build.get_loop() is asyncio.get_running_loop():
            build.cancel()  # its process is stopped and its copy removed
            await asyncio.wait([build])
        await anyio.to_thread.run_sync(self._close_sync, limiter=self._calls())

    # -- the index build (see edge_indexer) ---------------------------------------------------------

    async def _index(self) -> None:
        """Copy the shard, index the copy in a process of its own, swap it in with the writes made
        meanwhile. A failure leaves the shard as it was, and is tried again :data:`INDEX_RETRY_SECONDS`
        later."""
        copy = _indexing(self.path)
        started = time.monotonic()
        try:
            size = await anyio.to_thread.run_sync(self._copy_for_index, copy, limiter=self._calls())
            if size is not None:
                await _run_indexer(copy, size, self.search_threads)
                if await anyio.to_thread.run_sync(self._swap_in, copy, limiter=self._calls()):
                    self.builds += 1
                    logger.info(
                        "semantic cache: the vectors of %s were indexed in %.1f s",
                        self.path,
                        time.monotonic() - started,
                    )
                elif self._shard is not None:
                    # not closed: more writes came than are kept for the copy (a build started again at
                    # once would be outrun again)
                    raise RuntimeError(f"more than {JOURNAL_MAX} writes were made while it ran")
        except asyncio.CancelledError:
            self._journal = None
            # off the event loop too: the store is closing, and the loop may still be serving
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, copy, True))
            raise
        except Exception as exc:
            self._journal = None
            self._index_retry_at = time.monotonic() + INDEX_RETRY_SECONDS
            logger.warning(
                "semantic cache: indexing the vectors of %s failed (%s); searches scan them meanwhile, "
                "and indexing is tried again in %.0f s",
                self.path,
                exc,
                INDEX_RETRY_SECONDS,
            )
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(copy, ignore_errors=True))
        finally:
            self._build = None

    def _copy_for_index(self, copy: Path) -> int | None:
        """Worker thread: the shard saved and copied to ``copy``, writes journaled from then on; its
        vector size (None: the shard is closed)."""
        with self._writing():
            shard = self._shard
            if shard is None:
                return None
            size = _saved_size(self.path / "edge_config.json")
            if size is None:
                raise RuntimeError("the shard's saved configuration cannot be read")
            shard.flush()
            self._copying = True
        copied = False
        try:
            # without the lock: searches go on meanwhile (27-91 ms at 13,000 points); writes wait
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(self.path, copy, copy_function=copy_sparse)
            copied = True
        finally:
            with self._lock:
                self._copying = False
                if copied:
                    self._journal = []  # the writes waiting for the copy are its first entries
                self._settled.notify_all()
        return size

    def _swap_in(self, copy: Path) -> bool:
        """Worker thread: the indexed ``copy`` in the shard's place, the journaled writes replayed on it;
        False when the build was given up (too many writes, or the shard closed)."""
        with self._lock:
            journal, self._journal = self._journal, None
            if journal is None or self._shard is None:
                shutil.rmtree(copy, ignore_errors=True)
                return False
            replaced = _replaced(self.path)
            shutil.rmtree(replaced, ignore_errors=True)
            self._shard.close()
            self._shard = None
            self.path.rename(replaced)
            copy.rename(self.path)
            try:
                shard = self._open_now(None, create=False, tidy=False)
                for kind, args in journal:
                    if kind == "write":
                        self._write_point(shard, *args)
                    else:
                        self._delete_open(shard, *args)
            except BaseException:
                # back to the shard as it was, the writes included
                if self._shard is not None:
                    self._shard.close()
                    self._shard = None
                shutil.rmtree(self.path, ignore_errors=True)
                replaced.rename(self.path)
                self._open_now(None, create=False)
                raise
        # the shard it replaced, after the lock, which searches wait for: removing its files took 30-40
        # ms at 10,000 points
        shutil.rmtree(replaced, ignore_errors=True)
        return True


async def _run_indexer(copy: Path, size: int, search_threads: int) -> None:
    """Run :mod:`.edge_indexer` on ``copy``; raises when it fails or overruns :data:`INDEX_TIMEOUT`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",  # not the script's own directory on the path: its qdrant_edge.py would hide the engine's
        edge_indexer.__file__,
        str(copy),
        str(size),
        str(search_threads),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), INDEX_TIMEOUT)
    except BaseException:  # cancelled (the store closes) or too slow: the process must not outlive it
        if process.returncode is None:
            process.kill()
            await asyncio.shield(process.wait())
        raise
    if process.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"the indexer exited with {process.returncode}: {last[0]}")


def copy_sparse(source: str, target: str) -> str:
    """:func:`shutil.copy2` that keeps a sparse file's holes. Qdrant Edge's mapped files are mostly
    holes (13,000 points: 31 MB on disk, 157 MB long): copied byte for byte, the indexed copy that
    replaces the shard took five times the disk."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        for start, end in _data_ranges(src.fileno(), size):
            offset = start
            while offset < end:
                copied = os.copy_file_range(src.fileno(), dst.fileno(), end - offset, offset, offset)
                if copied == 0:
                    break
                offset += copied
        dst.truncate(size)  # the hole at the end, if any
    shutil.copystat(source, target)
    return target


def _data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges of ``fd`` that hold data; the whole file where holes cannot be found."""
    ranges: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nothing but a hole from here to the end
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            ranges.append((start, end))
            offset = end
    except OSError:  # a file system that cannot tell its holes
        return [(0, size)]
    return ranges


def _indexing(path: Path) -> Path:
    """Where a shard's copy is indexed."""
    return path.with_name(f"{path.name}.indexing")


def _replaced(path: Path) -> Path:
    """Where a shard is moved while its indexed copy takes its place."""
    return path.with_name(f"{path.name}.replaced")


#: What :meth:`QdrantEdgeStore._inline` returns when the call could not run on the event loop.
_BUSY = object()


def _match(point_id: object, score: float, payload: dict[str, Any]) -> VectorMatch | None:
    """The entry a point holds (see :data:`ENTRY`), or None if it holds none."""
    entry = payload.get(ENTRY)
    if entry is None:
        return match_from_payload(point_id, score, payload)
    if not isinstance(entry, str):
        return None
    colon = entry.find(":")
    size = entry[:colon]
    if colon < 1 or not (size.isascii() and size.isdigit()) or colon + 1 + int(size) > len(entry):
        return None
    end = colon + 1 + int(size)
    return VectorMatch(str(point_id), float(score), entry[colon + 1 : end], entry[end:])


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
