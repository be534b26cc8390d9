"""The ProviderRouter ASGI app and its model registry."""

from .app import ProviderRouter
from .registry import ModelRegistry, ResolvedModel

__all__ = ["ModelRegistry", "ProviderRouter", "ResolvedModel"]
