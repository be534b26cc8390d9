"""The error every embedder raises, apart from the embedders, so that each of them can raise it."""

from __future__ import annotations


class EmbedderError(RuntimeError):
    """Embedding failed (model missing or broken, endpoint error); the message says what to fix."""
