"""Provider adapters, by name."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .azure import AzureOpenAIAdapter
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
from .presets import PRESETS, OpenAICompatibleAdapter, Preset

#: Adapters by the provider name used in configuration and in ``PROVIDER/MODEL`` model names.
ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "ollama": OllamaAdapter(),
    "azure": AzureOpenAIAdapter(),
    # OpenAI-compatible servers by name: the OpenAI adapter with their base URL and quirks
    **{name: OpenAICompatibleAdapter(preset) for name, preset in PRESETS.items()},
}


def register_adapter(adapter: ProviderAdapter) -> None:
    """Make a provider available to the router under ``adapter.name``."""
    ADAPTERS[adapter.name] = adapter


__all__ = [
    "ADAPTERS",
    "PRESETS",
    "AnthropicAdapter",
    "AzureOpenAIAdapter",
    "Deployment",
    "GeminiAdapter",
    "OllamaAdapter",
    "OpenAIAdapter",
    "OpenAICompatibleAdapter",
    "Preset",
    "ProviderAdapter",
    "StreamTranslator",
    "Timeout",
    "TranslatedResponse",
    "UpstreamRequest",
    "register_adapter",
]
