"""The default embedding model run directly on onnxruntime gives fastembed's vectors, without fastembed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asgi_aigw.runtime.assets import find_embedding_model_dir
from asgi_aigw.runtime.config import DEFAULT_EMBEDDING_MODEL, RuntimeConfig
from asgi_aigw.runtime.cpu import multiplies_int8_exactly
from asgi_aigw.runtime.embedder import EmbedderError, FastEmbedEmbedder
from asgi_aigw.runtime.onnx_graph import _fields, _tensor_header, gather_before_dequantize, int8_matmuls
from asgi_aigw.runtime.onnx_model import MeanPooledOnnxModel

SENTENCES = [
    "How do I reset my password?",
    "What's the way to change my password?",
    " ",
    "Grüße aus München, 東京 and Zürich! 🚀",
    "refund " * 400,  # longer than the model's 256-token context: truncated
    "Explain how photosynthesis works, step by step, for a ten-year-old.",
    "x",
]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    found = find_embedding_model_dir(RuntimeConfig())
    assert found is not None
    return found


def test_same_vectors_as_fastembed(model_dir: Path) -> None:
    fastembed = pytest.importorskip("fastembed")
    theirs = fastembed.TextEmbedding(
        model_name=DEFAULT_EMBEDDING_MODEL, specific_model_path=str(model_dir), threads=1
    )
    ours = MeanPooledOnnxModel(model_dir, threads=1, session_options={"enable_cpu_mem_arena": False})
    for batch_size in (1, 3, 32):
        a = np.stack(list(theirs.embed(SENTENCES, batch_size=batch_size)))
        b = np.stack(list(ours.embed(SENTENCES, batch_size=batch_size)))
        assert a.shape == b.shape == (len(SENTENCES), 384)
        assert b.dtype == a.dtype
        cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosines.min() > 0.99999
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=1e-5)


def test_default_model_never_imports_fastembed() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from asgi_aigw.runtime.embedder import FastEmbedEmbedder
        embedder = FastEmbedEmbedder(cache_size=0)
        vector = embedder.embed_sync(["How do I reset my password?"])[0]
        embedder.close()
        print(json.dumps({"size": len(vector), "fastembed": "fastembed" in sys.modules,
                          "onnxruntime": "onnxruntime" in sys.modules}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"size": 384, "fastembed": False, "onnxruntime": True}


def test_corrupt_model_is_reported(model_dir: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    (tmp_path / "model.onnx").write_bytes(b"not an onnx model")
    embedder = FastEmbedEmbedder(model_dir=tmp_path, cache_size=0)
    try:
        with pytest.raises(EmbedderError, match="Cannot load"):
            embedder.embed_sync(["x"])
    finally:
        embedder.close()


def test_embedding_tables_stay_int8_and_the_vectors_stay_bit_for_bit_the_same(
    model_dir: Path, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    original = (model_dir / "model.onnx").read_bytes()
    rewritten = gather_before_dequantize(original)
    assert rewritten is not None
    assert gather_before_dequantize(rewritten) is None  # every table read by row already
    optimized = tmp_path / "optimized.onnx"
    options = {"enable_cpu_mem_arena": False}
    ours = MeanPooledOnnxModel(
        model_dir, threads=1, session_options={**options, "optimized_model_filepath": str(optimized)}
    )
    # the word-embedding table, after onnxruntime's optimisations: still int8 (folded, it was float32)
    graph = next(value for number, _, value, _ in _fields(optimized.read_bytes()) if number == 7)
    assert isinstance(graph, bytes)
    tables = [_tensor_header(value) for number, _, value, _ in _fields(graph) if number == 5]
    assert [(kind, dims) for _, kind, dims in tables if dims == [30522, 384]] == [(3, [30522, 384])]
    # the same pipeline on the file as it is, every weight dequantized at load
    reference = MeanPooledOnnxModel(model_dir, threads=1, session_options=options)
    session = ort.SessionOptions()
    session.intra_op_num_threads = session.inter_op_num_threads = 1
    session.enable_cpu_mem_arena = False
    reference.session = ort.InferenceSession(
        str(model_dir / "model.onnx"), sess_options=session, providers=["CPUExecutionProvider"]
    )
    for batch_size in (1, 3, 32):
        a = np.stack(list(reference.embed(SENTENCES, batch_size=batch_size)))
        b = np.stack(list(ours.embed(SENTENCES, batch_size=batch_size)))
        assert a.shape == (len(SENTENCES), 384)
        assert np.array_equal(a, b)


def test_a_file_that_is_not_a_model_is_left_to_onnxruntime() -> None:
    assert gather_before_dequantize(b"not an onnx model") is None
    assert gather_before_dequantize(b"\x0a\x05ab") is None  # a field longer than the message


def test_a_large_call_gives_its_tensors_memory_back_a_short_question_does_not(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_aigw.runtime import onnx_model

    model = MeanPooledOnnxModel(model_dir, threads=1, session_options={"enable_cpu_mem_arena": False})
    calls: list[int] = []
    monkeypatch.setattr(onnx_model, "release_free_heap", lambda: calls.append(1))
    list(model.embed(["What is the capital of France?"]))
    assert calls == []
    list(model.embed(["refund " * 40] * 8))  # 8 x 42 tokens
    assert calls == [1]


def test_without_a_writable_temporary_directory_the_model_loads_from_bytes(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    options = {"enable_cpu_mem_arena": False}
    expected = list(MeanPooledOnnxModel(model_dir, threads=1, session_options=options).embed(SENTENCES))

    def refused(**_: object) -> tuple[int, str]:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    model = MeanPooledOnnxModel(model_dir, threads=1, session_options=options)
    assert np.array_equal(np.stack(list(model.embed(SENTENCES))), np.stack(expected))


def _optimized_initializers(
    model_dir: Path, tmp_path: Path, *, int8_matmul: bool
) -> list[tuple[str, int, list[int]]]:
    optimized = tmp_path / f"optimized-{int8_matmul}.onnx"
    MeanPooledOnnxModel(
        model_dir,
        threads=1,
        session_options={"enable_cpu_mem_arena": False, "optimized_model_filepath": str(optimized)},
        int8_matmul=int8_matmul,
    )
    graph = next(value for number, _, value, _ in _fields(optimized.read_bytes()) if number == 7)
    assert isinstance(graph, bytes)
    return [_tensor_header(value) for number, _, value, _ in _fields(graph) if number == 5]


def test_int8_products_keep_the_weights_int8(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    original = (model_dir / "model.onnx").read_bytes()
    rewritten = int8_matmuls(original)
    assert rewritten is not None
    assert int8_matmuls(rewritten) is None  # nothing left to rewrite
    graph = next(value for number, _, value, _ in _fields(rewritten) if number == 7)
    assert isinstance(graph, bytes)
    ops = [
        next(v for n, _, v, _ in _fields(node) if n == 4)
        for number, _, node, _ in _fields(graph)
        if number == 1 and isinstance(node, bytes)
    ]
    # the six layers' four attention and two feed-forward products
    assert ops.count(b"DynamicQuantizeMatMul") == 36
    # after onnxruntime's optimisations: with float products every 384 x 384 and 384 x 1536 weight is
    # float32 (folded at load); with int8 products each is held as int8
    weights = {(384, 384), (384, 1536), (1536, 384)}
    for int8_matmul, kind in ((False, 1), (True, 3)):
        tables = _optimized_initializers(model_dir, tmp_path, int8_matmul=int8_matmul)
        found = [k for _, k, dims in tables if tuple(dims) in weights]
        assert len(found) == 36
        assert set(found) == {kind}, int8_matmul


def test_int8_products_give_nearly_the_same_vectors_whatever_the_batch(model_dir: Path) -> None:
    options = {"enable_cpu_mem_arena": False}
    float_model = MeanPooledOnnxModel(model_dir, threads=1, session_options=options)
    int8_model = MeanPooledOnnxModel(model_dir, threads=1, session_options=options, int8_matmul=True)
    reference = np.stack(list(float_model.embed(SENTENCES)))
    alone = np.stack([next(int8_model.embed([text])) for text in SENTENCES])
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, rtol=1e-5)
    if multiplies_int8_exactly():  # elsewhere onnxruntime's 16-bit sums may saturate: not measured
        cosines = np.sum(reference * alone, axis=1)
        assert cosines.min() > 0.98  # one-character texts (" ", "x") move most
        assert np.median(cosines) > 0.994
    # a text's vector does not depend on the texts it is embedded with
    for batch_size in (3, 32):
        together = np.stack(list(int8_model.embed(SENTENCES, batch_size=batch_size)))
        assert np.array_equal(together, alone)
    if multiplies_int8_exactly():  # paraphrases stay close, unrelated questions far apart
        pair = np.stack(
            list(int8_model.embed(["How do I reset my password?", "What is the capital of France?"]))
        )
        assert float(alone[0] @ alone[1]) > 0.8 > 0.2 > float(pair[0] @ pair[1])


def test_int8_products_need_a_dequantized_int8_weight() -> None:
    assert int8_matmuls(b"not an onnx model") is None


def test_texts_are_called_one_by_one_only_when_products_run_in_int8(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgi_aigw.runtime import onnx_model
    from asgi_aigw.runtime.onnx_graph import Rewritten

    options = {"enable_cpu_mem_arena": False}
    assert MeanPooledOnnxModel(model_dir, threads=1, session_options=options, int8_matmul=True).max_call == 1

    # a model with no int8 product to rewrite (float weights): its batches stay batches
    def tables_only(data: bytes, *, int8_matmul: bool) -> Rewritten | None:
        model = gather_before_dequantize(data)
        return None if model is None else Rewritten(model, 0)

    monkeypatch.setattr(onnx_model, "rewrite_quantized", tables_only)
    assert (
        MeanPooledOnnxModel(model_dir, threads=1, session_options=options, int8_matmul=True).max_call is None
    )
