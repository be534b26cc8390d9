"""One way to open a store from a URL, for every kind of store: scheme -> factory.

Every kind of store the gateway keeps (budgets, the exact cache, vectors, the request log) is named by
a URL in its section of the configuration (``budget.store``, ``cache.store``, ``cache.vector_store``,
``log.store``). The schemes are listed here, each with the dotted path of its factory, which is
imported only when a URL of that scheme is opened: an optional dependency (redis, qdrant, chDB) is
needed only by the store that uses it, and the configuration can be checked without any of them.
"""

from __future__ import annotations

import importlib
import ssl
from collections.abc import Mapping
from typing import Any

from ..kernel.errors import ConfigError
from ..kernel.url_text import hide_password
from .redis_tls import TlsOptions
from .redis_topology import TOPOLOGY_SCHEMES, parse_topology
from .resp import Endpoint

#: The schemes of one Redis server.
_ONE_SERVER = ("redis", "rediss", "unix")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case (``"memory"`` for ``memory://``); ``""`` when it has none."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


class StoreRegistry:
    """The URL schemes of one kind of store, each mapped to ``"module:factory"``; a factory takes the
    URL and keyword options and returns the store."""

    def __init__(self, kind: str, factories: Mapping[str, str]) -> None:
        self.kind = kind
        self._factories = dict(factories)

    @property
    def schemes(self) -> list[str]:
        return sorted(self._factories)

    def check(self, url: str) -> str:
        """``url`` when its scheme is known, else a :class:`ConfigError` listing the known schemes."""
        scheme = scheme_of(url)
        if scheme not in self._factories:
            known = ", ".join(f"{scheme}://" for scheme in self.schemes)
            raise ConfigError(f"Unknown {self.kind} store {hide_password(url)!r}: use one of {known}.")
        tls: TlsOptions | None = None
        try:  # a sentinel URL without its service name fails here, not on the first request
            if scheme in TOPOLOGY_SCHEMES:
                tls = parse_topology(url).tls
            elif scheme in _ONE_SERVER:
                tls = Endpoint.from_url(url).tls
        except ValueError as exc:
            raise ConfigError(f"Bad {self.kind} store URL: {exc}.") from None
        if tls is not None:
            try:  # a certificate file that cannot be read fails here too
                tls.context()
            except (OSError, ssl.SSLError) as exc:
                shown = hide_password(url)
                raise ConfigError(f"Bad {self.kind} store URL {shown!r}: its TLS files: {exc}.") from None
        return url

    def open(self, url: str, **options: Any) -> Any:
        """The store ``url`` names, built by its scheme's factory with ``options``."""
        module_name, _, name = self._factories[scheme_of(self.check(url))].partition(":")
        factory = getattr(importlib.import_module(module_name), name)
        return factory(url, **options)


#: One server (the minimal client on the request path), then a cluster or a sentinel set (redis-py).
_REDIS = (*_ONE_SERVER, *TOPOLOGY_SCHEMES)

#: Budget counters (``budget.store``).
BUDGET_STORES = StoreRegistry(
    "budget",
    {"memory": "asgi_aigw.budget.memory:open_store"}
    | dict.fromkeys(_REDIS, "asgi_aigw.budget.redis:open_store"),
)
#: Exact-match cache entries (``cache.store``).
EXACT_STORES = StoreRegistry(
    "exact cache",
    {"memory": "asgi_aigw.cache.exact:open_memory_store"}
    | dict.fromkeys(_REDIS, "asgi_aigw.cache.exact:open_redis_store"),
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
)
#: Request-log sinks (``log.store``).
LOG_STORES = StoreRegistry(
    "log",
    dict.fromkeys(("clickhouse", "clickhouses", "chdb", "jsonl", "memory"), "asgi_aigw.logs.sinks:open_sink"),
)
#: Gateway API keys (``tenant.key_store``).
KEY_STORES = StoreRegistry("API key", dict.fromkeys(_REDIS, "asgi_aigw.tenant.key_store:open_store"))
