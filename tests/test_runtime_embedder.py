"""Embedders: the in-process MiniLM (offline, from the installed packages) and an OpenAI-compatible
endpoint (FakeProvider, in process and on a real port)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import numpy as np
import pytest

from asgi_aigw.runtime.config import EmbedderSettings, RuntimeConfig
from asgi_aigw.runtime.embedder import (
    Embedder,
    EmbedderError,
    FastEmbedEmbedder,
    OpenAIEmbedder,
    create_embedder,
    get_embedder,
)
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport, fake_embedding

from .support import served

# Labelled pairs: paraphrases (the same question asked differently) and unrelated questions.
PARAPHRASES = [
    ("How do I reset my password?", "What's the way to change my password?"),
    ("What is the capital of France?", "Which city is France's capital?"),
    ("How can I cancel my subscription?", "I want to stop my subscription, how do I do that?"),
    ("What time does the store open on Sunday?", "When do you open on Sundays?"),
    ("Can I get a refund for a damaged item?", "My item arrived broken, can I have my money back?"),
]
UNRELATED = [
    ("How do I reset my password?", "What is the capital of France?"),
    ("How can I cancel my subscription?", "What is the boiling point of water at sea level?"),
    ("What time does the store open on Sunday?", "Explain how photosynthesis works."),
    ("Can I get a refund for a damaged item?", "Who wrote the novel War and Peace?"),
    ("Which city is France's capital?", "How do I sort a list in Python?"),
]


@pytest.fixture(scope="module")
def minilm() -> FastEmbedEmbedder:
    embedder = FastEmbedEmbedder(threads=1, max_batch=32, cache_size=64)
    yield embedder
    embedder.close()


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


async def test_paraphrases_close_unrelated_far(minilm: FastEmbedEmbedder) -> None:
    texts = sorted({t for pair in PARAPHRASES + UNRELATED for t in pair})
    vectors = dict(zip(texts, await minilm.embed(texts), strict=True))
    close = [cosine(vectors[a], vectors[b]) for a, b in PARAPHRASES]
    far = [cosine(vectors[a], vectors[b]) for a, b in UNRELATED]
    assert min(close) > 0.6, close
    assert max(far) < 0.3, far
    assert min(close) - max(far) > 0.3
    # a threshold exists that separates every labelled pair
    assert all(c > 0.45 for c in close)
    assert all(f < 0.45 for f in far)


async def test_vectors_are_unit_length_and_sized(minilm: FastEmbedEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert minilm.dimension == 384  # known without loading the model
    (vector,) = await minilm.embed(["A sentence of moderate length about budgets and tokens."])
    assert len(vector) == 384
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-5)
    assert await minilm.embed([]) == []


async def test_concurrent_calls_are_batched(minilm: FastEmbedEmbedder) -> None:
    await minilm.embed(["warm up the model"])
    calls_before = minilm.model_calls
    texts = [f"concurrent question number {i} about shipping" for i in range(24)]
    results = await asyncio.gather(*(minilm.embed([t]) for t in texts))
    assert len(results) == 24
    # 24 requests, far fewer model calls: the ones queued while a call ran went in together
    assert minilm.model_calls - calls_before < 12
    # batching does not change vectors
    alone = FastEmbedEmbedder(cache_size=0)
    try:
        single = await alone.embed([texts[5]])
    finally:
        alone.close()
    assert cosine(single[0], results[5][0]) > 0.9999


async def test_recent_texts_come_from_the_lru(minilm: FastEmbedEmbedder) -> None:
    text = "a text embedded twice"
    first = await minilm.embed([text])
    calls = minilm.model_calls
    hits = minilm.cache_info["hits"]
    second = await minilm.embed([text, text])
    assert minilm.model_calls == calls
    assert minilm.cache_info["hits"] == hits + 2
    assert second == [first[0], first[0]]
    second[0][0] = 99.0  # callers get copies: the cached vector is unchanged
    assert (await minilm.embed([text]))[0] == first[0]


async def test_embedding_runs_off_the_event_loop(minilm: FastEmbedEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await minilm.embed([f"long text {i} " * 40 for i in range(32)])
    task.cancel()
    assert ticks > 0  # the loop kept running while the model worked


async def test_cancelled_caller_does_not_break_the_worker(minilm: FastEmbedEmbedder) -> None:
    task = asyncio.create_task(minilm.embed(["to be cancelled " * 50]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len((await minilm.embed(["still works"]))[0]) == 384


def test_onnxruntime_session_is_sized_on_purpose() -> None:
    # the arena would keep the memory of the largest batch ever seen; threads are the configured ones
    embedder = FastEmbedEmbedder(threads=2)
    embedder.load()
    options = embedder._model.session.get_session_options()
    assert options.enable_cpu_mem_arena is False
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 2)


def test_loading_the_model_gives_the_freed_heap_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # loading frees about 60 MB (the model file's bytes, its parsed graph) that glibc would keep
    from asgi_aigw.runtime import embedder as module

    calls: list[bool] = []
    released: list[tuple[str, ...]] = []
    monkeypatch.setattr(module, "release_free_heap", lambda: calls.append(embedder._model is not None))
    monkeypatch.setattr(module, "release_package_pages", lambda *names: released.append(names) or 0)
    embedder = FastEmbedEmbedder(threads=1)
    embedder.load()
    embedder.load()
    assert calls == [True]  # once, after the model is loaded
    # and the libraries' pages building the session read (see asgi_aigw.runtime.pages)
    assert released == [("onnxruntime.capi", "tokenizers")]


def test_int8_products_follow_the_setting_and_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_aigw.runtime import cpu as module  # where the setting is resolved (int8_products)

    for exact in (True, False):
        monkeypatch.setattr(module, "multiplies_int8_exactly", lambda exact=exact: exact)
        assert FastEmbedEmbedder(int8_matmul="auto").int8_matmul is exact
        assert FastEmbedEmbedder(int8_matmul="on").int8_matmul is True
        assert FastEmbedEmbedder(int8_matmul="off").int8_matmul is False
    # the setting reaches the model: its products are int8 or not
    monkeypatch.setattr(module, "multiplies_int8_exactly", lambda: True)
    for setting, expected in (("auto", 1), ("off", None)):
        settings = EmbedderSettings(backend="fastembed", int8_matmul=setting)
        embedder = create_embedder(RuntimeConfig(embedder=settings))
        assert isinstance(embedder, FastEmbedEmbedder)
        embedder.load()
        assert embedder._model.max_call == expected


def test_nothing_loads_before_first_use() -> None:
    embedder = FastEmbedEmbedder()
    assert embedder._model is None
    assert embedder._thread is None
    assert embedder.dimension == 384
    assert embedder._model is None


def test_get_embedder_is_shared_per_configuration() -> None:
    config = RuntimeConfig()
    assert get_embedder(config) is get_embedder(RuntimeConfig())
    other = RuntimeConfig(embedder=EmbedderSettings(threads=2))
    assert get_embedder(other) is not get_embedder(config)


def test_bad_model_dir_is_reported(tmp_path) -> None:
    embedder = FastEmbedEmbedder(model_dir=tmp_path, cache_size=0)
    try:
        with pytest.raises(EmbedderError, match=r"model\.onnx"):
            embedder.embed_sync(["x"])
    finally:
        embedder.close()


# -- OpenAI-compatible endpoint -------------------------------------------------------------------


@pytest.fixture
async def remote(fake: FakeProvider) -> AsyncIterator[OpenAIEmbedder]:
    embedder = OpenAIEmbedder(
        base_url="http://fake-embeddings.test/v1",
        model="text-embedding-3-small",
        api_key="sk-test-embed",
        transport=StreamingASGITransport(fake),
        max_batch=4,
        cache_size=16,
    )
    yield embedder
    await embedder.aclose()


async def test_openai_embedder_calls_the_endpoint(remote: OpenAIEmbedder, fake: FakeProvider) -> None:
    texts = [f"text {i}" for i in range(10)]
    vectors = await remote.embed(texts)
    assert vectors == [pytest.approx(fake_embedding(t), rel=1e-6) for t in texts]
    assert remote.dimension == 64  # learned from the answer
    assert len(fake.requests) == 3  # 10 texts in batches of 4
    first = fake.requests[0]
    assert first.json == {"model": "text-embedding-3-small", "input": texts[:4], "encoding_format": "float"}
    assert first.headers["authorization"] == "Bearer sk-test-embed"
    await remote.embed(texts[:3])
    assert len(fake.requests) == 3  # from the LRU


async def test_no_vector_is_remembered_by_default(fake: FakeProvider) -> None:
    """The LRU is shared by every caller (every tenant): off unless asked for, so a text another tenant
    had embedded takes as long as any other."""
    embedder = OpenAIEmbedder(base_url="http://x.test/v1", model="m", transport=StreamingASGITransport(fake))
    await embedder.embed(["asked before"])
    await embedder.embed(["asked before"])
    assert len(fake.requests) == 2
    assert RuntimeConfig().embedder.cache_size == 0
    await embedder.aclose()


async def test_openai_embedder_dimension_must_be_known(fake: FakeProvider) -> None:
    embedder = OpenAIEmbedder(base_url="http://x.test/v1", model="m", transport=StreamingASGITransport(fake))
    with pytest.raises(EmbedderError, match=r"runtime\.embedder\.dimension"):
        _ = embedder.dimension
    assert await embedder.probe_dimension() == 64
    sized = OpenAIEmbedder(
        base_url="http://x.test/v1",
        model="m",
        dimension=32,
        send_dimensions=True,
        transport=StreamingASGITransport(fake),
    )
    assert len((await sized.embed(["short"]))[0]) == 32
    assert fake.last_request.json["dimensions"] == 32
    await embedder.aclose()
    await sized.aclose()


async def test_openai_embedder_errors(remote: OpenAIEmbedder, fake: FakeProvider) -> None:
    fake.enqueue(FakeBehaviour(status=500), times=1)
    with pytest.raises(EmbedderError, match="answered 500"):
        await remote.embed(["boom"])
    fake.enqueue(FakeBehaviour(malformed=True), times=1)
    with pytest.raises(EmbedderError, match="unreadable"):
        await remote.embed(["garbled"])


async def test_openai_embedder_on_a_real_port() -> None:
    async with served(FakeProvider()) as base_url:
        config = RuntimeConfig(
            embedder=EmbedderSettings(
                backend="openai", base_url=f"{base_url}/v1", model="text-embedding-3-small", dimension=64
            )
        )
        embedder = create_embedder(config)
        assert isinstance(embedder, OpenAIEmbedder)
        vectors = await asyncio.gather(*(embedder.embed([f"q{i}"]) for i in range(8)))
        assert [v[0] for v in vectors] == [pytest.approx(fake_embedding(f"q{i}"), rel=1e-6) for i in range(8)]
        await embedder.aclose()


def test_openai_backend_needs_a_base_url() -> None:
    with pytest.raises(EmbedderError, match="base_url"):
        create_embedder(RuntimeConfig(embedder=EmbedderSettings(backend="openai")))


def test_the_shared_models_without_a_configuration_follow_the_configured_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``build_app`` sets the runtime (its ``runtime:`` section); the shared embedder and analyzer
    asked for without a configuration are that runtime's, as the token counts are."""
    from asgi_aigw.runtime import pii, tokens
    from asgi_aigw.runtime.config import AnalyzerSettings
    from asgi_aigw.runtime.embedder import get_embedder

    configured = RuntimeConfig(
        embedder=EmbedderSettings(backend="fastembed"), analyzer=AnalyzerSettings(regex_only=True)
    )
    monkeypatch.setattr(tokens, "_runtime_config", configured)
    assert get_embedder() is get_embedder(configured)
    assert isinstance(get_embedder(), FastEmbedEmbedder)
    pytest.importorskip("presidio_analyzer")
    assert pii.get_analyzer() is pii.get_analyzer(configured)
