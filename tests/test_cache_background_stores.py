"""The semantic store (embedding, upsert) runs after the answer has gone, bounded: under overload the
cache leaves answers out of its semantic layer rather than slowing answers, and counts them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from asgi_aigw.cache import CacheConfig
from asgi_aigw.cache.qdrant_edge import QdrantEdgeStore
from asgi_aigw.cache.vector import MemoryVectorStore, VectorEntry
from asgi_aigw.kernel.context import RequestContext
from asgi_aigw.logs.config import MetricsConfig
from asgi_aigw.logs.metrics import GatewayMetrics
from asgi_aigw.testing import FakeProvider

from .cache_support import PARAPHRASE, QUESTION, cache_stack, chat, post

NO_CACHE = {"cache-control": "no-cache"}


class HeldVectorStore(MemoryVectorStore):
    """A memory vector store whose upserts wait until ``release`` is set (a slow Qdrant)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.upserts_started = 0

    async def upsert(self, entry: VectorEntry) -> None:
        self.upserts_started += 1
        await self.release.wait()
        await super().upsert(entry)


async def test_the_answer_does_not_wait_for_the_semantic_store() -> None:
    store = HeldVectorStore()
    app, cache = cache_stack(FakeProvider(), vector=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        # the upsert is held: the request must end all the same
        first = await asyncio.wait_for(post(client, chat(QUESTION)), timeout=5)
        assert first.headers["x-aigw-cache"] == "miss"
        assert store.upserts_started == 1
        # the exact entry was written before the request ended
        again = await asyncio.wait_for(post(client, chat(QUESTION)), timeout=5)
        assert again.headers["x-aigw-cache"] == "hit-exact"
        # a lookup reads the stores started before it: once the upsert goes through, the paraphrase hits
        store.release.set()
        paraphrase = await asyncio.wait_for(post(client, chat(PARAPHRASE)), timeout=5)
        assert paraphrase.headers["x-aigw-cache"] == "hit-semantic"
    await cache.aclose()


async def test_overload_skips_semantic_stores_and_counts_them() -> None:
    store = HeldVectorStore()
    app, cache = cache_stack(FakeProvider(), config=CacheConfig(max_pending_stores=1), vector=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        held = await asyncio.wait_for(post(client, chat(QUESTION), **NO_CACHE), timeout=5)
        other = "Which port does PostgreSQL listen on?"
        skipped = await asyncio.wait_for(post(client, chat(other), **NO_CACHE), timeout=5)
        assert [held.status_code, skipped.status_code] == [200, 200]
        assert cache.stores_skipped == 1
        assert store.upserts_started == 1
        store.release.set()
        await cache.drain()
        # the first answer reached the semantic layer, the skipped one only its exact entry
        assert (await post(client, chat(PARAPHRASE))).headers["x-aigw-cache"] == "hit-semantic"
        assert (await post(client, chat(other))).headers["x-aigw-cache"] == "hit-exact"
        near = await post(client, chat("What port does PostgreSQL listen on?"))
        assert near.headers["x-aigw-cache"] == "miss"
    await cache.aclose()


def test_skipped_stores_are_a_metric() -> None:
    metrics = GatewayMetrics.from_config(MetricsConfig())
    skipped, stored = RequestContext(), RequestContext()
    skipped.cache_store_skipped = True
    for ctx in (skipped, stored, skipped):
        metrics.observe(ctx)
    text, _ = metrics.render()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }
    assert values["aigw_cache_stores_skipped_total"] == 2.0


async def test_an_embedded_store_free_at_once_is_written_in_place_and_a_busy_one_by_a_task(
    tmp_path: Path,
) -> None:
    # Qdrant Edge writes a point in tens of microseconds when nothing holds its shard: the answer's
    # semantic entry is written there and then, after the answer, not in a task of its own
    store = QdrantEdgeStore(tmp_path / "edge")
    awaited: list[str] = []
    upsert = store.upsert

    async def counted(entry: VectorEntry) -> None:
        awaited.append(entry.question)
        await upsert(entry)

    store.upsert = counted  # type: ignore[method-assign]
    app, cache = cache_stack(FakeProvider(), vector=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        # the first entry makes the shard, in a task (opening or creating it is no quick write)
        assert (
            await post(client, chat("How do I list the branches of a git repository?"))
        ).status_code == 200
        await cache.drain()
        assert len(awaited) == 1
        assert (await post(client, chat(QUESTION))).headers["x-aigw-cache"] == "miss"
        assert len(awaited) == 1
        assert not cache._stores
        assert (await post(client, chat(PARAPHRASE))).headers["x-aigw-cache"] == "hit-semantic"
        # the shard held (an index build's copy, a sweep): the write goes to a task, which waits its turn
        other = "Which port does PostgreSQL listen on?"
        store._lock.acquire()
        try:
            answer = await asyncio.wait_for(post(client, chat(other)), timeout=5)
            assert answer.headers["x-aigw-cache"] == "miss"
            assert awaited[1:] == [other]
        finally:
            store._lock.release()
        await cache.drain()
        near = await post(client, chat("What port does PostgreSQL listen on?"))
        assert near.headers["x-aigw-cache"] == "hit-semantic"
    await cache.aclose()
