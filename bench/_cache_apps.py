"""Apps for bench/cache.py, built in each uvicorn process (``--factory``)."""

from __future__ import annotations

from typing import Any


def exact_hit_gateway() -> Any:
    """SemanticCacheMiddleware (memory LRU, no semantic layer) in front of the router and an in-process
    FakeProvider: after the first request, every identical request is an exact hit."""
    from asgi_aigw.cache import CacheConfig, SemanticCacheMiddleware
    from asgi_aigw.config import GatewayConfig
    from asgi_aigw.router import ProviderRouter
    from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
    from asgi_aigw.testing import FakeProvider, StreamingASGITransport

    url = "http://fake.invalid/v1"
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="gpt-4o-mini",
                    deployments=[
                        DeploymentConfig(model="gpt-4o-mini", base_url=url, api_key="sk-test-bench")
                    ],
                )
            ]  # type: ignore[arg-type]
        )
    )
    router = ProviderRouter(config.router, transports={url: StreamingASGITransport(FakeProvider())}, env={})
    return SemanticCacheMiddleware(router, config=CacheConfig(store="memory://", vector_store=None))
