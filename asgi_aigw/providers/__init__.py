"""Provider adapters, by name."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import (
    Deployment,
    ProviderAdapter,
    StreamTranslator,
    Timeout,
    TranslatedResponse,
    UpstreamRequest,
)
from .gemini import GeminiAdapter
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter

#: Adapters by the provider name used in configuration and in ``PROVIDER/MODEL`` model names.
ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "ollama": OllamaAdapter(),
}


def register_adapter(adapter: ProviderAdapter) -> None:
    """Make a provider available to the router under ``adapter.name``."""
    ADAPTERS[adapter.name] = adapter


__all__ = [
    "ADAPTERS",
    "AnthropicAdapter",
    "Deployment",
    "GeminiAdapter",
    "OllamaAdapter",
    "OpenAIAdapter",
    "ProviderAdapter",
    "StreamTranslator",
    "Timeout",
    "TranslatedResponse",
    "UpstreamRequest",
    "register_adapter",
]
