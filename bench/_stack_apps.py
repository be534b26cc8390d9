"""Apps for bench/stack.py and bench/memory.py, built in each uvicorn worker (``--factory``) from the environment:
``BENCH_UPSTREAM`` (FakeProvider's chat URL), ``BENCH_REDIS``, ``BENCH_KEY_PREFIX``, ``BENCH_DATA_DIR``
(where the embedded stores keep their files) and ``BENCH_STACK`` (which layers, comma-separated)."""

from __future__ import annotations

import os
from typing import Any

from _fullstack_apps import router_section

from asgi_aigw import build_app
from asgi_aigw.config import GatewayConfig

#: Every layer bench/memory.py knows, by name.
LAYERS = (
    "tenant",
    "budget",
    "budget-memory",
    "redact",
    "exact",
    "exact-memory",
    "semantic",
    "semantic-memory",
    "chdb",
    "jsonl",
)


def stack_config(layers: set[str]) -> GatewayConfig:
    """The router in front of ``BENCH_UPSTREAM`` with ``layers`` around it: ``tenant`` (header),
    ``budget`` (Redis) or ``budget-memory``, ``redact`` (regex-only), ``exact`` (the exact cache in Redis)
    or ``exact-memory``, ``semantic`` (plus the embedded Qdrant Edge layer, the cache's default) or
    ``semantic-memory`` (vectors in a dict),
    ``chdb`` or ``jsonl`` (the request log). Embedded stores get a directory of their own per process."""
    unknown = layers - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layers {sorted(unknown)}; known: {LAYERS}")
    upstream = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9001/v1/chat/completions")
    redis = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
    prefix = os.environ.get("BENCH_KEY_PREFIX", "aigw-bench:")
    data_dir = os.environ.get("BENCH_DATA_DIR", ".aigw-bench")
    data: dict[str, Any] = {"router": router_section(upstream)}
    if "tenant" in layers:
        data["tenant"] = {"header": "x-tenant-id"}
    if "budget" in layers or "budget-memory" in layers:
        data["budget"] = {
            "store": redis if "budget" in layers else "memory://",
            "key_prefix": prefix,
            "limits": {"requests_per_minute": 10**9, "tokens_per_minute": 10**12},
        }
    if "redact" in layers:
        data["redact"] = {"regex_only": True}
    own = f"{data_dir}/{os.getpid()}"  # Qdrant Edge's shard and chDB's directory are one process's
    if layers & {"exact", "exact-memory", "semantic", "semantic-memory"}:
        vectors = f"qdrant-edge://{own}/vectors" if "semantic" in layers else None
        if "semantic-memory" in layers:  # vectors in the process: one worker's app shared by forks
            vectors = "memory://"
        store = "memory://" if "exact-memory" in layers else redis
        data["cache"] = {"store": store, "vector_store": vectors, "key_prefix": f"{prefix}cache:", "ttl": 600}
    if "chdb" in layers:
        data["log"] = {"store": f"chdb://{own}/chdb", "spool_dir": f"{own}/spool"}
    elif "jsonl" in layers:
        data["log"] = {"store": f"jsonl://{own}/requests.jsonl", "spool_dir": None}
    return GatewayConfig.model_validate(data)


def build(layers: set[str]) -> Any:
    """The app of ``layers`` as an ``aigw serve`` worker builds it (its startup heap frozen, when this
    version of the gateway does that)."""
    app = build_app(stack_config(layers), env={})
    try:
        from asgi_aigw.preload import freeze_startup_heap
    except ImportError:  # an older version, compared in the same run
        return app
    freeze_startup_heap()
    return app


def stack() -> Any:
    layers = {name for name in os.environ.get("BENCH_STACK", "").split(",") if name}
    return build(layers)


def preloaded() -> Any:
    """:func:`stack` with everything it loads lazily loaded now: the app a server builds once before
    forking its workers (``gunicorn --preload``), so the workers share those pages copy-on-write."""
    import gc

    from asgi_aigw.runtime.tokens import count_text_tokens

    app = stack()
    count_text_tokens("warm-up", "gpt-4o-mini")  # the budget's tokenizer
    layer: Any = app
    while layer is not None:
        if hasattr(layer, "scanner"):
            layer.scanner.engine()  # the redaction engine (its recognizers, spaCy's model unless regex-only)
        if getattr(layer, "vector", None) is not None:
            embedder = layer.embedder
            if hasattr(embedder, "load"):
                embedder.load()  # the ONNX model, on this thread: no worker thread before the fork
        layer = getattr(layer, "app", None)
    # objects made so far are never collected: the collector would touch (and so copy) their pages
    gc.freeze()
    return app
