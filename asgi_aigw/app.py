"""``build_app``: the whole gateway stack from one configuration."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from ._types import ASGIApp
from .config import GatewayConfig
from .mount import NotFoundApp, PrefixMount
from .router import ProviderRouter


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
    router = ProviderRouter(config, transports=transports, env=env)
    stack: ASGIApp = PrefixMount(app or NotFoundApp(config.prefix), router, prefix=config.prefix)
    # wrapped innermost first, so the outermost layer ends up first on the request path
    if config.budget is not None:
        from .budget import BudgetMiddleware

        stack = BudgetMiddleware(stack, config=config.budget)
    if config.tenant is not None:
        from .tenant import TenantMiddleware

        stack = TenantMiddleware(stack, config=config.tenant)
    return stack
