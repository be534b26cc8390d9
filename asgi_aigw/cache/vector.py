"""The semantic layer's stores: nearest questions by cosine, filtered by tenant, scope and expiry.

Three implementations share :class:`VectorStore`: :class:`MemoryVectorStore` (this module),
:class:`~.qdrant_edge.QdrantEdgeStore` (Qdrant's engine in process, the embedded default) and
:class:`~.qdrant_server.QdrantServerStore` (a Qdrant server through qdrant-client, or its local mode).
Each creates its collection on first use with the dimension of the first vector it sees.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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
    return str(uuid.UUID(hex=hashlib.sha256(exact_key.encode()).hexdigest()[:32]))


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
        """Up to ``limit`` unexpired entries of ``tenant`` and ``scope``, nearest first."""
        ...

    async def upsert(self, entry: VectorEntry) -> None: ...

    async def delete_expired(self, now: float) -> int:
        """Remove entries expired before ``now``; how many (or -1 when the store cannot tell)."""
        ...

    async def purge(self, tenant: str | None = None) -> int:
        """Remove every entry (of one tenant tag when given); how many (or -1 when unknown)."""
        ...

    async def aclose(self) -> None: ...


class MemoryVectorStore:
    """Vectors in a dict keyed by (tenant, scope): exact cosine over the few entries of one scope. At
    most ``max_entries`` in all (the cache's ``max_entries``, as for the memory exact layer): past it
    the oldest stored go first, so a stream of new questions cannot grow the process without end."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._scopes: dict[tuple[str, str], dict[str, VectorEntry]] = {}
        #: (tenant, scope, id) in the order stored, oldest first
        self._order: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        entries = self._scopes.get((tenant, scope))
        if not entries:
            return []
        query = _unit(vector)
        scored = [
            (sum(a * b for a, b in zip(query, _unit(entry.vector), strict=True)), entry)
            for entry in entries.values()
            if entry.expires_at > now
        ]
        scored.sort(key=lambda item: item[0], reverse=True)
        return [VectorMatch(e.id, score, e.question, e.answer) for score, e in scored[:limit]]

    async def upsert(self, entry: VectorEntry) -> None:
        self._scopes.setdefault((entry.tenant, entry.scope), {})[entry.id] = entry
        place = (entry.tenant, entry.scope, entry.id)
        self._order[place] = None
        self._order.move_to_end(place)
        while len(self._order) > self.max_entries:
            tenant, scope, entry_id = self._order.popitem(last=False)[0]
            self._drop((tenant, scope), entry_id)

    def _drop(self, key: tuple[str, str], entry_id: str) -> None:
        entries = self._scopes.get(key)
        if entries is not None:
            entries.pop(entry_id, None)
            if not entries:
                del self._scopes[key]

    async def delete_expired(self, now: float) -> int:
        count = 0
        for key in list(self._scopes):
            entries = self._scopes[key]
            for entry_id in [i for i, e in entries.items() if e.expires_at <= now]:
                del entries[entry_id]
                self._order.pop((*key, entry_id), None)
                count += 1
            if not entries:
                del self._scopes[key]
        return count

    async def purge(self, tenant: str | None = None) -> int:
        doomed = [k for k in self._scopes if tenant is None or k[0] == tenant]
        count = sum(len(self._scopes[k]) for k in doomed)
        for key in doomed:
            for entry_id in self._scopes.pop(key):
                self._order.pop((*key, entry_id), None)
        return count

    async def aclose(self) -> None:
        return None


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def open_memory_store(url: str, *, max_entries: int = 10_000, **_: object) -> MemoryVectorStore:
    """``memory://``: vectors in a dict, for tests (registered in :mod:`asgi_aigw.stores.registry`)."""
    return MemoryVectorStore(max_entries)
