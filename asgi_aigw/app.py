"""``build_app``: the whole gateway stack from one configuration."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from ._types import ASGIApp
from .config import GatewayConfig
from .mount import NotFoundApp, PrefixMount
from .router import ProviderRouter
from .runtime import configure as configure_runtime


def build_app(
    config: GatewayConfig | None = None,
    *,
    app: ASGIApp | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    env: Mapping[str, str] | None = None,
) -> ASGIApp:
    """The gateway as one ASGI app: the router mounted at ``config.prefix`` in front of ``app``
    (a small index and 404 app when ``app`` is None), wrapped in the middlewares the configuration
    enables, outermost first: request log, tenant, budget, redaction, cache."""
    config = config or GatewayConfig()
    # token counting reads the process-wide runtime configuration (asset dir, safety factors)
    configure_runtime(config.runtime)
    router = ProviderRouter(config, transports=transports, env=env)
    stack: ASGIApp = PrefixMount(app or NotFoundApp(config.prefix), router, prefix=config.prefix)
    if config.cache is not None:
        from .cache import SemanticCacheMiddleware
        from .cache.embedding import runtime_embedder

        runtime = config.runtime
        stack = SemanticCacheMiddleware(
            stack,
            config=config.cache,
            embedder=lambda: runtime_embedder(runtime),
            max_body_bytes=config.router.max_body_bytes,
        )
    return stack
