"""One way to open a store from a URL, for every kind of store: scheme -> factory.

Every kind of store the gateway keeps (budgets, the exact cache, vectors, the request log) is named by
a URL in its section of the configuration (``budget.store``, ``cache.store``, ``cache.vector_store``,
``log.store``). The schemes are listed here, each with the dotted path of its factory, which is
imported only when a URL of that scheme is opened: an optional dependency (redis, qdrant, chDB) is
needed only by the store that uses it, and the configuration can be checked without any of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..kernel.errors import ConfigError
from ..kernel.url_text import hide_password
from .redis_topology import TOPOLOGY_SCHEMES


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case (``"memory"`` for ``memory://``); ``""`` when it has none."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


class StoreRegistry:
    """The URL schemes of one kind of store, each mapped to ``"module:factory"``; a factory takes the
    URL and keyword options and returns the store. ``checks`` maps schemes to ``"module:function"``:
    the function takes the URL and raises (``ValueError`` or :class:`ConfigError`) for one that cannot
    work, so that a configuration is refused when it is read, not when the store is first used."""

    def __init__(
        self, kind: str, factories: Mapping[str, str], checks: Mapping[str, str] | None = None
    ) -> None:
        self.kind = kind
        self._factories = dict(factories)
        self._checks = dict(checks or {})

    @property
    def schemes(self) -> list[str]:
        return sorted(self._factories)

    def check(self, url: str) -> str:
        """``url`` when its scheme is known and its scheme's check passes, else a :class:`ConfigError`
        (listing the known schemes, or saying what is wrong)."""
        scheme = scheme_of(url)
        if scheme not in self._factories:
            known = ", ".join(f"{scheme}://" for scheme in self.schemes)
            raise ConfigError(f"Unknown {self.kind} store {hide_password(url)!r}: use one of {known}.")
        checker = self._checks.get(scheme)
        if checker is not None:
            try:
                _imported(checker)(url)
            except ConfigError:
                raise  # it says what is wrong already
            except ValueError as exc:
                raise ConfigError(f"Bad {self.kind} store URL: {exc}.") from None
        return url

    def open(self, url: str, **options: Any) -> Any:
        """The store ``url`` names, built by its scheme's factory with ``options``."""
        factory = _imported(self._factories[scheme_of(self.check(url))])
        return factory(url, **options)


def _imported(path: str) -> Any:
    """The function a ``"module:name"`` path names, its module imported now (not before it is needed)."""
    module_name, _, name = path.partition(":")
    return getattr(importlib.import_module(module_name), name)


#: One server (the minimal client on the request path), then a cluster or a sentinel set (redis-py).
_REDIS = ("redis", "rediss", "unix", *TOPOLOGY_SCHEMES)
_REDIS_CHECKS = dict.fromkeys(_REDIS, "asgi_aigw.stores.redis_topology:check_redis_url")

#: Budget counters (``budget.store``).
BUDGET_STORES = StoreRegistry(
    "budget",
    {"memory": "asgi_aigw.budget.memory:open_store"}
    | dict.fromkeys(_REDIS, "asgi_aigw.budget.redis:open_store"),
    _REDIS_CHECKS,
)
#: Exact-match cache entries (``cache.store``).
EXACT_STORES = StoreRegistry(
    "exact cache",
    {"memory": "asgi_aigw.cache.exact:open_memory_store"}
    | dict.fromkeys(_REDIS, "asgi_aigw.cache.exact:open_redis_store"),
    _REDIS_CHECKS,
)
#: Vectors of the semantic cache (``cache.vector_store``).
VECTOR_STORES = StoreRegistry(
    "vector",
    {
        "memory": "asgi_aigw.cache.vector:open_memory_store",
        "qdrant-edge": "asgi_aigw.cache.qdrant_edge:open_store",
        "qdrant+http": "asgi_aigw.cache.qdrant_server:open_store",
        "qdrant+https": "asgi_aigw.cache.qdrant_server:open_store",
        "qdrant+local": "asgi_aigw.cache.qdrant_server:open_store",
    },
    dict.fromkeys(("qdrant+http", "qdrant+https"), "asgi_aigw.cache.qdrant_server:server_target"),
)
_LOG_SCHEMES = ("clickhouse", "clickhouses", "chdb", "jsonl", "memory")
#: Request-log sinks (``log.store``).
LOG_STORES = StoreRegistry(
    "log",
    dict.fromkeys(_LOG_SCHEMES, "asgi_aigw.logs.sinks:open_sink"),
    dict.fromkeys(_LOG_SCHEMES, "asgi_aigw.logs.sink_url:check_sink_url"),
)
#: Gateway API keys (``tenant.key_store``).
KEY_STORES = StoreRegistry(
    "API key", dict.fromkeys(_REDIS, "asgi_aigw.tenant.key_store:open_store"), _REDIS_CHECKS
)
