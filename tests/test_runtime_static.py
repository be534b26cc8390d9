"""The static embedder (``runtime.embedder.backend: static``, the default): its table derived from the
local all-MiniLM-L6-v2, its vectors, the semantic cache's precision and recall with them on the
labelled pairs, and how the table is found, derived once, and refused when it is not one."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from asgi_aigw.cache.verify import verify
from asgi_aigw.runtime import static_table
from asgi_aigw.runtime.assets import find_embedding_model_dir
from asgi_aigw.runtime.config import EmbedderSettings, RuntimeConfig
from asgi_aigw.runtime.static_embedder import INLINE_CHARS, StaticEmbedder
from asgi_aigw.runtime.static_table import StaticTableError, find_or_derive, load_table

pytest.importorskip("onnxruntime")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    # the default cache directory: derived once per machine (about 25 s), then read
    embedder = StaticEmbedder(RuntimeConfig(embedder=EmbedderSettings(backend="static")))
    embedder.load()
    return embedder


def model_vectors(tokens: list[int]) -> np.ndarray:
    """What the model itself gives for each token alone, mean-pooled ([CLS] token [SEP])."""
    ort = pytest.importorskip("onnxruntime")
    from asgi_aigw.runtime.onnx_model import onnx_session

    model_dir = find_embedding_model_dir(RuntimeConfig())
    assert model_dir is not None
    session, _ = onnx_session(ort, model_dir / "model.onnx", ort.SessionOptions(), int8_matmul=False)
    ids = np.array([[101, token, 102] for token in tokens], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    hidden: np.ndarray = session.run(None, feed)[0]
    return hidden.mean(axis=1)


def test_rows_are_the_models_vectors_of_each_token_alone_centred_and_rotated(
    embedder: StaticEmbedder,
) -> None:
    table = embedder.load()
    assert table.shape == (30522, 128)
    assert np.abs(np.asarray(table, dtype=np.float32).mean(axis=0)).max() < 1e-3  # centred
    # each row is the model's vector of its token alone, less one mean, on fixed axes: one affine map
    # fitted on 1,500 tokens gives the rows of 500 others (a table of anything else would not)
    tokens = list(range(1000, 30000, 14))[:2000]
    model = np.hstack([model_vectors(tokens), np.ones((len(tokens), 1))])
    rows = np.asarray(table[tokens], dtype=np.float64)
    fitted, *_ = np.linalg.lstsq(model[:1500], rows[:1500], rcond=None)
    assert np.abs(model[1500:] @ fitted - rows[1500:]).max() < 0.02


async def test_vectors_are_unit_length_and_rank_a_rewording_above_another_question(
    embedder: StaticEmbedder,
) -> None:
    a, b, c, empty = (
        np.array(v)
        for v in await embedder.embed(
            ["How do I reset my password?", "What's the way to change my password?", "Capital of France?", ""]
        )
    )
    for vector in (a, b, c, empty):
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert a @ b > 0.7 > 0.4 > a @ c


def _labelled() -> list[dict[str, object]]:
    return [json.loads(line) for line in (DATA / "cache_pairs.jsonl").read_text().splitlines() if line]


def test_cache_precision_and_recall_on_the_labelled_pairs_match_the_model(embedder: StaticEmbedder) -> None:
    """Every cached question stored, every new question looked up as the cache does (the three nearest,
    cosine at least the threshold, then verified): no false hit, and the model's recall."""
    pairs = _labelled()
    stored = sorted({str(p["a"]) for p in pairs})
    index = np.array(embedder.embed_sync(stored))

    def answer(question: str) -> str | None:
        scores = index @ np.array(embedder.embed_sync([question])[0])
        for i in np.argsort(-scores)[:3]:
            if scores[i] < embedder.default_threshold:
                break
            if verify(question, stored[i]).ok:
                return stored[i]
        return None

    hits = [answer(str(p["b"])) for p in pairs]
    paraphrases = [hit for p, hit in zip(pairs, hits, strict=True) if p["paraphrase"]]
    false_hits = [p for p, hit in zip(pairs, hits, strict=True) if not p["paraphrase"] and hit == p["a"]]
    assert false_hits == []
    recall = sum(hit is not None for hit in paraphrases) / len(paraphrases)
    # all-MiniLM-L6-v2 in process scores 0.804 the same way; these vectors 0.817
    assert recall >= 0.80


async def test_short_texts_inline_long_ones_on_the_worker_thread(embedder: StaticEmbedder) -> None:
    inline, threaded = embedder.inline_texts, embedder.thread_texts
    await embedder.embed(["a short question"])
    assert (embedder.inline_texts, embedder.thread_texts) == (inline + 1, threaded)
    long = await embedder.embed(["word " * INLINE_CHARS])
    assert (embedder.inline_texts, embedder.thread_texts) == (inline + 1, threaded + 1)
    assert abs(np.linalg.norm(long[0]) - 1) < 1e-5


def _fake_tables(monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> list[Path]:
    """Replace the 25-second derivation with a small table, counting the calls."""
    calls: list[Path] = []

    def derive(model_dir: Path, *, threads: int = 1) -> np.ndarray:
        calls.append(model_dir)
        threading.Event().wait(delay)
        return np.ones((4, 3), dtype=np.float16)

    monkeypatch.setattr(static_table, "derive_table", derive)
    return calls


def test_the_table_is_derived_once_and_kept_for_every_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_tables(monkeypatch, delay=0.2)
    config = RuntimeConfig(cache_dir=tmp_path)
    tables: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: tables.append(find_or_derive(config))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1  # the others waited for its file
    assert [t.shape for t in tables] == [(4, 3)] * 3
    (kept,) = (tmp_path / "static").glob("*.npy")
    assert kept.stat().st_mode & 0o777 == 0o644  # readable by workers running as other users
    find_or_derive(config)
    assert len(calls) == 1


def test_an_unwritable_cache_directory_derives_for_this_process_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _fake_tables(monkeypatch)
    (tmp_path / "static").write_text("a file where the tables' directory would be")
    with caplog.at_level(logging.WARNING, "asgi_aigw.runtime"):
        table = find_or_derive(RuntimeConfig(cache_dir=tmp_path))
    assert table.shape == (4, 3)
    assert len(calls) == 1
    assert "cannot keep the static embedding table" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a numpy file", "Cannot read the static embedding table"),
        (np.ones((4, 3), dtype=np.float32), "is not a static embedding table"),
        (np.ones(5, dtype=np.float16), "is not a static embedding table"),
    ],
)
def test_a_file_that_is_not_a_table_is_refused_clearly(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "table.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(StaticTableError, match=message):
        load_table(path)


async def test_a_table_of_another_vocabulary_is_refused_on_load(tmp_path: Path) -> None:
    path = tmp_path / "table.npy"
    np.save(path, np.ones((100, 8), dtype=np.float16))
    embedder = StaticEmbedder(RuntimeConfig(embedder=EmbedderSettings(backend="static", static_table=path)))
    with pytest.raises(StaticTableError, match="not of the same model"):
        await embedder.embed(["hello"])


async def test_an_explicit_table_is_used_as_given(tmp_path: Path, embedder: StaticEmbedder) -> None:
    path = tmp_path / "table.npy"
    # every vector flipped, saved as tables are (float16): visibly this table's
    np.save(path, -np.asarray(embedder.load()).astype(np.float16))
    mine = StaticEmbedder(
        RuntimeConfig(
            cache_dir=str(tmp_path / "cache"),
            embedder=EmbedderSettings(backend="static", static_table=path),
        )
    )
    (flipped,) = await mine.embed(["How do I reset my password?"])
    (usual,) = await embedder.embed(["How do I reset my password?"])
    np.testing.assert_allclose(flipped, -np.array(usual), atol=1e-6)


async def test_while_the_table_loads_other_calls_miss_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: StaticEmbedder
) -> None:
    from asgi_aigw.runtime import static_embedder
    from asgi_aigw.runtime.embedder import EmbedderError

    release = threading.Event()
    table = embedder.load()

    def slow_derivation(config: RuntimeConfig) -> np.ndarray:
        release.wait(10)  # a first derivation takes about 25 s
        return table

    monkeypatch.setattr(static_embedder, "find_or_derive", slow_derivation)
    fresh = StaticEmbedder(RuntimeConfig(embedder=EmbedderSettings(backend="static")))
    warm_up = asyncio.create_task(fresh.embed(["warm-up"]))
    await asyncio.sleep(0.05)
    # a request's lookup meanwhile: a miss now, not a wait for the derivation (or its 2 s timeout)
    with pytest.raises(EmbedderError, match="still being loaded"):
        await asyncio.wait_for(fresh.embed(["a question"]), 0.5)
    release.set()
    assert len((await warm_up)[0]) == 128
    assert len((await fresh.embed(["a question"]))[0]) == 128
    fresh.close()


def test_loading_gives_the_event_loop_back(embedder: StaticEmbedder) -> None:
    # loading (which may derive for 25 s) runs on the worker thread, not on the loop
    fresh = StaticEmbedder(RuntimeConfig(embedder=EmbedderSettings(backend="static")))
    loop_thread: list[str] = []

    async def main() -> None:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while not fresh.loaded:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await fresh.embed(["hello"])
        await ticker
        loop_thread.append(str(ticks))
        assert fresh.thread_texts == 0
        assert fresh.inline_texts == 1  # the table loaded on the thread, then the text embedded inline

    asyncio.run(main())
    assert int(loop_thread[0]) > 0
    fresh.close()


async def test_stored_cosines_are_these_vectors(embedder: StaticEmbedder) -> None:
    # tests/test_cache_verify.py holds the cache's targets to the stored column, without a model
    stored = json.loads((DATA / "cache_pairs_minilm.json").read_text())["cosine_static"]
    sample = _labelled()[::7]
    vectors = np.array(await embedder.embed([str(p["a"]) for p in sample] + [str(p["b"]) for p in sample]))
    n = len(sample)
    for i, pair in enumerate(sample):
        assert abs(float(vectors[i] @ vectors[n + i]) - stored[str(pair["id"])]) < 0.01, pair


def test_the_table_is_widened_once_and_gives_the_saved_tables_vectors_to_the_bit(
    embedder: StaticEmbedder,
) -> None:
    saved = find_or_derive(RuntimeConfig())  # float16 on disk, as derived
    table = embedder.load()
    # widened once at load: a sum of float16 rows widened them one element at a time, every question
    assert table.dtype == np.float32
    assert np.array_equal(table, saved.astype(np.float32))
    # mapped from a file of its own, as the float16 one is: a host's workers share its pages
    assert isinstance(table.base, np.memmap)
    assert str(table.base.filename).endswith(".f32.npy")
    question = "How do I reset the password of my account?"
    ids = embedder._pieces.ids(question) if embedder._pieces is not None else None
    assert ids
    expected = np.add.reduce(saved[ids], axis=0, dtype=np.float32)
    expected *= 1.0 / float(np.sqrt(np.dot(expected, expected)))
    assert embedder.embed_sync([question])[0] == expected.tolist()


def test_the_widened_table_is_kept_once_and_made_in_memory_where_it_cannot_be_kept(tmp_path: Path) -> None:
    path = tmp_path / "table[1].npy"  # a name with glob's characters: its own copies are still found
    np.save(path, np.arange(24, dtype=np.float16).reshape(6, 4))
    config = RuntimeConfig(cache_dir=str(tmp_path / "cache"))
    wide = static_table.widened(load_table(path), config)
    assert isinstance(wide, np.memmap)
    assert wide.dtype == np.float32
    assert np.array_equal(wide, np.arange(24, dtype=np.float32).reshape(6, 4))
    kept = Path(str(wide.filename))
    written = kept.stat().st_mtime_ns
    again = static_table.widened(load_table(path), config)
    assert Path(str(again.filename)) == kept
    assert kept.stat().st_mtime_ns == written  # read, not written again
    # the table at that path changes: its copy is made again, and replaces the old one
    np.save(path, np.ones((6, 4), dtype=np.float16))
    other = static_table.widened(load_table(path), config)
    assert np.array_equal(other, np.ones((6, 4), dtype=np.float32))
    assert not kept.exists()
    assert [p.name for p in kept.parent.glob("*.f32.npy")] == [Path(str(other.filename)).name]
    # a cache directory that is a file: widened in memory, with the same values
    blocked = RuntimeConfig(cache_dir=str(path))
    in_memory = static_table.widened(load_table(path), blocked)
    assert not isinstance(in_memory, np.memmap)
    assert np.array_equal(in_memory, np.ones((6, 4)))


@pytest.mark.parametrize(
    ("backend", "vector_store", "derives"),
    [("static", "memory://", True), ("fastembed", "memory://", False), ("static", None, False)],
)
def test_aigw_serve_derives_the_table_before_its_workers_start(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    backend: str,
    vector_store: str | None,
    derives: bool,
) -> None:
    from asgi_aigw.cache import CacheConfig
    from asgi_aigw.cli import serve
    from asgi_aigw.config import GatewayConfig

    calls: list[RuntimeConfig] = []

    def derive(config: RuntimeConfig) -> np.ndarray:
        calls.append(config)
        raise StaticTableError("no model here")

    monkeypatch.setattr(static_table, "find_or_derive", derive)
    runtime = RuntimeConfig(embedder=EmbedderSettings(backend=backend))  # type: ignore[arg-type]
    config = GatewayConfig(cache=CacheConfig(vector_store=vector_store), runtime=runtime)
    serve._prepare_static_table(config)
    assert calls == ([runtime] if derives else [])
    # a table that cannot be had is said, not raised: the cache misses and says it again
    assert ("static embedding table is not available: no model here" in capsys.readouterr().err) is derives


async def test_the_event_loop_never_waits_for_a_load_under_way_on_another_thread(
    monkeypatch: pytest.MonkeyPatch, embedder: StaticEmbedder
) -> None:
    from asgi_aigw.runtime import static_embedder

    release = threading.Event()
    table = embedder.load()

    def slow_derivation(config: RuntimeConfig) -> np.ndarray:
        release.wait(10)
        return table

    monkeypatch.setattr(static_embedder, "find_or_derive", slow_derivation)
    fresh = StaticEmbedder(RuntimeConfig(embedder=EmbedderSettings(backend="static")))
    preloading = threading.Thread(target=fresh.load)  # as `aigw serve --preload` or `dimension` do
    preloading.start()
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    # the loop's first call starts its own load on the worker thread: it must not wait for that lock
    first = asyncio.create_task(fresh.embed(["a question"]))
    await asyncio.sleep(0.05)
    assert asyncio.get_running_loop().time() - started < 1
    release.set()
    preloading.join()
    assert len((await first)[0]) == 128
    fresh.close()


def test_plain_ascii_questions_are_tokenized_by_the_fast_path_to_the_same_vectors(
    embedder: StaticEmbedder,
) -> None:
    questions = ["How do I reset my password?", "C++ vs. C#: which is faster?", "naïve café menu"]
    fast = embedder.embed_sync(questions)
    assert embedder._pieces is not None
    pieces, embedder._pieces = embedder._pieces, None
    try:
        library = embedder.embed_sync(questions)
    finally:
        embedder._pieces = pieces
    assert fast == library
    assert pieces.ids(questions[0]) is not None
    assert pieces.ids(questions[2]) is None
