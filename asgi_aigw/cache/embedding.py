"""The embedder the semantic layer uses: the offline runtime's shared one unless the application passes
its own (any object with ``dimension`` and ``async embed(texts)``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..kernel.optional import MissingDependency, require

if TYPE_CHECKING:
    from ..runtime.config import RuntimeConfig

logger = logging.getLogger("asgi_aigw.cache")


@runtime_checkable
class Embedder(Protocol):
    """What :class:`asgi_aigw.runtime.embedder.Embedder` provides: unit vectors, computed off the event
    loop. Restated here so that importing the cache does not import numpy."""

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def runtime_embedder(config: RuntimeConfig | None = None) -> Embedder | None:
    """The runtime's process-wide embedder (all-MiniLM-L6-v2 from local files by default; nothing is
    loaded before the first ``embed``), or ``None`` when the ``embed`` extra is not installed: the
    semantic layer is then off and the exact layer works alone."""
    try:
        module = require("asgi_aigw.runtime.embedder", "embed")
    except MissingDependency as exc:
        logger.warning("semantic cache layer off: %s", exc)
        return None
    embedder: Embedder = module.get_embedder(config)
    return embedder
