"""The embedder the semantic layer uses: the runtime's shared one unless the application passes its own."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger("asgi_aigw.cache")


@runtime_checkable
class Embedder(Protocol):
    """What :mod:`asgi_aigw.runtime.embedder` provides: unit vectors, computed off the event loop."""

    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def runtime_embedder(config: Any) -> Embedder | None:
    """The process-wide embedder of the offline runtime (all-MiniLM-L6-v2 by default), or ``None`` when
    the runtime is not available (the semantic layer is then off and the exact layer works alone)."""
    try:
        module = importlib.import_module("asgi_aigw.runtime.embedder")
    except ImportError:
        logger.warning("asgi_aigw.runtime is not available: the semantic cache layer is off")
        return None
    runtime_config = getattr(config, "runtime", None)
    embedder: Embedder = module.get_embedder(runtime_config)
    return embedder
