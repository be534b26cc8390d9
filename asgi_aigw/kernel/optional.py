"""Lazy imports of optional dependencies, with the install hint in the error."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"'{module}' is required for this feature but is not installed. "
            f"Install it with: pip install 'asgi-aigw[{extra}]'"
        ) from exc
