"""Text embeddings for the semantic cache: a small protocol and two implementations.

- :class:`FastEmbedEmbedder` runs an ONNX model in process (fastembed + onnxruntime) on one worker
  thread, never on the event loop. Concurrent ``embed`` calls are queued and embedded together in one
  model call (up to ``max_batch`` texts), and an LRU keeps the vectors of recent texts.
- :class:`OpenAIEmbedder` calls any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Ollama,
  text-embeddings-inference, vLLM), for deployments that move embedding off the gateway's CPU.

Both return unit-length vectors, so a dot product is the cosine similarity. :func:`get_embedder`
returns one shared instance per configuration; nothing is loaded until the first ``embed``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import httpx
import numpy as np

from ..kernel.optional import require
from .assets import cache_dir, find_embedding_model_dir
from .config import DEFAULT_EMBEDDING_MODEL, RuntimeConfig
from .cpu import int8_products
from .embed_error import EmbedderError as EmbedderError  # where it was defined before: still importable here
from .heap import release_free_heap
from .onnx_model import MEAN_POOLED, MeanPooledOnnxModel
from .pages import release_package_pages
from .tokens import runtime_config

if TYPE_CHECKING:
    from numpy.typing import NDArray

    Vector = NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What the semantic cache needs from an embedding model."""

    @property
    def dimension(self) -> int:
        """Length of every vector ``embed`` returns (for creating vector collections)."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""
        ...


#: Vector sizes of models whose size is known without loading them.
KNOWN_DIMENSIONS = {DEFAULT_EMBEDDING_MODEL: 384}


def _normalise(matrix: Vector) -> Vector:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: Vector = matrix / norms
    return normalised


class _VectorLRU:
    """Recent vectors by text digest (not by text: long prompts would otherwise pin memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[bytes, Vector] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, text: str) -> Vector | None:
        if self.size == 0:
            return None
        key = self.key(text)
        with self._lock:
            vector = self._data.get(key)
            if vector is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return vector

    def put(self, text: str, vector: Vector) -> None:
        if self.size == 0:
            return
        key = self.key(text)
        with self._lock:
            self._data[key] = vector
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def _split_cached(cache: _VectorLRU, texts: Sequence[str]) -> tuple[list[Vector | None], list[str]]:
    """Cached vectors (None where missing) and the distinct texts still to embed."""
    found: list[Vector | None] = [cache.get(text) for text in texts]
    todo = list(dict.fromkeys(text for text, vec in zip(texts, found, strict=True) if vec is None))
    return found, todo


def _merge(
    texts: Sequence[str], found: list[Vector | None], fresh: Mapping[str, Vector]
) -> list[list[float]]:
    out: list[list[float]] = []
    for text, vector in zip(texts, found, strict=True):
        chosen = vector if vector is not None else fresh[text]
        out.append(chosen.tolist())
    return out


# -- fastembed, in process --------------------------------------------------------------------------


#: onnxruntime session options passed through fastembed (see ``FastEmbedEmbedder._load``).
_SESSION_OPTIONS: dict[str, Any] = {"enable_cpu_mem_arena": False}


@dataclass
class _Job:
    texts: list[str]
    future: concurrent.futures.Future[dict[str, Vector]]


_STOP = object()


class FastEmbedEmbedder:
    """fastembed's ``TextEmbedding`` on a dedicated worker thread, loaded on first use.

    ``model_dir`` is a directory with ``model.onnx`` and the tokenizer files; without it the model is
    found through ``config`` (offline packages, asset dir, or a download when allowed).
    ``threads`` bounds onnxruntime's threads for one inference; one call runs at a time, so the gateway
    uses at most ``threads`` cores for embeddings whatever the load. ``int8_matmul`` (``auto``: where
    the CPU multiplies int8 exactly) runs the default model's matrix products in int8; models fastembed
    itself runs are left as they are."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_EMBEDDING_MODEL,
        model_dir: str | os.PathLike[str] | None = None,
        threads: int = 1,
        max_batch: int = 32,
        cache_size: int = 0,
        dimension: int | None = None,
        int8_matmul: Literal["auto", "on", "off"] = "auto",
        config: RuntimeConfig | None = None,
    ) -> None:
        self.model_name = model
        self.threads = threads
        self.int8_matmul = int8_products(int8_matmul)
        self.max_batch = max_batch
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._config = config or RuntimeConfig()
        self._dimension = dimension or KNOWN_DIMENSIONS.get(model)
        self._cache = _VectorLRU(cache_size)
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._model: Any = None
        #: Model calls made and texts embedded by them (batching makes calls < requests).
        self.model_calls = 0
        self.texts_embedded = 0

    # public API

    @property
    def dimension(self) -> int:
        """Known from configuration or the model catalogue; otherwise one probe embedding (blocking)."""
        if self._dimension is None:
            self._dimension = len(self._submit([" "]).result()[" "])
        return self._dimension

    async def probe_dimension(self) -> int:
        if self._dimension is None:
            vectors = await asyncio.wrap_future(self._submit([" "]))
            self._dimension = len(vectors[" "])
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        found, todo = _split_cached(self._cache, texts)
        fresh: dict[str, Vector] = {}
        if todo:
            fresh = await asyncio.wrap_future(self._submit(todo))
        return _merge(texts, found, fresh)

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """:meth:`embed` for threads without an event loop (CLI, benchmarks)."""
        texts = list(texts)
        found, todo = _split_cached(self._cache, texts)
        fresh = self._submit(todo).result() if todo else {}
        return _merge(texts, found, fresh)

    def load(self) -> None:
        """Load the model now (in this thread) instead of on the first ``embed``."""
        self._ensure_model()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def close(self) -> None:
        """Stop the worker thread (the model stays loaded; a later ``embed`` restarts the thread)."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()

    @property
    def cache_info(self) -> dict[str, int]:
        return {"hits": self._cache.hits, "misses": self._cache.misses, "size": len(self._cache)}

    # worker

    def _submit(self, texts: list[str]) -> concurrent.futures.Future[dict[str, Vector]]:
        future: concurrent.futures.Future[dict[str, Vector]] = concurrent.futures.Future()
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="aigw-embedder", daemon=True)
                    self._thread.start()
        self._queue.put(_Job(texts, future))
        return future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            jobs = [first]
            stop = False
            # everything queued while the previous batch ran goes into this model call
            while sum(len(job.texts) for job in jobs) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                assert isinstance(item, _Job)
                jobs.append(item)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if live:
                self._serve(live)
            if stop:
                return

    def _serve(self, jobs: list[_Job]) -> None:
        texts = list(dict.fromkeys(text for job in jobs for text in job.texts))
        try:
            model = self._ensure_model()
            matrix = _normalise(np.stack(list(model.embed(texts, batch_size=self.max_batch))))
        except BaseException as exc:
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.model_calls += 1
        self.texts_embedded += len(texts)
        vectors = dict(zip(texts, matrix, strict=True))
        for text, vector in vectors.items():
            self._cache.put(text, vector)
        for job in jobs:
            job.future.set_result({text: vectors[text] for text in job.texts})

    def _ensure_model(self) -> Any:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
                release_free_heap()  # what loading freed (about 60 MB for the default model)
                # building the session read about 20 MB of onnxruntime's library that embedding does not
                release_package_pages("onnxruntime.capi", "tokenizers")
        return self._model

    def _load(self) -> Any:
        model_dir = self._model_dir or find_embedding_model_dir(self._config)
        if self.model_name in MEAN_POOLED and model_dir is not None and (model_dir / "model.onnx").is_file():
            # the same model, tokenizer and pooling as fastembed's, without importing fastembed (~40 MB)
            try:
                return MeanPooledOnnxModel(
                    model_dir,
                    threads=self.threads,
                    session_options=_SESSION_OPTIONS,
                    int8_matmul=self.int8_matmul,
                )
            except Exception as exc:  # onnxruntime's own errors (a corrupt model) derive from Exception
                raise EmbedderError(f"Cannot load {self.model_name!r} from {model_dir}: {exc}") from exc
        fastembed = require("fastembed", "embed")
        # fastembed sets onnxruntime's intra- and inter-op threads both to ``threads``; the CPU memory
        # arena is off: it grows to the largest batch seen and never gives memory back (a burst of 32
        # long questions held hundreds of MB for the life of the process), for no measurable speed here
        options: dict[str, Any] = {"threads": self.threads, **_SESSION_OPTIONS}
        if model_dir is not None:
            if not (model_dir / "model.onnx").is_file():
                raise EmbedderError(f"The embedding model directory {model_dir} has no model.onnx.")
            options["specific_model_path"] = str(model_dir)
        else:  # runtime.allow_downloads: fastembed's own download into our cache directory
            options["cache_dir"] = str(cache_dir(self._config) / "fastembed-downloads")
        try:
            return fastembed.TextEmbedding(model_name=self.model_name, **options)
        except ValueError as exc:  # unknown model name, bad directory
            raise EmbedderError(f"fastembed cannot load {self.model_name!r} from {model_dir}: {exc}") from exc


# -- any OpenAI-compatible endpoint -----------------------------------------------------------------


class OpenAIEmbedder:
    """``POST {base_url}/embeddings`` on a shared, pooled httpx client (one per event loop).

    ``dimension`` must be configured, or is learned from the first answer (``probe_dimension()`` asks
    for one). ``transport`` replaces the network (tests: ``StreamingASGITransport(FakeProvider())``)."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimension: int | None = None,
        send_dimensions: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_batch: int = 256,
        cache_size: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model_name = model
        self.max_batch = max_batch
        self._dimension = dimension
        self._send_dimensions = send_dimensions and dimension is not None
        self._headers = {"content-type": "application/json", **(headers or {})}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._transport = transport
        self._cache = _VectorLRU(cache_size)
        self._clients: dict[int, httpx.AsyncClient] = {}

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise EmbedderError(
                f"The vector size of {self.model_name!r} is not known yet: set runtime.embedder.dimension, "
                "or await probe_dimension() once before reading it."
            )
        return self._dimension

    async def probe_dimension(self) -> int:
        if self._dimension is None:
            await self.embed(["dimension probe"])
        return self.dimension

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        found, todo = _split_cached(self._cache, texts)
        fresh: dict[str, Vector] = {}
        for start in range(0, len(todo), self.max_batch):
            chunk = todo[start : start + self.max_batch]
            matrix = await self._call(chunk)
            for text, vector in zip(chunk, matrix, strict=True):
                fresh[text] = vector
                self._cache.put(text, vector)
        return _merge(texts, found, fresh)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.aclose()
            except RuntimeError:  # opened on a loop that has closed since
                pass

    def _client(self) -> httpx.AsyncClient:
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
            self._clients[loop_id] = client
        return client

    async def _call(self, texts: list[str]) -> Vector:
        payload: dict[str, Any] = {"model": self.model_name, "input": texts, "encoding_format": "float"}
        if self._send_dimensions:
            payload["dimensions"] = self._dimension
        try:
            response = await self._client().post(self.url, json=payload, headers=self._headers)
        except httpx.HTTPError as exc:
            raise EmbedderError(f"The embeddings endpoint {self.url} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise EmbedderError(
                f"The embeddings endpoint {self.url} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            items = sorted(response.json()["data"], key=lambda item: item["index"])
            rows = [_decode(item["embedding"]) for item in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(f"The embeddings endpoint {self.url} sent an unreadable answer") from exc
        if len(rows) != len(texts):
            raise EmbedderError(
                f"The embeddings endpoint {self.url} sent {len(rows)} vectors for {len(texts)}"
            )
        matrix = _normalise(np.stack(rows))
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        elif matrix.shape[1] != self._dimension:
            raise EmbedderError(
                f"The embeddings endpoint {self.url} sent {matrix.shape[1]}-dimensional vectors; "
                f"runtime.embedder.dimension is {self._dimension}."
            )
        return matrix


def _decode(embedding: Any) -> Vector:
    if isinstance(embedding, str):  # base64 little-endian float32, when a server ignores encoding_format
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


# -- shared instances -------------------------------------------------------------------------------

_instances: dict[str, Embedder] = {}
_instances_lock = threading.Lock()


def _instance_key(config: RuntimeConfig) -> str:
    parts = [
        config.embedder.model_dump_json(),
        str(config.asset_dir),
        str(config.cache_dir),
        str(config.allow_downloads),
    ]
    return "\n".join(parts)


def create_embedder(config: RuntimeConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> Embedder:
    """A new embedder for ``config.embedder`` (prefer :func:`get_embedder`, which shares one)."""
    settings = config.embedder
    if settings.backend == "openai":
        if not settings.base_url:
            raise EmbedderError(
                "runtime.embedder.backend is 'openai' but runtime.embedder.base_url is not set."
            )
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        if api_key is None and settings.api_key_env:
            api_key = os.environ.get(settings.api_key_env)
        return OpenAIEmbedder(
            base_url=settings.base_url,
            model=settings.model,
            api_key=api_key,
            dimension=settings.dimension,
            send_dimensions=settings.send_dimensions,
            headers=settings.headers,
            timeout=settings.timeout,
            max_batch=max(settings.max_batch, 1),
            cache_size=settings.cache_size,
            transport=transport,
        )
    if settings.backend == "static":
        from .static_embedder import StaticEmbedder

        return StaticEmbedder(config)
    return FastEmbedEmbedder(
        model=settings.model,
        model_dir=settings.model_dir,
        threads=settings.threads,
        max_batch=settings.max_batch,
        cache_size=settings.cache_size,
        dimension=settings.dimension,
        int8_matmul=settings.int8_matmul,
        config=config,
    )


def get_embedder(config: RuntimeConfig | None = None) -> Embedder:
    """The process-wide embedder for this configuration, else for the one ``build_app`` set (its
    ``runtime:`` section): created on first call, loads nothing."""
    config = config or runtime_config()
    key = _instance_key(config)
    embedder = _instances.get(key)
    if embedder is None:
        with _instances_lock:
            embedder = _instances.get(key)
            if embedder is None:
                embedder = create_embedder(config)
                _instances[key] = embedder
    return embedder
