"""The cache's stores on their real backends: Redis, qdrant-client local mode, Qdrant Edge, memory."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asgi_aigw.cache import (
    CacheConfig,
    MemoryExactStore,
    MemoryVectorStore,
    RedisExactStore,
    SemanticCacheMiddleware,
    VectorEntry,
)
from asgi_aigw.cache.keys import tenant_tag
from asgi_aigw.cache.qdrant_edge import QdrantEdgeStore
from asgi_aigw.cache.qdrant_server import QdrantServerStore
from asgi_aigw.cache.vector import VectorStore, engine_threshold, point_id
from asgi_aigw.testing import FakeProvider

from .cache_support import cache_stack, chat, post

# -- exact stores --------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def exact_store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryExactStore(max_entries=3)
        return
    store = RedisExactStore(redis_url, prefix=redis_prefix)
    yield store
    await store.purge()
    await store.aclose()


async def test_exact_store_get_set_ttl_purge(exact_store: Any) -> None:
    a, b = tenant_tag("a"), tenant_tag("b")
    assert await exact_store.get(f"{a}:k1") is None
    await exact_store.set(f"{a}:k1", b"one", 60)
    await exact_store.set(f"{b}:k1", b"two", 60)
    await exact_store.set(f"{a}:short", b"brief", 0.2)
    assert await exact_store.get(f"{a}:k1") == b"one"
    assert await exact_store.get(f"{b}:k1") == b"two"
    await anyio.sleep(0.3)
    assert await exact_store.get(f"{a}:short") is None
    assert await exact_store.purge(a) >= 1
    assert await exact_store.get(f"{a}:k1") is None
    assert await exact_store.get(f"{b}:k1") == b"two"
    assert await exact_store.purge() == 1
    assert await exact_store.get(f"{b}:k1") is None


async def test_memory_exact_store_evicts_least_recently_used() -> None:
    store = MemoryExactStore(max_entries=2)
    await store.set("t:a", b"a", 60)
    await store.set("t:b", b"b", 60)
    assert await store.get("t:a") == b"a"  # a is now the most recent
    await store.set("t:c", b"c", 60)
    assert await store.get("t:b") is None
    assert await store.get("t:a") == b"a"
    assert len(store) == 2


async def test_redis_keys_carry_the_prefix(redis_url: str, redis_prefix: str) -> None:
    import redis.asyncio as redis

    store = RedisExactStore(redis_url, prefix=redis_prefix)
    await store.set("tag:key", b"v", 60)
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.get(f"{redis_prefix}e:tag:key") == b"v"
        assert 0 < await client.pttl(f"{redis_prefix}e:tag:key") <= 60_000
    finally:
        await client.aclose()
        await store.purge()
        await store.aclose()


# -- vector stores -------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "qdrant-local", "qdrant-edge"])
async def vector_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    store: VectorStore
    if request.param == "memory":
        store = MemoryVectorStore()
    elif request.param == "qdrant-local":
        store = QdrantServerStore(location=":memory:", collection="test_cache")
    else:
        store = QdrantEdgeStore(tmp_path / "edge")
    yield store
    await store.aclose()


def _entry(
    key: str, vector: list[float], *, tenant: str = "t", scope: str = "s", ttl: float = 60
) -> VectorEntry:
    return VectorEntry(
        point_id(key), vector, tenant, scope, time.time() + ttl, f"question {key}", f'"answer {key}"'
    )


async def test_vector_store_filters_by_tenant_scope_and_expiry(vector_store: VectorStore) -> None:
    now = time.time()
    assert await vector_store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=3, now=now) == []
    await vector_store.upsert(_entry("near", [1.0, 0.0, 0.0]))
    await vector_store.upsert(_entry("far", [0.0, 1.0, 0.0]))
    await vector_store.upsert(_entry("other-tenant", [1.0, 0.0, 0.0], tenant="u"))
    await vector_store.upsert(_entry("other-scope", [1.0, 0.0, 0.0], scope="x"))
    await vector_store.upsert(_entry("expired", [1.0, 0.0, 0.0], ttl=-1))
    found = await vector_store.search([0.9, 0.1, 0.0], tenant="t", scope="s", limit=3, now=time.time())
    assert [m.question for m in found] == ["question near", "question far"]
    assert found[0].score > 0.9 > found[1].score
    assert found[0].answer == '"answer near"'
    assert found[0].id == point_id("near")


async def test_expired_nearest_entries_do_not_hide_a_live_one(vector_store: VectorStore) -> None:
    # the sweep removes expired entries every few minutes: until then they must not crowd the search
    for i in range(3):
        await vector_store.upsert(_entry(f"expired-{i}", [1.0, 0.01 * i, 0.0], ttl=-1))
    await vector_store.upsert(_entry("alive", [0.8, 0.6, 0.0]))
    found = await vector_store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=1, now=time.time())
    assert [m.question for m in found] == ["question alive"]


async def test_a_search_above_a_score_finds_only_the_entries_scoring_it(vector_store: VectorStore) -> None:
    # the cache asks only for entries close enough to answer: a new question's nearest are not
    await vector_store.upsert(_entry("near", [1.0, 0.0, 0.0]))
    await vector_store.upsert(_entry("far", [0.0, 1.0, 0.0]))
    above = vector_store.search_above  # type: ignore[attr-defined]
    query = [0.9, 0.1, 0.0]
    everything = await vector_store.search(query, tenant="t", scope="s", limit=3, now=time.time())
    assert [m.question for m in everything] == ["question near", "question far"]
    found = await above(query, tenant="t", scope="s", limit=3, now=time.time(), min_score=0.5)
    assert [(m.question, m.answer) for m in found] == [("question near", '"answer near"')]
    assert found[0].score == pytest.approx(everything[0].score)
    # a score equal to the threshold reaches it, as the cache's own comparison has it (score < threshold
    # is turned away)
    exactly = await above(
        query, tenant="t", scope="s", limit=3, now=time.time(), min_score=everything[0].score
    )
    assert [m.question for m in exactly] == ["question near"]
    assert await above(query, tenant="t", scope="s", limit=3, now=time.time(), min_score=0.999) == []
    assert await above(query, tenant="u", scope="s", limit=3, now=time.time(), min_score=0.0) == []


async def test_vector_store_upsert_replaces_and_sweeps_and_purges(vector_store: VectorStore) -> None:
    await vector_store.upsert(_entry("k", [1.0, 0.0]))
    await vector_store.upsert(_entry("k", [1.0, 0.0], ttl=120))  # the same key again: one point
    await vector_store.upsert(_entry("gone", [0.0, 1.0], ttl=-1))
    await vector_store.upsert(_entry("u1", [1.0, 0.0], tenant="u"))
    assert await vector_store.delete_expired(time.time()) == 1
    found = await vector_store.search([1.0, 0.0], tenant="t", scope="s", limit=5, now=time.time())
    assert len(found) == 1
    assert await vector_store.purge("u") == 1
    assert await vector_store.search([1.0, 0.0], tenant="u", scope="s", limit=5, now=time.time()) == []
    assert await vector_store.purge() == 1


async def test_memory_vector_store_keeps_the_newest_max_entries() -> None:
    store = MemoryVectorStore(max_entries=3)
    for i, (tenant, scope) in enumerate([("t", "s"), ("t", "s"), ("u", "s"), ("t", "x"), ("t", "s")]):
        await store.upsert(_entry(f"k{i}", [1.0, 0.0], tenant=tenant, scope=scope))
    now = time.time()
    kept = {
        m.question
        for tenant, scope in (("t", "s"), ("u", "s"), ("t", "x"))
        for m in await store.search([1.0, 0.0], tenant=tenant, scope=scope, limit=10, now=now)
    }
    assert kept == {"question k2", "question k3", "question k4"}  # the two oldest went, across scopes
    await store.upsert(_entry("k2", [1.0, 0.0], tenant="u"))  # stored again: the newest now
    await store.upsert(_entry("k5", [1.0, 0.0]))
    assert await store.search([1.0, 0.0], tenant="u", scope="s", limit=10, now=now) != []
    assert await store.search([1.0, 0.0], tenant="t", scope="x", limit=10, now=now) == []
    assert await store.purge() == 3


async def test_memory_vector_store_matches_a_plain_reference_through_replaces_and_removals() -> None:
    """Its matrix rows move when entries leave (the last takes the place): after any mix of stores,
    replacements, evictions and sweeps it finds what a plain scan of the live entries finds."""
    import random

    rng = random.Random(7)
    store = MemoryVectorStore(max_entries=40)
    live: dict[str, VectorEntry] = {}
    order: list[str] = []
    now = time.time()
    for step in range(400):
        key = f"k{rng.randrange(60)}"
        vector = [rng.uniform(-1, 1) for _ in range(4)]
        ttl = -1.0 if rng.random() < 0.1 else 60.0
        entry = _entry(key, vector, ttl=ttl)
        await store.upsert(entry)
        live[entry.id] = entry
        if entry.id in order:
            order.remove(entry.id)
        order.append(entry.id)
        while len(order) > 40:
            live.pop(order.pop(0))
        if step % 97 == 0:
            await store.delete_expired(now)
            for entry_id in [i for i, e in live.items() if e.expires_at <= now]:
                del live[entry_id]
                order.remove(entry_id)
        query = [rng.uniform(-1, 1) for _ in range(4)]
        found = await store.search(query, tenant="t", scope="s", limit=3, now=now)

        def cosine(v: list[float], q: list[float] = query) -> float:
            dot = sum(a * b for a, b in zip(v, q, strict=True))
            return dot / (sum(a * a for a in v) ** 0.5 * sum(b * b for b in q) ** 0.5)

        expected = sorted((e for e in live.values() if e.expires_at > now), key=lambda e: -cosine(e.vector))[
            :3
        ]
        assert [m.id for m in found] == [e.id for e in expected], step
        for match, entry in zip(found, expected, strict=True):
            assert abs(match.score - cosine(entry.vector)) < 1e-5
            assert match.answer == entry.answer


def test_the_cache_bounds_its_memory_vector_store_with_max_entries() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    cache = SemanticCacheMiddleware(app, config=CacheConfig(vector_store="memory://", max_entries=7))
    assert isinstance(cache.vector, MemoryVectorStore)
    assert cache.vector.max_entries == 7


async def test_qdrant_edge_data_survives_a_reopen(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path / "edge")
    await store.upsert(_entry("kept", [0.6, 0.8]))
    await store.aclose()
    reopened = QdrantEdgeStore(tmp_path / "edge")
    found = await reopened.search([0.6, 0.8], tenant="t", scope="s", limit=1, now=time.time())
    assert [m.question for m in found] == ["question kept"]
    await reopened.aclose()


@pytest.mark.parametrize("first", ["search", "upsert"])
async def test_a_qdrant_edge_shard_of_another_embedders_vectors_is_set_aside_not_mixed(
    tmp_path: Path, first: str, caplog: pytest.LogCaptureFixture
) -> None:
    old = QdrantEdgeStore(tmp_path / "edge")
    await old.upsert(_entry("old", [0.6, 0.8, 0.0]))
    await old.aclose()
    # the embedder changed: vectors of another size (all-MiniLM-L6-v2's 384, its static vectors' 128)
    store = QdrantEdgeStore(tmp_path / "edge")
    with caplog.at_level(logging.WARNING, "asgi_aigw.cache"):
        if first == "search":
            assert await store.search([1.0, 0.0], tenant="t", scope="s", limit=1, now=time.time()) == []
        await store.upsert(_entry("new", [1.0, 0.0]))
    found = await store.search([1.0, 0.0], tenant="t", scope="s", limit=3, now=time.time())
    assert [m.question for m in found] == ["question new"]
    await store.aclose()
    (aside,) = [tmp_path / name for name in os.listdir(tmp_path) if name.startswith("edge.3d-")]
    assert "holds vectors of 3 dimensions but the embedder gives 2" in caplog.text
    # nothing of the old store was lost: opened with its own size it answers as before
    back = QdrantEdgeStore(aside)
    found = await back.search([0.6, 0.8, 0.0], tenant="t", scope="s", limit=3, now=time.time())
    assert [m.question for m in found] == ["question old"]
    await back.aclose()


async def test_a_qdrant_edge_directory_held_by_another_process_fails_fast_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_aigw.cache import qdrant_edge

    holder = QdrantEdgeStore(tmp_path / "edge")  # as another worker would, on the same directory
    await holder.upsert(_entry("kept", [0.6, 0.8]))
    second = QdrantEdgeStore(tmp_path / "edge")
    tries: list[int] = []
    open_now = second._open_now

    def counted(*args: Any, **kwargs: Any) -> Any:
        tries.append(1)
        return open_now(*args, **kwargs)

    monkeypatch.setattr(second, "_open_now", counted)
    for _ in range(3):
        with pytest.raises(qdrant_edge.ShardUnavailable, match="serves one process at a time"):
            await second.search([0.6, 0.8], tenant="t", scope="s", limit=1, now=time.time())
    # each try reads the shard before failing on its lock (tens of ms): one per retry interval
    assert tries == [1]
    await holder.aclose()
    monkeypatch.setattr(qdrant_edge, "RETRY_OPEN_SECONDS", 0.0)
    second._retry_at = 0.0
    found = await second.search([0.6, 0.8], tenant="t", scope="s", limit=1, now=time.time())
    assert [m.question for m in found] == ["question kept"]  # the directory is free again
    await second.aclose()


async def test_a_qdrant_edge_shard_of_an_earlier_version_gains_the_partition_index(tmp_path: Path) -> None:
    import qdrant_edge as qe

    from asgi_aigw.cache.qdrant_edge import PARTITION

    # as the previous version made it: tenant, scope and expiry indexes, entries without a partition
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=2, distance=qe.Distance.Cosine))
    shard = qe.EdgeShard.create(str(tmp_path / "edge"), config)
    shard.update(qe.UpdateOperation.create_field_index("tenant", qe.PayloadSchemaType.Keyword))
    shard.update(
        qe.UpdateOperation.upsert_points(
            [qe.Point(point_id("old"), [0.6, 0.8], _entry("old", [0.6, 0.8]).payload())]
        )
    )
    shard.flush()
    shard.close()
    store = QdrantEdgeStore(tmp_path / "edge")
    await store.upsert(_entry("new", [0.6, 0.8]))
    found = await store.search([0.6, 0.8], tenant="t", scope="s", limit=3, now=time.time())
    assert [m.question for m in found] == ["question new"]  # the old entry ages out unseen
    assert PARTITION in store._shard.info().payload_schema
    await store.aclose()


async def test_a_qdrant_edge_point_holds_four_fields_and_gives_back_its_question_and_answer(
    tmp_path: Path,
) -> None:
    import qdrant_edge as qe

    from asgi_aigw.cache.qdrant_edge import ENTRY, PARTITION, partition

    store = QdrantEdgeStore(tmp_path / "edge")
    # a question with a colon and digits, an answer starting with digits: the length tells them apart
    entry = VectorEntry(
        point_id("k"), [1.0, 0.0, 0.0], "t", "s", time.time() + 60, "12:30 or 13:45?", '42: "yes"'
    )
    await store.upsert(entry)
    (point,) = store._shard.retrieve([point_id("k")], with_payload=True, with_vector=False)
    # each field costs the engine's binding a conversion: only what filters and matches need
    assert set(point.payload) == {"tenant", PARTITION, "expires_at", ENTRY}
    assert point.payload[PARTITION] == partition("t", "s")
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=3, now=time.time())
    assert [(m.question, m.answer) for m in found] == [("12:30 or 13:45?", '42: "yes"')]
    # a point written by an earlier version (question, answer and scope fields) is read as it was
    old = _entry("old", [1.0, 0.0, 0.0])
    store._shard.update(
        qe.UpdateOperation.upsert_points(
            [qe.Point(old.id, old.vector, old.payload() | {PARTITION: partition("t", "s")})]
        )
    )
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=3, now=time.time())
    assert sorted(m.question for m in found) == ["12:30 or 13:45?", "question old"]
    await store.aclose()


@pytest.mark.parametrize("stored", ["no colon", "x:question", "99:too short", ":", 7])
async def test_a_qdrant_edge_point_whose_entry_is_not_one_is_not_an_answer(
    tmp_path: Path, stored: object
) -> None:
    import qdrant_edge as qe

    from asgi_aigw.cache.qdrant_edge import ENTRY, PARTITION, partition

    store = QdrantEdgeStore(tmp_path / "edge")
    await store.upsert(_entry("good", [1.0, 0.0, 0.0]))
    payload = {"tenant": "t", PARTITION: partition("t", "s"), "expires_at": time.time() + 60, ENTRY: stored}
    store._shard.update(
        qe.UpdateOperation.upsert_points([qe.Point(point_id("bad"), [1.0, 0.0, 0.0], payload)])
    )
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=3, now=time.time())
    assert [m.question for m in found] == ["question good"]
    await store.aclose()


async def test_qdrant_collection_is_created_with_dimension_and_payload_indexes(tmp_path: Path) -> None:
    from qdrant_client import AsyncQdrantClient

    calls: list[str] = []
    client = AsyncQdrantClient(location=":memory:")
    create_index = client.create_payload_index

    async def recording_create_index(collection: str, field: str, **kwargs: Any) -> Any:
        calls.append(field)
        return await create_index(collection, field, **kwargs)

    client.create_payload_index = recording_create_index  # type: ignore[method-assign]
    store = QdrantServerStore(collection="indexed", client=client)
    await store.upsert(_entry("k", [1.0, 0.0]))
    await store.upsert(_entry("k2", [0.0, 1.0]))
    info = await client.get_collection("indexed")
    assert info.config.params.vectors.size == 2
    assert sorted(calls) == ["expires_at", "scope", "tenant"]  # once, on first use
    await store.aclose()

    edge = QdrantEdgeStore(tmp_path / "edge")
    await edge.upsert(_entry("k", [1.0, 0.0, 0.0]))
    shard_info = edge._shard.info()
    assert set(shard_info.payload_schema) == {"tenant", "scope", "expires_at", "partition"}
    await edge.aclose()


# -- the middleware on real stores --------------------------------------------------------------------


@pytest.mark.parametrize("vector", ["qdrant-edge", "qdrant-local"])
async def test_middleware_on_redis_and_qdrant(
    vector: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    url = f"qdrant-edge://{tmp_path / 'edge'}" if vector == "qdrant-edge" else "qdrant+local://:memory:"
    config = CacheConfig(store=redis_url, key_prefix=redis_prefix, vector_store=url)
    fake = FakeProvider()
    app, cache = cache_stack(fake, config=config, exact=None, vector=url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert (await post(client, chat("How do I delete a branch in git?"))).headers[
            "x-aigw-cache"
        ] == "miss"
        assert (await post(client, chat("How do I delete a branch in git?"))).headers[
            "x-aigw-cache"
        ] == "hit-exact"
        semantic = await post(client, chat("How can I delete a git branch?"))
        assert semantic.headers["x-aigw-cache"] == "hit-semantic"
        assert semantic.json()["choices"][0]["message"]["content"] == "Echo: How do I delete a branch in git?"
        other_tenant = await post(client, chat("How can I delete a git branch?"), **{"x-tenant": "b"})
        assert other_tenant.headers["x-aigw-cache"] == "miss"
        hard = await post(client, chat("How do I create a branch in git?"))
        assert hard.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 3
    exact, vectors = await cache.purge("default")
    assert exact == 2
    assert vectors == 2
    await cache.purge()
    await cache.aclose()


def _search_threads() -> int:
    """Qdrant Edge's search threads alive in this process (Linux: their names)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return sum(1 for task in tasks.iterdir() if (task / "comm").read_text().startswith("edge-search"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc")
async def test_a_qdrant_edge_shard_searches_on_one_thread_not_one_per_cpu(tmp_path: Path) -> None:
    before = _search_threads()
    store = QdrantEdgeStore(tmp_path / "edge")
    await store.upsert(_entry("k", [1.0, 0.0]))
    assert await store.search([1.0, 0.0], tenant="t", scope="s", limit=1, now=time.time())
    assert _search_threads() - before == 1
    await store.aclose()


async def test_a_shard_made_with_the_engines_own_pool_size_is_reopened_with_one_search_thread(
    tmp_path: Path,
) -> None:
    import qdrant_edge as qe

    path = tmp_path / "edge"
    # as a shard was made before the pool was sized: no max_search_threads saved
    old = qe.EdgeShard.create(
        str(path), qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=2, distance=qe.Distance.Cosine))
    )
    old.close()
    assert "max_search_threads" not in json.loads((path / "edge_config.json").read_text())
    store = QdrantEdgeStore(path)
    await store.upsert(_entry("kept", [0.6, 0.8]))
    found = await store.search([0.6, 0.8], tenant="t", scope="s", limit=1, now=time.time())
    assert [m.question for m in found] == ["question kept"]
    await store.aclose()
    assert json.loads((path / "edge_config.json").read_text())["max_search_threads"] == 1


async def test_qdrant_edge_calls_wait_on_the_event_loop_not_each_in_a_thread(tmp_path: Path) -> None:
    # the shard takes one call at a time: a call waiting for its turn in a worker thread of its own
    # held that thread, one per concurrent request
    store = QdrantEdgeStore(tmp_path / "edge")
    inside = 0
    most = 0
    threads: set[int] = set()

    def slow_search(*_: Any) -> list[Any]:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        threads.add(threading.get_ident())
        time.sleep(0.01)
        inside -= 1
        return []

    store._search_sync = slow_search  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        for _ in range(16):
            group.start_soon(lambda: store.search([1.0, 0.0], tenant="t", scope="s", limit=1, now=0.0))
    assert most == 1
    assert len(threads) <= 2  # one at a time: anyio reuses its idle worker thread


async def _edge_with_points(path: Path, count: int) -> QdrantEdgeStore:
    store = QdrantEdgeStore(path)
    for i in range(count):
        await store.upsert(_entry(f"p{i}", [1.0, 0.1 * i, 0.0]))
    return store


async def _searched_on(store: QdrantEdgeStore) -> tuple[int, list[str]]:
    """The thread that ran the search's scan, and what it found."""
    ran_on: list[int] = []
    search_open = store._search_open

    def recorded(*args: Any) -> Any:
        ran_on.append(threading.get_ident())
        return search_open(*args)

    store._search_open = recorded  # type: ignore[method-assign]
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=2, now=time.time())
    return ran_on[0], [m.question for m in found]


@pytest.mark.parametrize("inline_points", [10_000, 2])
async def test_a_small_qdrant_edge_shard_is_searched_on_the_event_loop_a_large_one_in_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline_points: int
) -> None:
    # handing a search of a few thousand points to the worker thread and back cost more CPU than the
    # scan; a scan that grows with the shard must not hold the event loop: past the limit, the thread
    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INLINE_POINTS", inline_points)
    store = await _edge_with_points(tmp_path / "edge", 3)
    try:
        thread, found = await _searched_on(store)
        assert (thread == threading.get_ident()) is (inline_points >= 3)
        assert found == ["question p0", "question p1"]
    finally:
        await store.aclose()


async def test_a_search_while_another_call_holds_the_shard_waits_off_the_event_loop(tmp_path: Path) -> None:
    store = await _edge_with_points(tmp_path / "edge", 2)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:  # a sweep or an upsert in progress in the worker thread
        with store._lock:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            await anyio.sleep(0.01)

    async def release_later() -> None:
        await anyio.sleep(0.2)
        release.set()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            group.start_soon(release_later)
            thread, found = await _searched_on(store)
        assert ticks >= 5  # the loop went on while the search waited for the shard
        assert thread != threading.get_ident()
        assert found == ["question p0", "question p1"]
    finally:
        holder.join()
        await store.aclose()


async def test_an_upsert_to_an_open_qdrant_edge_shard_is_written_on_the_event_loop(tmp_path: Path) -> None:
    # one point written to mapped files costs microseconds; the hop to the worker thread cost more
    store = await _edge_with_points(tmp_path / "edge", 1)  # the first upsert creates the shard
    ran_on: list[int] = []
    upsert_open = store._upsert_open

    def recorded(*args: Any) -> None:
        ran_on.append(threading.get_ident())
        upsert_open(*args)

    store._upsert_open = recorded  # type: ignore[method-assign]
    try:
        await store.upsert(_entry("here", [0.0, 1.0, 0.0]))
        with store._lock:  # held, as by a sweep in the worker thread: the upsert waits there
            pending = threading.Thread(
                target=lambda: anyio.run(store.upsert, _entry("there", [0.0, 0.0, 1.0]))
            )
            pending.start()
            pending.join(0.05)  # it waits for the lock meanwhile
            assert len(ran_on) == 1
        pending.join(5)
        assert ran_on[0] == threading.get_ident()
        assert len(ran_on) == 2
        assert ran_on[1] != pending.ident  # the other loop's call went to its worker thread
        found = await store.search([0.0, 0.0, 1.0], tenant="t", scope="s", limit=1, now=time.time())
        assert [m.question for m in found] == ["question there"]
    finally:
        await store.aclose()


async def test_qdrant_edge_counts_its_points_through_upserts_deletes_and_a_reopen(tmp_path: Path) -> None:
    store = await _edge_with_points(tmp_path / "edge", 3)
    await store.upsert(_entry("gone", [0.0, 0.0, 1.0], ttl=-1))
    assert store._unindexed == 4
    assert await store.delete_expired(time.time()) == 1
    assert store._unindexed == 3
    await store.aclose()
    reopened = QdrantEdgeStore(tmp_path / "edge")
    try:
        await reopened.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=1, now=time.time())
        assert reopened._unindexed == 3
    finally:
        await reopened.aclose()


class _QueryLog:
    """The shard, with the filter (None: unfiltered), the limit and the score threshold of every query it
    runs recorded, and how many points it returned."""

    def __init__(self, shard: Any) -> None:
        self.shard = shard
        self.filters: list[Any] = []
        self.limits: list[int] = []
        self.thresholds: list[float | None] = []
        self.returned: list[int] = []

    def query(self, request: Any) -> Any:
        self.filters.append(request.filter)
        self.limits.append(request.limit)
        self.thresholds.append(request.score_threshold)
        points = self.shard.query(request)
        self.returned.append(len(points))
        return points

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shard, name)


def _log_queries(store: QdrantEdgeStore) -> _QueryLog:
    log = _QueryLog(store._shard)
    store._shard = log
    return log


async def _questions(store: QdrantEdgeStore, tenant: str, scope: str = "s") -> list[str]:
    found = await store.search([1.0, 0.0, 0.0], tenant=tenant, scope=scope, limit=5, now=time.time())
    return sorted(m.question for m in found)


async def test_a_search_of_the_only_partition_runs_unfiltered_and_of_an_absent_one_not_at_all(
    tmp_path: Path,
) -> None:
    # a filter that every point passes costs as much as the scan itself: it is left out while one
    # partition (tenant and scope) holds every point, and a partition with no point is not searched
    store = await _edge_with_points(tmp_path / "edge", 2)
    log = _log_queries(store)
    assert await _questions(store, "t") == ["question p0", "question p1"]
    assert log.filters == [None]
    assert await _questions(store, "u") == []
    assert await _questions(store, "t", scope="x") == []
    assert len(log.filters) == 1  # neither was searched
    # another tenant's entry: from now on every search filters, and each tenant finds only its own
    await store.upsert(_entry("theirs", [1.0, 0.0, 0.0], tenant="u", ttl=-1))
    assert await _questions(store, "t") == ["question p0", "question p1"]
    assert await _questions(store, "u") == []  # expired
    assert all(f is not None for f in log.filters[1:])
    assert len(log.filters) == 3
    # once it is swept, the partitions are counted again: unfiltered again
    assert await store.delete_expired(time.time()) == 1
    assert await _questions(store, "t") == ["question p0", "question p1"]
    assert log.filters[-1] is None
    await store.aclose()


async def test_a_search_reads_limit_points_and_further_only_when_one_of_them_is_turned_away(
    tmp_path: Path,
) -> None:
    # each point read costs its payload: the margin for expired entries is read only when needed
    from asgi_aigw.cache.qdrant_edge import EXPIRED_MARGIN

    store = await _edge_with_points(tmp_path / "edge", 3)
    log = _log_queries(store)
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=2, now=time.time())
    assert [m.question for m in found] == ["question p0", "question p1"]
    assert log.limits == [2]
    # an expired entry nearest of all, not yet swept: read, turned away, and two live ones still found
    await store.upsert(_entry("stale", [1.0, -0.01, 0.0], ttl=-1))
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=2, now=time.time())
    assert [m.question for m in found] == ["question p0", "question p1"]
    assert log.limits == [2, 2, 2 + EXPIRED_MARGIN]
    # fewer points than the limit: nothing further to read
    found = await store.search([1.0, 0.0, 0.0], tenant="t", scope="s", limit=5, now=time.time())
    assert len(found) == 3
    assert log.limits[3:] == [5]
    await store.aclose()


async def test_a_search_above_a_score_leaves_the_points_under_it_in_the_engine(tmp_path: Path) -> None:
    # each point returned costs its payload converted from the engine's (the answer in it): those
    # scoring under the threshold never leave it
    store = await _edge_with_points(tmp_path / "edge", 3)
    log = _log_queries(store)
    query = [0.0, 0.0, 1.0]  # far from every point: a new question
    assert await store.search(query, tenant="t", scope="s", limit=2, now=time.time()) != []
    assert (log.thresholds, log.returned) == ([None], [2])
    assert (
        await store.search_above(query, tenant="t", scope="s", limit=2, now=time.time(), min_score=0.5) == []
    )
    # the engine is asked for a hair under it (it keeps only scores above its threshold, in float32)
    assert log.returned[1:] == [0]
    assert len(log.thresholds) == 2
    assert log.thresholds[1] == pytest.approx(engine_threshold(0.5), abs=1e-7)
    assert 0.5 - 1e-5 < log.thresholds[1] < 0.5
    found = await store.search_above(
        [1.0, 0.0, 0.0], tenant="t", scope="s", limit=2, now=time.time(), min_score=0.99
    )
    assert [m.question for m in found] == ["question p0", "question p1"]
    await store.aclose()


async def test_a_reopened_shard_knows_its_partitions_and_one_with_entries_of_no_partition_filters(
    tmp_path: Path,
) -> None:
    store = await _edge_with_points(tmp_path / "edge", 2)
    await store.upsert(_entry("theirs", [1.0, 0.0, 0.0], tenant="u"))
    await store.aclose()
    reopened = QdrantEdgeStore(tmp_path / "edge")
    try:
        assert await _questions(reopened, "x") == []  # opened, and no partition of x's
        log = _log_queries(reopened)
        assert await _questions(reopened, "u") == ["question theirs"]
        assert log.filters[0] is not None
        assert await _questions(reopened, "x") == []
        assert len(log.filters) == 1
    finally:
        await reopened.aclose()
    # a point without a partition (an earlier version's): not every point is counted, so searches filter
    import qdrant_edge as qe

    shard = qe.EdgeShard.load(str(tmp_path / "edge"), None)
    shard.update(
        qe.UpdateOperation.upsert_points(
            [qe.Point(point_id("old"), [1.0, 0.0, 0.0], _entry("old", [1.0, 0.0, 0.0]).payload())]
        )
    )
    shard.flush()
    shard.close()
    again = QdrantEdgeStore(tmp_path / "edge")
    try:
        assert await _questions(again, "x") == []
        log = _log_queries(again)
        assert await _questions(again, "x") == []
        assert await _questions(again, "t") == ["question p0", "question p1"]  # not the old entry
        assert log.filters[0] is not None
        assert log.filters[1] is not None
    finally:
        await again.aclose()


async def test_an_entry_stored_again_is_one_point_and_starts_no_index_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `Cache-Control: no-cache` stores the same question again on every request: one point, replaced
    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", 5)
    store = QdrantEdgeStore(tmp_path / "edge")
    try:
        for _ in range(10):
            await store.upsert(_entry("same", [1.0, 0.0, 0.0]))
        assert store._shard.info().points_count == 1
        # each write counts one more point until the count would start a build: the shard says one
        assert store._unindexed < 5
        assert store._build is None
    finally:
        await store.aclose()


def _vectors(count: int, seed: int = 7) -> dict[str, list[float]]:
    rng = random.Random(seed)
    return {f"p{i}": [rng.uniform(-1.0, 1.0) for _ in range(16)] for i in range(count)}


def _indexer_held_until_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str) -> Path:
    """The indexer replaced by a script that waits for the returned file to exist, then runs ``then``."""
    from asgi_aigw.cache import edge_indexer

    go = tmp_path / "go"
    script = f"import os, runpy, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n{then}"
    monkeypatch.setattr(edge_indexer, "__file__", _fake_indexer(tmp_path / "bin", script))
    return go


def _real_indexer_every(points: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build started every ``points`` writes, with the real indexer once the returned file exists (the
    test writes to the shard while the copy waits for it)."""
    from asgi_aigw.cache import edge_indexer

    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", points)
    real = f"sys.argv[0] = {edge_indexer.__file__!r}\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    return _indexer_held_until_go(tmp_path, monkeypatch, real)


async def _build_started_and_copied(store: QdrantEdgeStore, vectors: dict[str, list[float]]) -> Any:
    """Write ``vectors`` (the last one starts a build); the build, once it has taken its copy."""
    for key, vector in vectors.items():
        await store.upsert(_entry(key, vector))
    build = store._build
    assert build is not None  # started by the last point
    with anyio.fail_after(10):  # the copy is taken
        await anyio.to_thread.run_sync(_poll, lambda: store._journal is not None)
    return build


async def test_qdrant_edge_indexes_a_copy_in_another_process_and_keeps_the_writes_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Qdrant Edge never indexes on its own, and its optimize() holds the GIL: without a build elsewhere
    # every search scans every point of its partition. Searches wait while the swap holds the shard, so
    # the writes made meanwhile are replayed from the points they made (the binding takes longer to make
    # a point than to write it), and the shard replaced is removed once the lock is free.
    import shutil

    from asgi_aigw.cache import qdrant_edge

    go = _real_indexer_every(40, tmp_path, monkeypatch)
    vectors = _vectors(80)
    keys = list(vectors)
    store = QdrantEdgeStore(tmp_path / "data" / "edge")
    engine = store._module()
    made: list[object] = []

    class Counted:
        """The engine's module, its points counted."""

        def __getattr__(self, name: str) -> Any:
            return getattr(engine, name)

        def Point(self, *args: Any) -> Any:
            made.append(args[0])
            return engine.Point(*args)

    store._qe = Counted()
    locked_at_removal: list[bool] = []
    remove = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path) == qdrant_edge._replaced(store.path):
            locked_at_removal.append(store._lock.locked())
        remove(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    try:
        build = await _build_started_and_copied(store, {key: vectors[key] for key in keys[:40]})
        for key in keys[40:]:  # written while the copy is indexed: replayed on it
            await store.upsert(_entry(key, vectors[key]))
        await store.upsert(_entry("stale", [1.0] * 16, ttl=-1))
        assert await store.delete_expired(time.time()) == 1
        assert store._journal is not None
        assert len(store._journal) == 42
        go.touch()
        await build
        assert store.builds == 1
        info = store._shard.info()
        assert info.points_count == 80
        assert info.indexed_vectors_count == 40  # the copy's points are in the graph, the rest replayed
        assert store._unindexed == 40  # the replayed ones (counted again after the delete)
        assert len(made) == 81  # one point a write (the stale one too): the 41 replayed not made again
        assert locked_at_removal[-1] is False
        for key, vector in vectors.items():
            found = await store.search(vector, tenant="t", scope="s", limit=1, now=time.time())
            assert [m.question for m in found] == [f"question {key}"]
        assert _names(tmp_path / "data") == ["edge"]  # no copy, no old shard left
    finally:
        await store.aclose()
    reopened = QdrantEdgeStore(tmp_path / "data" / "edge")
    try:
        found = await reopened.search(vectors["p3"], tenant="t", scope="s", limit=1, now=time.time())
        assert [m.question for m in found] == ["question p3"]
        assert reopened._shard.info().indexed_vectors_count == 40
    finally:
        await reopened.aclose()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _poll(done: Callable[[], bool]) -> None:
    while not done():
        time.sleep(0.01)


def _read_when_written(path: Path) -> int:
    _poll(lambda: path.exists() and bool(path.read_text()))
    return int(path.read_text())


def _fake_indexer(tmp_path: Path, body: str) -> str:
    tmp_path.mkdir(exist_ok=True)
    script = tmp_path / "indexer.py"
    script.write_text(body, encoding="utf-8")
    return str(script)


async def test_closing_the_store_stops_an_index_build_and_its_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_aigw.cache import edge_indexer

    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", 3)
    pid_file = tmp_path / "pid"
    script = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    monkeypatch.setattr(edge_indexer, "__file__", _fake_indexer(tmp_path, script))
    vectors = _vectors(3)
    store = QdrantEdgeStore(tmp_path / "edge")
    for key, vector in vectors.items():
        await store.upsert(_entry(key, vector))
    assert store._build is not None
    with anyio.fail_after(10):
        pid = await anyio.to_thread.run_sync(_read_when_written, pid_file)
        await store.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "edge.indexing").exists()
    reopened = QdrantEdgeStore(tmp_path / "edge")
    try:
        found = await reopened.search(vectors["p1"], tenant="t", scope="s", limit=1, now=time.time())
        assert [m.question for m in found] == ["question p1"]
    finally:
        await reopened.aclose()


@pytest.mark.parametrize(
    "stopped",
    [
        # after moving the shard aside, before the indexed copy took its place
        "moved aside",
        # after the indexed copy took the shard's place, before the old one was removed
        "replaced",
    ],
)
async def test_what_a_swap_cut_short_by_a_stop_leaves_is_found_or_removed_on_the_next_open(
    tmp_path: Path, stopped: str
) -> None:
    vectors = _vectors(2)
    store = QdrantEdgeStore(tmp_path / "edge")
    for key, vector in vectors.items():
        await store.upsert(_entry(key, vector))
    await store.aclose()
    if stopped == "moved aside":
        (tmp_path / "edge").rename(tmp_path / "edge.replaced")
        (tmp_path / "edge.indexing").mkdir()
    else:
        shutil.copytree(tmp_path / "edge", tmp_path / "edge.replaced")
    reopened = QdrantEdgeStore(tmp_path / "edge")
    try:
        for key, vector in vectors.items():
            found = await reopened.search(vector, tenant="t", scope="s", limit=1, now=time.time())
            assert [m.question for m in found] == [f"question {key}"]
        assert _names(tmp_path) == ["edge"]
    finally:
        await reopened.aclose()


async def test_a_swap_that_fails_puts_the_shard_back_with_every_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", 5)
    vectors = _vectors(8)
    keys = list(vectors)
    store = QdrantEdgeStore(tmp_path / "data" / "edge")
    open_now = store._open_now

    def failing(dimension: int | None, *, create: bool, tidy: bool = True) -> Any:
        if not tidy:  # the indexed copy, in the swap
            raise OSError("the copy cannot be read")
        return open_now(dimension, create=create, tidy=tidy)

    store._open_now = failing  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="asgi_aigw.cache"):
            build = await _build_started_and_copied(store, {key: vectors[key] for key in keys[:5]})
            for key in keys[5:]:
                await store.upsert(_entry(key, vectors[key]))
            await build
        assert "the copy cannot be read" in caplog.text
        assert store.builds == 0
        assert store._shard.info().points_count == 8
        for key, vector in vectors.items():
            found = await store.search(vector, tenant="t", scope="s", limit=1, now=time.time())
            assert [m.question for m in found] == [f"question {key}"]
        assert _names(tmp_path / "data") == ["edge"]
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("exit_code", "journal_max", "why"),
    [
        (3, 20_000, "the indexer exited with 3: disk full"),
        # more writes while it ran than are kept for the copy: a build started again at once would be
        # outrun again
        (0, 2, "more than 2 writes were made while it ran"),
    ],
)
async def test_a_build_that_ends_without_a_swap_leaves_the_shard_as_it_was_says_why_and_waits(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    exit_code: int,
    journal_max: int,
    why: str,
) -> None:
    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", 5)
    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.JOURNAL_MAX", journal_max)
    go = _indexer_held_until_go(
        tmp_path, monkeypatch, f"print('disk full', file=sys.stderr)\nsys.exit({exit_code})\n"
    )
    vectors = _vectors(10)
    keys = list(vectors)
    store = QdrantEdgeStore(tmp_path / "data" / "edge")
    try:
        with caplog.at_level(logging.WARNING, logger="asgi_aigw.cache"):
            build = await _build_started_and_copied(store, {key: vectors[key] for key in keys[:5]})
            for key in keys[5:8]:
                await store.upsert(_entry(key, vectors[key]))
            go.touch()
            await build
        assert why in caplog.text
        assert store.builds == 0
        await store.upsert(_entry(keys[8], vectors[keys[8]]))
        assert store._build is None  # not tried again at once
        for key in keys[:9]:
            found = await store.search(vectors[key], tenant="t", scope="s", limit=1, now=time.time())
            assert [m.question for m in found] == [f"question {key}"]
        assert _names(tmp_path / "data") == ["edge"]
    finally:
        await store.aclose()


def test_a_shard_file_is_copied_with_its_holes(tmp_path: Path) -> None:
    # Qdrant Edge's mapped files are mostly holes: copied byte for byte, the indexed copy that replaces
    # the shard took five times the disk
    from asgi_aigw.cache.qdrant_edge import copy_sparse

    source = tmp_path / "chunk_0.mmap"
    with open(source, "wb") as file:
        file.truncate(32 << 20)
        file.seek(5 << 20)
        file.write(b"vectors" * 1000)
        file.seek((32 << 20) - 3)
        file.write(b"end")
    target = tmp_path / "copy.mmap"
    copy_sparse(str(source), str(target))
    assert target.read_bytes() == source.read_bytes()
    on_disk = source.stat().st_blocks * 512
    if on_disk < 1 << 20:  # the file system keeps holes (else there is nothing to keep)
        assert target.stat().st_blocks * 512 <= on_disk + (64 << 10)


async def test_searches_go_on_while_the_shard_is_copied_for_indexing_and_writes_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a write would tear the copy; a search reads what the copy reads, and must not wait tens of ms
    from asgi_aigw.cache import qdrant_edge

    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", 5)
    go = _indexer_held_until_go(tmp_path, monkeypatch, "")
    copying = threading.Event()
    first_copied = threading.Event()
    copy_sparse = qdrant_edge.copy_sparse

    def slow_copy(source: str, target: str) -> str:
        if not copying.is_set():
            copying.set()
            time.sleep(0.2)  # a copy long enough to search and write during it
            first_copied.set()
        return copy_sparse(source, target)

    monkeypatch.setattr(qdrant_edge, "copy_sparse", slow_copy)
    vectors = _vectors(6)
    keys = list(vectors)
    store = QdrantEdgeStore(tmp_path / "data" / "edge")
    try:
        for key in keys[:5]:
            await store.upsert(_entry(key, vectors[key]))
        build = store._build
        assert build is not None
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(copying.wait)
        found = await store.search(vectors["p2"], tenant="t", scope="s", limit=1, now=time.time())
        assert [m.question for m in found] == ["question p2"]
        assert not first_copied.is_set()  # answered during the copy, not after it
        await store.upsert(_entry(keys[5], vectors[keys[5]]))
        assert not store._copying  # written once the copy was taken
        assert store._journal is not None
        assert [kind for kind, _ in store._journal] == ["write"]  # and kept for the copy
        go.touch()
        await build
    finally:
        await store.aclose()


async def test_a_shard_whose_configuration_cannot_be_read_is_not_copied_again_and_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("asgi_aigw.cache.qdrant_edge.INDEX_AFTER", 3)
    vectors = _vectors(4)
    keys = list(vectors)
    store = QdrantEdgeStore(tmp_path / "edge")
    try:
        await store.upsert(_entry(keys[0], vectors[keys[0]]))
        (tmp_path / "edge" / "edge_config.json").write_text("not json", encoding="utf-8")
        with caplog.at_level(logging.WARNING, logger="asgi_aigw.cache"):
            for key in keys[1:3]:
                await store.upsert(_entry(key, vectors[key]))
            build = store._build
            assert build is not None
            await build
        assert "saved configuration cannot be read" in caplog.text
        await store.upsert(_entry(keys[3], vectors[keys[3]]))
        assert store._build is None  # no copy started again at once
        assert _names(tmp_path) == ["edge"]
    finally:
        await store.aclose()


@pytest.mark.parametrize("key", ["aigw:cache:v1:t:0f3a", "", "é" * 40])
def test_a_point_id_is_the_uuid_of_the_exact_key_s_digest(key: str) -> None:
    """Points stored by earlier versions keep their ids: an entry stored again replaces its point."""
    import hashlib
    import uuid

    expected = str(uuid.UUID(hex=hashlib.sha256(key.encode()).hexdigest()[:32]))
    assert point_id(key) == expected
