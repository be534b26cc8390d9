"""A mean-pooled sentence-embedding model run directly on onnxruntime and tokenizers.

fastembed runs the same two libraries; importing it costs about 40 MB per worker on top of them
(its model catalogue, huggingface_hub, PIL and more) for nothing the gateway uses when the model files
are already on disk. For the models listed in :data:`MEAN_POOLED` this module does what fastembed's
pooled-normalized models do: the tokenizer set up as fastembed sets it (truncation to the model's
context, batch-longest padding), the same session options, mean pooling in float64 over real
tokens, L2 normalisation. ``tests/test_runtime_onnx.py`` holds its vectors to fastembed's.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..kernel.optional import require
from .heap import release_free_heap
from .onnx_graph import rewrite_quantized

#: Tokens in one call (batch x padded length) from which the heap it freed is given back to the system,
#: 0.5-1 ms where such a call takes tens of ms or more; one short question (~15 tokens) never pays it.
#: 150 calls of 1 to 32 texts of up to 60 words: 282 MB RSS after them without it, 173 with it.
TRIM_AFTER_TOKENS = 128

#: Models fastembed embeds by mean pooling then normalising, whose files this module reads.
MEAN_POOLED = frozenset({"sentence-transformers/all-MiniLM-L6-v2"})


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as file:
        data = json.load(file)
    return data if isinstance(data, dict) else {}


def _context(tokenizer_config: dict[str, Any]) -> int:
    limits = [
        value
        for value in (tokenizer_config.get("model_max_length"), tokenizer_config.get("max_length"))
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9
    ]
    if not limits:
        raise ValueError("tokenizer_config.json sets no model_max_length or max_length")
    return min(limits)


def load_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer, truncating and padding as fastembed's ``load_tokenizer`` sets it."""
    tokenizers = require("tokenizers", "embed")
    tokenizer_config = _read_json(model_dir / "tokenizer_config.json")
    config = _read_json(model_dir / "config.json")
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    truncation = tokenizer.truncation or {}
    tokenizer.enable_truncation(
        max_length=_context(tokenizer_config),
        direction=tokenizer_config.get("truncation_side") or truncation.get("direction", "right"),
    )
    for value in _read_json(model_dir / "special_tokens_map.json").values():
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, str):
                tokenizer.add_special_tokens([token])
            elif isinstance(token, dict):
                tokenizer.add_special_tokens([tokenizers.AddedToken(**token)])
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token") or tokenizer_config.get("pad_token")
    if pad_token is None:
        raise ValueError(f"no pad token for {model_dir}")
    pad_id = padding.get("pad_id", config.get("pad_token_id"))
    if pad_id is None:
        pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ValueError(f"no id for the pad token {pad_token!r} in {model_dir}")
    tokenizer.enable_padding(
        direction=tokenizer_config.get("padding_side") or padding.get("direction", "right"),
        pad_id=pad_id,
        pad_type_id=padding.get("pad_type_id", 0),
        pad_token=pad_token,
        pad_to_multiple_of=padding.get("pad_to_multiple_of"),
        length=None,
    )
    return tokenizer


def onnx_session(ort: Any, path: Path, options: Any, *, int8_matmul: bool) -> tuple[Any, int]:
    """The model's session, its quantized embedding tables kept int8 (34 MB less for the default model,
    the same vectors) and, with ``int8_matmul``, its matrix products too: see :mod:`.onnx_graph`. With
    the number of matrix products done in int8."""
    rewritten = rewrite_quantized(path.read_bytes(), int8_matmul=int8_matmul)
    if rewritten is None:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"]), 0
    model, fused = rewritten
    # loaded from a file, not from the bytes: onnxruntime's Python session keeps bytes for its whole life
    try:
        fd, name = tempfile.mkstemp(suffix=".onnx", prefix="aigw-model-")
    except OSError:  # no writable temporary directory: the bytes then (23 MB held, still 11 MB less)
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"]), fused
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(model)
        del model, rewritten
        return ort.InferenceSession(name, sess_options=options, providers=["CPUExecutionProvider"]), fused
    finally:
        os.unlink(name)


class MeanPooledOnnxModel:
    """``embed(texts, batch_size)`` as fastembed's ``TextEmbedding`` offers it, for one local model.

    ``int8_matmul`` multiplies by the model's int8 weights in int8 (:func:`.onnx_graph.int8_matmuls`);
    without it the vectors are fastembed's."""

    def __init__(
        self, model_dir: Path, *, threads: int, session_options: dict[str, Any], int8_matmul: bool = False
    ) -> None:
        ort = require("onnxruntime", "embed")
        self.tokenizer = load_tokenizer(model_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        for name, value in session_options.items():
            setattr(options, name, value)
        self.session, fused = onnx_session(ort, model_dir / "model.onnx", options, int8_matmul=int8_matmul)
        # int8 products quantize a call's activations with one scale: a text's vector would then depend
        # on the texts beside it and their padding, so each text is its own call (as fast per text:
        # 2.4 ms alone or in a call of 32, where float32 takes 5.3 in a call of 32)
        self.max_call = 1 if fused else None
        self._inputs = {node.name for node in self.session.get_inputs()}

    def embed(self, texts: Sequence[str], batch_size: int = 256) -> Iterator[np.ndarray[Any, Any]]:
        batch_size = min(batch_size, self.max_call or batch_size)
        for start in range(0, len(texts), batch_size):
            yield from self._batch(list(texts[start : start + batch_size]))

    def _batch(self, texts: list[str]) -> np.ndarray[Any, Any]:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids}
        if "attention_mask" in self._inputs:
            feed["attention_mask"] = mask
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        output = self.session.run(None, feed)[0]
        if ids.size >= TRIM_AFTER_TOKENS:
            # the call's tensors (attention grows with batch x length squared: 100 MB for 32 texts of
            # 256 tokens) were freed into glibc's heap, which keeps what later calls fragment
            release_free_heap()
        summed = np.sum(output, axis=1, where=mask[:, :, np.newaxis].astype(bool), dtype=np.float64)
        pooled = summed / np.maximum(np.sum(mask, axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        result: np.ndarray[Any, Any] = (pooled / norms).astype(output.dtype, copy=False)
        return result
