"""The offline model runtime: token counting, text embeddings and the PII analyzer.

Everything loads from local files (the ``offline`` extra's packages, or an asset directory written by
``aigw assets prepare``), lazily, once per process; the network is used only when
``runtime.allow_downloads`` is true. Importing this package loads no model and no heavy library.

```python
from asgi_aigw.runtime import count_chat_tokens, get_analyzer, get_embedder

count_chat_tokens({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})  # 8
vectors = await get_embedder(config.runtime).embed(["How do I reset my password?"])
results = get_analyzer(config.runtime).analyze(text=..., language="en")  # in a worker thread
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .assets import AssetCorrupt, AssetError, AssetMissing
from .config import AnalyzerSettings, EmbedderSettings, RuntimeConfig, TokenSettings
from .tokens import (
    configure,
    count_chat_tokens,
    count_text_tokens,
    encoding_for_model,
    model_info,
    runtime_config,
)

if TYPE_CHECKING:
    from .embed_error import EmbedderError
    from .embedder import Embedder, FastEmbedEmbedder, OpenAIEmbedder, get_embedder
    from .pii import get_analyzer

# numpy, httpx and Presidio stay unimported until these names are used.
_LAZY = {
    "Embedder": "embedder",
    "EmbedderError": "embed_error",
    "FastEmbedEmbedder": "embedder",
    "OpenAIEmbedder": "embedder",
    "get_embedder": "embedder",
    "get_analyzer": "pii",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "AnalyzerSettings",
    "AssetCorrupt",
    "AssetError",
    "AssetMissing",
    "Embedder",
    "EmbedderError",
    "EmbedderSettings",
    "FastEmbedEmbedder",
    "OpenAIEmbedder",
    "RuntimeConfig",
    "TokenSettings",
    "configure",
    "count_chat_tokens",
    "count_text_tokens",
    "encoding_for_model",
    "get_analyzer",
    "get_embedder",
    "model_info",
    "runtime_config",
]
