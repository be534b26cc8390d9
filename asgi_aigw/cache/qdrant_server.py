"""A Qdrant server through qdrant-client's async client (also its local mode, for tests).

Over HTTPS the server's certificate is verified against the system's authorities; the URL's query may
name a private one (``?ca_cert=/path/ca.pem``) or turn verification off (``?verify=false``). Any other
option is refused: qdrant-client would drop it silently.

Local mode (``location=":memory:"`` or ``path=``) evaluates filters in Python and runs on the event loop
(about 20 ms per filtered query at 1k points, 200 ms at 10k): use it to test, not to serve.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from typing import Any
from urllib.parse import parse_qs

from ..kernel.errors import ConfigError
from ..kernel.optional import require
from ..kernel.url_text import hide_password, url_flag
from .vector import EXPIRES, SCOPE, TENANT, VectorEntry, VectorMatch, engine_threshold, match_from_payload


class QdrantServerStore:
    def __init__(
        self,
        *,
        url: str | None = None,
        location: str | None = None,
        path: str | None = None,
        collection: str = "aigw_cache",
        api_key: str | None = None,
        client: Any = None,
        verify: ssl.SSLContext | bool | None = None,
    ) -> None:
        self.collection = collection
        self._options: dict[str, Any] = {
            "url": url,
            "location": location,
            "path": path,
            "api_key": api_key,
            # qdrant-client hands it to its HTTP client: an SSL context, or False for no verification
            "verify": verify,
        }
        self._client: Any = client
        self._ready = False
        self._lock = asyncio.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            qdrant_client = require("qdrant_client", "qdrant")
            options = {k: v for k, v in self._options.items() if v is not None}
            self._client = qdrant_client.AsyncQdrantClient(**options)
        return self._client

    @staticmethod
    def _models() -> Any:
        return require("qdrant_client.models", "qdrant")

    async def _ensure(self, dimension: int | None) -> bool:
        """Create the collection and its payload indexes on first use; False if absent and not creatable."""
        if self._ready:
            return True
        async with self._lock:
            if self._ready:
                return True
            if await self.client.collection_exists(self.collection):
                self._ready = True
                return True
            if dimension is None:
                return False
            models = self._models()
            await self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            )
            for field, schema in (
                (TENANT, models.PayloadSchemaType.KEYWORD),
                (SCOPE, models.PayloadSchemaType.KEYWORD),
                (EXPIRES, models.PayloadSchemaType.FLOAT),
            ):
                with warnings.catch_warnings():
                    # local mode warns that it ignores payload indexes; a server builds them
                    warnings.simplefilter("ignore", UserWarning)
                    await self.client.create_payload_index(self.collection, field, field_schema=schema)
            self._ready = True
            return True

    def _filter(
        self,
        *,
        tenant: str | None,
        scope: str | None = None,
        alive_at: float | None = None,
        expired_at: float | None = None,
    ) -> Any:
        models = self._models()
        must: list[Any] = []
        if tenant is not None:
            must.append(models.FieldCondition(key=TENANT, match=models.MatchValue(value=tenant)))
        if scope is not None:
            must.append(models.FieldCondition(key=SCOPE, match=models.MatchValue(value=scope)))
        if alive_at is not None:
            must.append(models.FieldCondition(key=EXPIRES, range=models.Range(gt=alive_at)))
        if expired_at is not None:
            must.append(models.FieldCondition(key=EXPIRES, range=models.Range(lte=expired_at)))
        return models.Filter(must=must)

    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[VectorMatch]:
        return await self._search(vector, tenant, scope, limit, now, None)

    async def search_above(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float, min_score: float
    ) -> list[VectorMatch]:
        """:meth:`search`, of the entries scoring ``min_score`` or more (the server leaves out the
        others: their payloads are not sent)."""
        return await self._search(vector, tenant, scope, limit, now, min_score)

    async def _search(
        self, vector: list[float], tenant: str, scope: str, limit: int, now: float, min_score: float | None
    ) -> list[VectorMatch]:
        if not await self._ensure(None):
            return []
        response = await self.client.query_points(
            self.collection,
            query=vector,
            query_filter=self._filter(tenant=tenant, scope=scope, alive_at=now),
            limit=limit,
            with_payload=True,
            score_threshold=engine_threshold(min_score),
        )
        floor = float("-inf") if min_score is None else min_score
        out = [match_from_payload(p.id, p.score, p.payload) for p in response.points if p.score >= floor]
        return [m for m in out if m is not None]

    async def upsert(self, entry: VectorEntry) -> None:
        await self._ensure(len(entry.vector))
        models = self._models()
        await self.client.upsert(
            self.collection,
            points=[models.PointStruct(id=entry.id, vector=entry.vector, payload=entry.payload())],
        )

    async def _delete(self, where: Any) -> int:
        if not await self._ensure(None):
            return 0
        models = self._models()
        count = (await self.client.count(self.collection, count_filter=where, exact=True)).count
        if count:
            await self.client.delete(self.collection, points_selector=models.FilterSelector(filter=where))
        return int(count)

    async def delete_expired(self, now: float) -> int:
        return await self._delete(self._filter(tenant=None, expired_at=now))

    async def purge(self, tenant: str | None = None) -> int:
        return await self._delete(self._filter(tenant=tenant))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._ready = False


def open_store(
    url: str, *, collection: str = "aigw_cache", api_key: str | None = None, **_: object
) -> QdrantServerStore:
    """``qdrant+http(s)://HOST:PORT`` (a Qdrant server) or ``qdrant+local://PATH`` /
    ``qdrant+local://:memory:`` (qdrant-client's local mode, for tests)."""
    if url.startswith("qdrant+local://"):
        location = url[len("qdrant+local://") :] or ":memory:"
        if location == ":memory:":
            return QdrantServerStore(location=":memory:", collection=collection)
        return QdrantServerStore(path=location, collection=collection)
    target, verify = server_target(url)
    return QdrantServerStore(url=target, collection=collection, api_key=api_key, verify=verify)


def server_target(url: str) -> tuple[str, ssl.SSLContext | bool | None]:
    """A ``qdrant+http(s)://`` URL's server URL for qdrant-client, and how to verify its certificate
    (``None``: as the system's authorities say); a :class:`ConfigError` for an option it does not take
    (also ``VECTOR_STORES``' check of the URL, when the configuration is read)."""
    target, _, query_text = url[len("qdrant+") :].partition("?")
    query = {name: values[-1] for name, values in parse_qs(query_text).items()}
    shown = hide_password(url)
    unknown = sorted(set(query) - {"ca_cert", "verify"})
    if unknown:
        raise ConfigError(
            f"The vector store URL {shown!r} has an unknown option {unknown[0]!r}: it takes ca_cert, verify."
        )
    if query and not target.startswith("https://"):
        raise ConfigError(f"ca_cert and verify in the vector store URL {shown!r} need qdrant+https:// (TLS).")
    verify = url_flag(query.get("verify", "true"))
    if verify is None:
        raise ConfigError(f"verify in the vector store URL {shown!r} must be true or false.")
    if not verify:
        return target, False
    if "ca_cert" in query:
        try:
            return target, ssl.create_default_context(cafile=query["ca_cert"])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ca_cert in the vector store URL {shown!r} cannot be read: {exc}.") from None
    return target, None
