"""``preload``: load now what the gateway would load on first use, before a server forks its workers.

A worker that loads the tokenizer, the PII engine and the embedding model itself holds its own copy of
each; loaded once in the parent (``aigw serve --preload``, or ``gunicorn --preload``), they are shared
copy-on-write by every forked worker. ``gc.freeze()`` then keeps the collector from touching (and so
copying) the pages of everything loaded so far.
"""

from __future__ import annotations

import gc
from typing import Any

from .config import GatewayConfig
from .kernel.types import ASGIApp
from .runtime.tokens import encoding_for_model, get_encoding


def preload(app: ASGIApp, config: GatewayConfig | None = None) -> None:
    """Load the tokenizer encodings of ``config``'s models (when it has a budget, which counts every
    prompt's tokens) and, in each layer of ``app`` (followed through ``.app``), the redaction engine
    and the semantic cache's embedding model; then freeze the collector's view of everything loaded and
    :func:`collect_less_often`. Starts no thread: safe to call before a fork."""
    if config is not None and config.budget is not None:  # the budget counts every prompt's tokens
        names = {name for m in config.router.models for name in (m.name, *(d.model for d in m.deployments))}
        for encoding in sorted({encoding_for_model(name) for name in names} or {encoding_for_model(None)}):
            get_encoding(encoding)
    layer: Any = app
    seen: set[int] = set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        scanner = getattr(layer, "scanner", None)
        if scanner is not None and hasattr(scanner, "engine"):
            scanner.engine()  # the recognizers (and spaCy's model unless regex-only)
        if getattr(layer, "vector", None) is not None:
            load = getattr(layer.embedder, "load", None)  # the ONNX model or the static table, on this thread
            if load is not None:
                load()
        layer = getattr(layer, "app", None)
    gc.freeze()
    collect_less_often()  # the forked workers inherit it


#: Container allocations (net of frees) between two collections of the youngest generation in a worker;
#: CPython's default is 700. The objects of the requests in flight (their coroutines, closures and
#: bodies, about 250 each through the full stack) are alive, so at the default every few requests a
#: collection walks all of them and finds nothing: 40 µs of CPU per forwarded request at 16 in flight
#: (``bench/stack_cpu.py``). No request leaves a cycle of the gateway's objects
#: (``tests/test_no_cycles.py``), so collecting less often keeps nothing longer but other code's cycles.
YOUNG_GENERATION_THRESHOLD = 10_000


def collect_less_often() -> None:
    """Raise the youngest generation's collection threshold to :data:`YOUNG_GENERATION_THRESHOLD`
    (never lower it); the older generations keep theirs. For a process that serves the gateway."""
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_GENERATION_THRESHOLD:  # 0: the collector was switched off on purpose
        gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive now out of the collector's reach (``gc.freeze()``).

    A worker builds the app once and then serves: what it imported and built lives as long as the
    process, yet every full collection walked it again, a pause proportional to the whole heap (a fifth
    of the CPU of an exact cache hit through the full stack, ``bench/stack_cpu.py``). Objects frozen
    are still freed when their last reference goes; only cycles among them are no longer looked for.
    Then :func:`collect_less_often`."""
    gc.collect()
    gc.freeze()
    collect_less_often()
