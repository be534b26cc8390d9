"""``build_app``: the whole gateway stack from one configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from .budget.config import BudgetConfig
from .config import GatewayConfig
from .hooks import Hooks
from .kernel.config import BodyLimits
from .kernel.errors import ConfigError
from .kernel.mount import NotFoundApp, PrefixMount
from .kernel.types import ASGIApp
from .logs import JSONLSink, MemorySink, RequestLogMiddleware
from .logs.metrics import GatewayMetrics, metrics_app
from .router import ProviderRouter
from .runtime import configure as configure_runtime

_Section = TypeVar("_Section", bound=BodyLimits)

logger = logging.getLogger("asgi_aigw")


def _body_limit(section: _Section, router: BodyLimits) -> _Section:
    """``section`` with a body limit no larger than the router's: the outermost layer that reads the
    body applies its limit first, so a too-large declared Content-Length is refused before the upload.
    Its body timeout is the router's unless the section sets its own (the first reader's applies)."""
    update: dict[str, object] = {}
    if section.max_body_bytes > router.max_body_bytes:
        update["max_body_bytes"] = router.max_body_bytes
    if "body_timeout" not in section.model_fields_set:
        update["body_timeout"] = router.body_timeout
    return section.model_copy(update=update) if update else section


def budget_settings(config: GatewayConfig, budget: BudgetConfig) -> BudgetConfig:
    """The ``budget:`` section completed from the rest of the configuration: the router's body limit,
    and the models each client model name is served by (to price it)."""
    budget = _body_limit(budget, config.router)
    if config.router.models and not budget.model_aliases:
        aliases = {m.name: [d.model for d in m.deployments] for m in config.router.models}
        budget = budget.model_copy(update={"model_aliases": aliases})
    return budget


def build_app(
    config: GatewayConfig | None = None,
    *,
    app: ASGIApp | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    env: Mapping[str, str] | None = None,
    hooks: Hooks | None = None,
) -> ASGIApp:
    """The gateway as one ASGI app: the router mounted at ``config.prefix`` in front of ``app``
    (a small index and 404 app when ``app`` is None), wrapped in the middlewares the configuration
    enables, outermost first: traces, request log, tenant, budget, redaction, cache. Each is built
    exactly as ``XMiddleware(inner, config=config.x)``; ``hooks`` go to the router (docs/hooks.md)."""
    config = config or GatewayConfig()
    prefix = config.prefix
    gateway = _assemble(
        config,
        transports,
        env,
        lambda router: PrefixMount(app or NotFoundApp(prefix), router, prefix=prefix),
        hooks,
    )
    if config.dashboard is None:
        return gateway
    # outside every layer: the dashboard is not a gateway request (no tenant, budget or log row)
    from .dashboard.mount import DashboardMount

    return DashboardMount(gateway, _dashboard(config, gateway), prefix=f"{prefix.rstrip('/')}/dashboard")


def check_dashboard_log(config: GatewayConfig) -> None:
    """A :class:`ConfigError` when the configuration has a dashboard but no request log to read."""
    if config.dashboard is not None and (config.log is None or config.log.store is None):
        raise ConfigError(
            "The dashboard reads the request log: add a log: section with a store "
            "(log: {store: chdb://.aigw/chdb}), or remove the dashboard: section."
        )


def _dashboard(config: GatewayConfig, gateway: ASGIApp) -> ASGIApp:
    """The dashboard over the gateway's own log sink and budget store (a ``memory://`` one lives in
    this process: a second one would be empty)."""
    from .budget import BudgetMiddleware
    from .dashboard import DashboardApp

    assert config.dashboard is not None
    check_dashboard_log(config)
    log_layer = _find(gateway, RequestLogMiddleware)
    assert log_layer is not None  # a log section with a store builds the log layer
    sink = log_layer.writer.sink if log_layer.writer is not None else None
    log: Any = sink if isinstance(sink, MemorySink | JSONLSink) else config.log
    budget_layer = _find(gateway, BudgetMiddleware)
    return DashboardApp(
        config=config.dashboard,
        log=log,
        budget=budget_layer.config if budget_layer is not None else None,
        budget_store=budget_layer.store if budget_layer is not None else None,
    )


_Layer = TypeVar("_Layer")


def _find(app: object, kind: type[_Layer]) -> _Layer | None:
    """The layer of type ``kind`` in a stack built here (each layer keeps its inner app as ``.app``)."""
    for _ in range(16):
        if isinstance(app, kind):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def build_stack(
    config: GatewayConfig | None = None,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    env: Mapping[str, str] | None = None,
    hooks: Hooks | None = None,
) -> ASGIApp:
    """The same layers around the router alone, with no mount: for a framework's own router to serve
    at a path it chooses (``asgi_aigw.integrations``) and for the in-process client. Every request
    reaching it is a gateway request; ``root_path`` says where it is mounted."""
    return _assemble(config or GatewayConfig(), transports, env, lambda router: router, hooks)


def _assemble(
    config: GatewayConfig,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None,
    env: Mapping[str, str] | None,
    mount: Callable[[ProviderRouter], ASGIApp],
    hooks: Hooks | None = None,
) -> ASGIApp:
    # token counting reads the process-wide runtime configuration (asset dir, safety factors)
    configure_runtime(config.runtime)
    metrics: GatewayMetrics | None = None
    served: ASGIApp | None = None
    if config.log is not None and config.log.metrics is not None:
        metrics = GatewayMetrics.from_config(
            config.log.metrics, models=[m.name for m in config.router.models]
        )
        if config.log.metrics.serve:
            served = metrics_app(metrics)
    router = ProviderRouter(config.router, transports=transports, env=env, metrics=served, hooks=hooks)
    gateway: ASGIApp = mount(router)
    # inner layers are wrapped first: the cache sits inside redaction, so it only sees redacted text
    if config.cache is not None:
        from .cache import SemanticCacheMiddleware

        if config.redact is None:
            # said once, at start-up: the cache is where prompts and answers are kept
            logger.warning(
                "The cache is on without redaction: prompts and answers are stored in its stores as "
                "clients sent them, personal data included. Add a redact: section (redact: {}) to "
                "store them with placeholders instead."
            )

        gateway = SemanticCacheMiddleware(gateway, config=_body_limit(config.cache, config.router))
    if config.redact is not None:
        from .redact import RedactMiddleware

        gateway = RedactMiddleware(gateway, config=_body_limit(config.redact, config.router))
    # budget outside the cache, so a cache hit is still counted (and priced as configured); tenant
    # outside the budget, which meters per tenant
    if config.budget is not None:
        from .budget import BudgetMiddleware

        gateway = BudgetMiddleware(gateway, config=budget_settings(config, config.budget))
    if config.tenant is not None:
        from .tenant import TenantMiddleware

        limited = [entry.id for entry in config.tenant.api_keys if entry.limits.as_dict()]
        if limited and config.budget is None:
            # a limit nothing enforces would read as a promise: refuse it at start-up
            raise ConfigError(
                f"API key {limited[0]} has budget limits but there is no budget: section to enforce "
                "them: add one (budget: {store: ...}), or remove the key's limits."
            )

        gateway = TenantMiddleware(gateway, config=config.tenant)
    # outermost, so wrapped last: the request log sees every outcome of every inner layer
    if config.log is not None:
        gateway = RequestLogMiddleware(gateway, config=config.log, metrics=metrics)
    # outside the log too: the request span covers every layer, and the log row is written inside it
    if config.trace is not None:
        from .trace import TraceMiddleware

        gateway = TraceMiddleware(gateway, config=config.trace)
    return gateway
