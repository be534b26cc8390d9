"""Configuration of the semantic cache: ``GatewayConfig.cache``.

```yaml
cache:
  store: redis://localhost:6379/0            # the exact layer; or memory:// (the default)
  vector_store: qdrant-edge://./.aigw/cache  # or qdrant+http://host:6333, memory://, null (off)
  ttl: 3600
  threshold: 0.80                            # default: the embedder's own (0.80, static vectors 0.70)
```
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..kernel.config import BodyLimits
from ..stores.registry import EXACT_STORES, VECTOR_STORES

#: Cosine similarity a semantic match must reach before verification (all-MiniLM-L6-v2). Chosen on the
#: tuning half of the labelled set, see docs/cache.md: with verification on, any value from 0.70 to 0.85
#: gave the same hits; 0.80 keeps verification off clearly unrelated neighbours.
DEFAULT_THRESHOLD = 0.80


class CacheConfig(BodyLimits):
    """Where answers are cached, for how long, and which requests may be answered from the cache."""

    #: Exact layer: ``memory://`` (an LRU in this process) or ``redis://...``/``rediss://...``/``unix://...``/
    #: ``redis+cluster://...``/``redis+sentinel://...``.
    store: str = "memory://"
    #: Entries kept by the memory LRU.
    max_entries: int = Field(default=10_000, ge=1)
    #: Semantic layer: ``qdrant-edge://PATH`` (Qdrant's engine in process, the embedded default),
    #: ``qdrant+http(s)://HOST:PORT`` (a Qdrant server), ``qdrant+local://PATH`` or
    #: ``qdrant+local://:memory:`` (qdrant-client's local mode, for tests), ``memory://``, or ``null``
    #: (no semantic layer).
    vector_store: str | None = "qdrant-edge://./.aigw/cache-vectors"
    #: Qdrant collection (server and local mode).
    collection: str = "aigw_cache"
    #: API key of a Qdrant server.
    qdrant_api_key: str | None = None
    #: Prefix of the exact layer's Redis keys.
    key_prefix: str = "aigw:cache:"

    #: Seconds an answer stays cached; a request's ``x-aigw-cache-ttl`` header may lower or raise it up
    #: to ``max_ttl``.
    ttl: float = Field(default=3600.0, gt=0)
    max_ttl: float = Field(default=7 * 24 * 3600.0, gt=0)

    #: Cosine similarity a neighbour must reach to be considered (then verified). ``None``: the
    #: embedder's own (its ``default_threshold``): 0.80, or 0.70 for the static vectors.
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    #: Check numbers, negation, content words and direction after the vector match (see docs/cache.md).
    #: Turning it off trades precision for recall; measure first.
    verify: bool = True
    #: Nearest neighbours fetched and verified in turn; the best one that passes answers.
    candidates: int = Field(default=3, ge=1, le=20)
    #: Questions longer than this (characters) skip the semantic layer: long prompts are rarely asked
    #: twice in other words, and embedding them costs more.
    max_question_chars: int = Field(default=2000, ge=1)

    #: Tenant used when no TenantMiddleware set one.
    default_tenant: str = "default"
    #: Cache answers that call tools (only with the same tools offered: the tools are part of the key).
    cache_tool_calls: bool = False
    #: Requests with a temperature above this bypass the cache (no lookup, no store); ``None``: no limit.
    #: An absent temperature counts as the provider's default and is cached.
    max_temperature: float | None = Field(default=1.0, ge=0)
    #: Answers larger than this (bytes) are not stored.
    max_entry_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Semantic stores (embedding the question, upserting the vector) run after the answer has gone;
    #: past this many under way, an answer is not added to the semantic layer (its exact entry still
    #: is), counted in ``stores_skipped`` and the ``aigw_cache_stores_skipped`` metric.
    max_pending_stores: int = Field(default=256, ge=1)
    #: Seconds between background sweeps of expired vectors.
    cleanup_interval: float = Field(default=300.0, gt=0)
    #: A failing store or embedder is logged at most once per this many seconds (each failure is a miss).
    error_log_interval: float = Field(default=60.0, gt=0)
    #: Seconds a lookup may take before it counts as a miss: each exact-store (Redis) call, the
    #: embedding, the vector search.
    lookup_timeout: float = Field(default=2.0, gt=0)

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        return EXACT_STORES.check(value)

    @field_validator("vector_store")
    @classmethod
    def _known_vector_store(cls, value: str | None) -> str | None:
        return None if value is None else VECTOR_STORES.check(value)
