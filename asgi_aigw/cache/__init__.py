"""The semantic cache: an exact layer (Redis or an in-process LRU), then a semantic layer (Qdrant Edge,
a Qdrant server, or memory) whose nearest neighbours are verified before they answer.

```python
from asgi_aigw.cache import CacheConfig, SemanticCacheMiddleware

app = SemanticCacheMiddleware(app, config=CacheConfig(store="redis://localhost:6379/0"))
```
"""

from .config import CacheConfig
from .embedding import Embedder
from .exact import ExactStore, MemoryExactStore, RedisExactStore
from .middleware import SemanticCacheMiddleware
from .vector import MemoryVectorStore, VectorEntry, VectorMatch, VectorStore

__all__ = [
    "CacheConfig",
    "Embedder",
    "ExactStore",
    "MemoryExactStore",
    "MemoryVectorStore",
    "RedisExactStore",
    "SemanticCacheMiddleware",
    "VectorEntry",
    "VectorMatch",
    "VectorStore",
]
