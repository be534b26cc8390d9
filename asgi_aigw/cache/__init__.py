"""The semantic cache: an exact layer (Redis or an in-process LRU), then a semantic layer (Qdrant Edge,
a Qdrant server, or memory) whose nearest neighbours are verified before they answer.

```python
from asgi_aigw.cache import CacheConfig, SemanticCacheMiddleware

app = SemanticCacheMiddleware(app, config=CacheConfig(exact="redis://localhost:6379/0"))
```
"""

from .config import DEFAULT_THRESHOLD, CacheConfig
from .embedding import Embedder
from .entry import CachedAnswer
from .exact import ExactStore, MemoryExactStore, RedisExactStore, exact_store_from_url
from .keys import CacheKeys, cache_keys
from .middleware import SemanticCacheMiddleware
from .vector import MemoryVectorStore, VectorEntry, VectorMatch, VectorStore, vector_store_from_url
from .verify import Verdict, verify

__all__ = [
    "DEFAULT_THRESHOLD",
    "CacheConfig",
    "CacheKeys",
    "CachedAnswer",
    "Embedder",
    "ExactStore",
    "MemoryExactStore",
    "MemoryVectorStore",
    "RedisExactStore",
    "SemanticCacheMiddleware",
    "VectorEntry",
    "VectorMatch",
    "VectorStore",
    "Verdict",
    "cache_keys",
    "exact_store_from_url",
    "vector_store_from_url",
    "verify",
]
