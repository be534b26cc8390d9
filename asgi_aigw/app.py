"""``build_app``: the whole gateway stack from one configuration."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from .budget.config import BudgetConfig
from .config import GatewayConfig
from .kernel.mount import NotFoundApp, PrefixMount
from .kernel.types import ASGIApp
from .logs import RequestLogMiddleware
from .logs.metrics import GatewayMetrics, metrics_app
from .router import ProviderRouter
from .runtime import configure as configure_runtime


def budget_settings(config: GatewayConfig, budget: BudgetConfig) -> BudgetConfig:
    """The ``budget:`` section completed from the rest of the configuration."""
    if budget.max_body_bytes > config.router.max_body_bytes:
        # the budget layer reads the body first: with the router's smaller limit, a too-large
        # declared Content-Length is refused before the upload rather than after it
        budget = budget.model_copy(update={"max_body_bytes": config.router.max_body_bytes})
    if config.models and not budget.model_aliases:
        # the budget prices a model name clients send as the models that may serve it
        aliases = {m.name: [d.model for d in m.deployments] for m in config.models}
        budget = budget.model_copy(update={"model_aliases": aliases})
    return budget


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
    metrics: GatewayMetrics | None = None
    served: ASGIApp | None = None
    if config.log is not None and config.log.metrics is not None:
        metrics = GatewayMetrics.from_config(config.log.metrics, models=[m.name for m in config.models])
        if config.log.metrics.serve:
            served = metrics_app(metrics)
    router = ProviderRouter(config, transports=transports, env=env, metrics=served)
    gateway: ASGIApp = PrefixMount(app or NotFoundApp(config.prefix), router, prefix=config.prefix)
    # inner layers are wrapped first: the cache sits inside redaction, so it only sees redacted text
    if config.cache is not None:
        from .cache import SemanticCacheMiddleware
        from .cache.embedding import runtime_embedder

        runtime = config.runtime
        gateway = SemanticCacheMiddleware(
            gateway,
            config=config.cache,
            embedder=lambda: runtime_embedder(runtime),
            max_body_bytes=config.router.max_body_bytes,
        )
    if config.redact is not None:
        from .redact import RedactMiddleware

        gateway = RedactMiddleware(
            gateway, config=config.redact, runtime=config.runtime, max_body_bytes=config.router.max_body_bytes
        )
    # budget outside the cache, so a cache hit is still counted (and priced as configured); tenant
    # outside the budget, which meters per tenant
    if config.budget is not None:
        from .budget import BudgetMiddleware

        gateway = BudgetMiddleware(gateway, config=budget_settings(config, config.budget))
    if config.tenant is not None:
        from .tenant import TenantMiddleware

        gateway = TenantMiddleware(gateway, config=config.tenant)
    # outermost, so wrapped last: the request log sees every outcome of every inner layer
    if config.log is not None:
        gateway = RequestLogMiddleware(gateway, config=config.log, metrics=metrics)
    return gateway
