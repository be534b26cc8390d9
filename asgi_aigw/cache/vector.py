"""The semantic layer's stores: nearest questions by cosine, filtered by tenant, scope and expiry.

Three implementations share :class:`VectorStore`: :class:`MemoryVectorStore` (this module),
:class:`~.qdrant_edge.QdrantEdgeStore` (Qdrant's engine in process, the embedded default) and
:class:`~.qdrant_server.QdrantServerStore` (a Qdrant server through qdrant-client, or its local mode).
Each creates its collection on first use with the dimension of the first vector it sees.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..kernel.optional import require

#: Payload fields. ``tenant`` holds the tenant's tag (see :func:`.keys.tenant_tag`), never the raw id.
TENANT, SCOPE, EXPIRES, QUESTION, ANSWER = "tenant", "scope", "expires_at", "question", "answer"


@dataclass(frozen=True, slots=True)
class VectorEntry:
    id: str
    vector: list[float]
    tenant: str
    scope: str
    #: Wall-clock seconds since the epoch.
    expires_at: float
    question: str
    answer: str

    def payload(self) -> dict[str, object]:
        return {
            TENANT: self.tenant,
            SCOPE: self.scope,
            EXPIRES: self.expires_at,
            QUESTION: self.question,
            ANSWER: self.answer,
        }


@dataclass(frozen=True, slots=True)
class VectorMatch:
    id: str
    score: float
    question: str
    answer: str


def point_id(exact_key: str) -> str:
    """A UUID derived from the exact key: storing the same request again replaces its point."""
    digest = hashlib.sha256(exact_key.encode()).hexdigest()
    # what str(uuid.UUID(hex=digest[:32])) writes, without building the UUID
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


#: How far under ``min_score`` a ``search_above`` asks a Qdrant engine to go: Qdrant keeps only scores
#: strictly above its ``score_threshold``, compared in float32, where the cache counts a score equal to
#: its threshold as reaching it. The store then drops what scores under ``min_score`` itself.
SCORE_SLACK = 1e-6


def engine_threshold(min_score: float | None) -> float | None:
    """The ``score_threshold`` to give Qdrant for ``min_score`` (see :data:`SCORE_SLACK`)."""
    return None if min_score is None else min_score - SCORE_SLACK


def match_from_payload(
    point_id: object, score: float, payload: dict[str, object] | None
) -> VectorMatch | None:
    if not payload:
        return None
    question, answer = payload.get(QUESTION), payload.get(ANSWER)
    if not isinstance(question, str) or not isinstance(answer, str):
        return None
    return VectorMatch(str(point_id), float(score), question, answer)


@runtime_checkable
class VectorStore(Protocol):
    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        """Up to ``limit`` unexpired entries of ``tenant`` and ``scope``, nearest first. A store that can
        leave out the points scoring under a threshold before it reads them may also offer
        ``search_above(vector, *, tenant, scope, limit, now, min_score)``, the same search of the entries
        scoring ``min_score`` or more: the cache then asks only for entries close enough to answer (a
        new question's nearest are not, and their payloads are never read)."""
        ...

    async def upsert(self, entry: VectorEntry) -> None:
        """Add ``entry`` (replacing the entry of its id). A store that can often write at once may also
        offer ``upsert_now(entry) -> bool``: written on the caller's thread, or False when it must wait
        (then ``upsert`` is awaited); the cache then stores without a task of its own. A store slow to
        open may offer ``async prepare(dimension)``, which the cache awaits at startup once its embedder
        has loaded."""
        ...

    async def delete_expired(self, now: float) -> int:
        """Remove entries expired before ``now``; how many (or -1 when the store cannot tell)."""
        ...

    async def purge(self, tenant: str | None = None) -> int:
        """Remove every entry (of one tenant tag when given); how many (or -1 when unknown)."""
        ...

    async def aclose(self) -> None: ...


class _Scope:
    """One (tenant, scope)'s entries, their unit vectors the rows of one matrix (grown by doubling), so
    that a search is one matrix-vector product rather than a Python loop over every entry."""

    def __init__(self, np: Any, dimension: int) -> None:
        self.np = np
        self.entries: list[VectorEntry] = []
        self.rows: dict[str, int] = {}
        self.matrix = np.empty((8, dimension), dtype=np.float32)
        self.expires = np.empty(8, dtype=np.float64)

    def put(self, entry: VectorEntry) -> None:
        vector = self.np.asarray(entry.vector, dtype=self.np.float32)
        if vector.shape != (self.matrix.shape[1],):
            raise ValueError(f"a vector of {vector.size} dimensions in a store of {self.matrix.shape[1]}")
        norm = float(self.np.linalg.norm(vector)) or 1.0
        row = self.rows.get(entry.id)
        if row is None:
            row = len(self.entries)
            if row == len(self.matrix):
                self.matrix = self.np.concatenate([self.matrix, self.np.empty_like(self.matrix)])
                self.expires = self.np.concatenate([self.expires, self.np.empty_like(self.expires)])
            self.entries.append(entry)
            self.rows[entry.id] = row
        else:
            self.entries[row] = entry
        self.matrix[row] = vector / norm
        self.expires[row] = entry.expires_at

    def drop(self, entry_id: str) -> None:
        row = self.rows.pop(entry_id, None)
        if row is None:
            return
        last = len(self.entries) - 1
        if row != last:  # the last row takes the dropped one's place
            moved = self.entries[last]
            self.entries[row] = moved
            self.rows[moved.id] = row
            self.matrix[row] = self.matrix[last]
            self.expires[row] = self.expires[last]
        self.entries.pop()

    def search(self, vector: list[float], limit: int, now: float) -> list[VectorMatch]:
        np = self.np
        count = len(self.entries)
        query = np.asarray(vector, dtype=np.float32)
        query /= float(np.linalg.norm(query)) or 1.0
        scores = self.matrix[:count] @ query
        scores[self.expires[:count] <= now] = -np.inf
        if count > limit:  # the best ``limit`` without sorting every score
            top = np.argpartition(-scores, limit - 1)[:limit]
            best = top[np.argsort(-scores[top], kind="stable")]
        else:
            best = np.argsort(-scores, kind="stable")
        return [
            VectorMatch(
                self.entries[i].id, float(scores[i]), self.entries[i].question, self.entries[i].answer
            )
            for i in best
            if scores[i] != -np.inf
        ]


class MemoryVectorStore:
    """Vectors in this process, per (tenant, scope): one matrix of unit vectors each, so a search is one
    matrix-vector product (numpy, imported on first use). At most ``max_entries`` in all (the cache's
    ``max_entries``, as for the memory exact layer): past it the oldest stored go first, so a stream of
    new questions cannot grow the process without end."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._scopes: dict[tuple[str, str], _Scope] = {}
        #: (tenant, scope, id) in the order stored, oldest first
        self._order: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._np: Any = None

    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        entries = self._scopes.get((tenant, scope))
        if entries is None:
            return []
        return entries.search(vector, limit, now)

    async def search_above(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float, min_score: float
    ) -> list[VectorMatch]:
        """:meth:`search`, of the entries scoring ``min_score`` or more."""
        found = await self.search(vector, tenant=tenant, scope=scope, limit=limit, now=now)
        return [match for match in found if match.score >= min_score]

    async def upsert(self, entry: VectorEntry) -> None:
        key = (entry.tenant, entry.scope)
        entries = self._scopes.get(key)
        if entries is None:
            if self._np is None:
                self._np = require("numpy", "embed")
            entries = self._scopes[key] = _Scope(self._np, len(entry.vector))
        entries.put(entry)
        place = (entry.tenant, entry.scope, entry.id)
        self._order[place] = None
        self._order.move_to_end(place)
        while len(self._order) > self.max_entries:
            tenant, scope, entry_id = self._order.popitem(last=False)[0]
            self._drop((tenant, scope), entry_id)

    def _drop(self, key: tuple[str, str], entry_id: str) -> None:
        entries = self._scopes.get(key)
        if entries is not None:
            entries.drop(entry_id)
            if not entries.entries:
                del self._scopes[key]

    async def delete_expired(self, now: float) -> int:
        count = 0
        for key in list(self._scopes):
            for entry in [e for e in self._scopes[key].entries if e.expires_at <= now]:
                self._drop(key, entry.id)
                self._order.pop((*key, entry.id), None)
                count += 1
        return count

    async def purge(self, tenant: str | None = None) -> int:
        doomed = [k for k in self._scopes if tenant is None or k[0] == tenant]
        count = 0
        for key in doomed:
            for entry in self._scopes.pop(key).entries:
                self._order.pop((*key, entry.id), None)
                count += 1
        return count

    async def aclose(self) -> None:
        return None


def open_memory_store(url: str, *, max_entries: int = 10_000, **_: object) -> MemoryVectorStore:
    """``memory://``: vectors in this process, one matrix per scope (registered in
    :mod:`asgi_aigw.stores.registry`)."""
    return MemoryVectorStore(max_entries)
