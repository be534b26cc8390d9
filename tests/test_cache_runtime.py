"""The cache with the offline runtime's real embedders (all-MiniLM-L6-v2 in process, and its static
vectors, the default): measured cosines, semantic hits and refusals through the middleware, the
default wiring of build_app, and the demo."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from asgi_aigw import build_app
from asgi_aigw.cache import CacheConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .cache_support import cache_stack, chat, post
from .support import FAKE_URL, fake_config

embedder_module = pytest.importorskip("asgi_aigw.runtime.embedder")

DATA = Path(__file__).parent / "data"


def backend(name: str) -> object:
    from asgi_aigw.runtime.config import EmbedderSettings, RuntimeConfig

    return embedder_module.get_embedder(RuntimeConfig(embedder=EmbedderSettings(backend=name)))


@pytest.fixture(scope="module")
def minilm() -> object:
    return backend("fastembed")


@pytest.fixture(scope="module", params=["static", "fastembed"])
def embedder(request: pytest.FixtureRequest) -> object:
    return backend(request.param)


async def test_stored_cosines_are_the_runtime_embedders(minilm: object) -> None:
    embedder = minilm
    pairs = [json.loads(line) for line in (DATA / "cache_pairs.jsonl").read_text().splitlines() if line]
    # the column of the embedder's matrix products (int8 where the CPU multiplies int8 exactly)
    column = "cosine_int8" if embedder.int8_matmul else "cosine"  # type: ignore[attr-defined]
    stored = json.loads((DATA / "cache_pairs_minilm.json").read_text())[column]
    sample = pairs[::7]
    vectors = await embedder.embed([p["a"] for p in sample] + [p["b"] for p in sample])  # type: ignore[attr-defined]
    n = len(sample)
    for i, pair in enumerate(sample):
        cosine = sum(x * y for x, y in zip(vectors[i], vectors[n + i], strict=True))
        assert abs(cosine - stored[str(pair["id"])]) < 0.01, pair


@pytest.mark.parametrize(
    ("cached", "asked", "expected"),
    [
        ("How do I undo the last git commit?", "How can I undo my last commit in git?", "hit-semantic"),
        (
            "What is the boiling point of water at sea level?",
            "What's the boiling point of water at sea level?",
            "hit-semantic",
        ),
        ("What is the chemical symbol for sodium?", "What is the chemical symbol for potassium?", "miss"),
        ("Convert 10 miles to kilometers", "Convert 10 kilometers to miles", "miss"),
        ("Which foods contain gluten?", "Which foods do not contain gluten?", "miss"),
        (
            "How do I add a column to a table in PostgreSQL?",
            "How do I drop a column from a table in PostgreSQL?",
            "miss",
        ),
        ("How do I reset my password?", "Who painted the Mona Lisa?", "miss"),
    ],
)
async def test_real_embedder_hits_paraphrases_and_refuses_near_misses(
    embedder: object, tmp_path: Path, cached: str, asked: str, expected: str
) -> None:
    fake = FakeProvider()
    app, cache = cache_stack(fake, vector=f"qdrant-edge://{tmp_path / 'v'}", embedder=embedder)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await post(client, chat(cached))
        response = await post(client, chat(asked))
    assert response.headers["x-aigw-cache"] == expected
    content = response.json()["choices"][0]["message"]["content"]
    assert content == f"Echo: {cached if expected.startswith('hit') else asked}"
    await cache.aclose()


async def test_build_app_uses_the_runtime_embedder_by_default(tmp_path: Path) -> None:
    fake = FakeProvider()
    config = fake_config()
    config.cache = CacheConfig(vector_store=f"qdrant-edge://{tmp_path / 'v'}")
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        first = await client.post("/ai/v1/chat/completions", json=chat("How do I delete a branch in git?"))
        again = await client.post("/ai/v1/chat/completions", json=chat("How do I delete a branch in git?"))
        reworded = await client.post("/ai/v1/chat/completions", json=chat("How can I delete a git branch?"))
    assert [r.headers["x-aigw-cache"] for r in (first, again, reworded)] == [
        "miss",
        "hit-exact",
        "hit-semantic",
    ]
    assert len(fake.requests) == 1
    await app.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "expected"),
    [(None, "StaticEmbedder"), ("static", "StaticEmbedder"), ("fastembed", "FastEmbedEmbedder")],
)
def test_build_app_gives_the_cache_the_runtime_sections_embedder(
    tmp_path: Path, section: str | None, expected: str
) -> None:
    from asgi_aigw.cache import SemanticCacheMiddleware
    from asgi_aigw.runtime.config import EmbedderSettings, RuntimeConfig

    config = fake_config()
    config.cache = CacheConfig(vector_store=f"qdrant-edge://{tmp_path / 'v'}")
    if section is not None:
        config.runtime = RuntimeConfig(embedder=EmbedderSettings(backend=section))  # type: ignore[arg-type]
    layer: object = build_app(config, env={})
    while not isinstance(layer, SemanticCacheMiddleware):
        layer = layer.app  # type: ignore[attr-defined]
    # the gateway's runtime: section reaches the cache (it once got the defaults whatever was set)
    assert type(layer.embedder).__name__ == expected


async def test_demo_shows_exact_and_semantic_hits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_aigw.cli.demo import build_demo_app

    monkeypatch.chdir(tmp_path)
    app = build_demo_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        statuses = [
            (await client.post("/ai/v1/chat/completions", json=chat(q))).headers["x-aigw-cache"]
            for q in (
                "How do I reset my password?",
                "How do I reset my password?",
                "How can I reset my password?",
            )
        ]
    assert statuses == ["miss", "hit-exact", "hit-semantic"]
    assert (tmp_path / ".aigw" / "cache-vectors").is_dir()
    await app.aclose()  # type: ignore[attr-defined]
