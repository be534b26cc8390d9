"""Kept for compatibility: :class:`StreamingASGITransport` now lives in :mod:`asgi_aigw.client`."""

from ..client import StreamingASGITransport

__all__ = ["StreamingASGITransport"]
