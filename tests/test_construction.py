"""One way in: every component is built the same way, with its defaults, and exported from the top."""

from __future__ import annotations

import inspect
import logging
import typing
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

import asgi_aigw
from asgi_aigw import (
    BudgetConfig,
    BudgetMiddleware,
    CacheConfig,
    ConfigError,
    GatewayConfig,
    LogConfig,
    ProviderRouter,
    RedactConfig,
    RedactMiddleware,
    RequestLogMiddleware,
    RouterConfig,
    SemanticCacheMiddleware,
    TenantConfig,
    TenantMiddleware,
    TraceConfig,
    TraceMiddleware,
)
from asgi_aigw.config import parse_config
from asgi_aigw.kernel.config import ConfigSection
from asgi_aigw.kernel.lifespan import lifespan_passthrough

MIDDLEWARES: list[tuple[type[Any], type[ConfigSection]]] = [
    (TenantMiddleware, TenantConfig),
    (BudgetMiddleware, BudgetConfig),
    (RedactMiddleware, RedactConfig),
    (SemanticCacheMiddleware, CacheConfig),
    (RequestLogMiddleware, LogConfig),
    (TraceMiddleware, TraceConfig),
]


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(("middleware", "config_class"), MIDDLEWARES)
def test_each_middleware_takes_the_app_then_only_keywords_config_first(
    middleware: type[Any], config_class: type[ConfigSection]
) -> None:
    parameters = list(inspect.signature(middleware.__init__).parameters.values())[1:]
    assert parameters[0].name == "app"
    assert parameters[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert parameters[1].name == "config"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)  # no **options
    # annotations as written (the modules use postponed evaluation)
    assert parameters[1].annotation == f"{config_class.__name__} | None"
    # every injected object is an object: no setting (a URL, a number, a flag) is a keyword
    for parameter in parameters[2:]:
        written = {part.strip() for part in str(parameter.annotation).split("|")}
        assert not written & {"str", "int", "float", "bool"}, parameter.name


@pytest.mark.parametrize(("middleware", "config_class"), MIDDLEWARES)
def test_each_middleware_builds_with_its_defaults_and_with_its_config(
    middleware: type[Any], config_class: type[ConfigSection], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded defaults keep their data under ./.aigw
    built = middleware(ok_app)
    assert isinstance(built.config, config_class)
    assert built.config == config_class()
    config = config_class.model_validate({})
    assert middleware(ok_app, config=config).config is config


def test_the_router_takes_its_config_first() -> None:
    config = RouterConfig()
    assert ProviderRouter(config).config is config
    assert ProviderRouter().config == RouterConfig()
    assert {"models", "providers"} <= set(RouterConfig.model_fields)


def test_the_gateway_config_is_the_components_configs_side_by_side() -> None:
    sections = {
        name: typing.get_args(field.annotation)[0] if typing.get_args(field.annotation) else field.annotation
        for name, field in GatewayConfig.model_fields.items()
    }
    assert sections["router"] is RouterConfig
    assert sections["tenant"] is TenantConfig
    assert sections["budget"] is BudgetConfig
    assert sections["redact"] is RedactConfig
    assert sections["cache"] is CacheConfig
    assert sections["log"] is LogConfig
    assert sections["trace"] is TraceConfig


def test_one_name_for_the_fallback_tenant_and_for_a_store() -> None:
    for config_class in (TenantConfig, BudgetConfig, CacheConfig):
        assert "default_tenant" in config_class.model_fields
    for config_class in (BudgetConfig, CacheConfig, LogConfig):
        assert "store" in config_class.model_fields
    every_field = {name for _, c in MIDDLEWARES for name in c.model_fields} | set(RouterConfig.model_fields)
    assert not every_field & {"default", "anonymous_tenant", "exact", "vector", "sink"}


@pytest.mark.parametrize(
    ("section", "url", "kind"),
    [
        ("budget", "mongodb://x", "budget"),
        ("cache", "memcached://x", "exact cache"),
        ("log", "kafka://x", "log"),
    ],
)
def test_every_unknown_store_is_a_config_error_listing_the_schemes(section: str, url: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=rf"Unknown {kind} store '{url}': use one of .*memory://"):
        parse_config({section: {"store": url}})


def test_the_public_surface() -> None:
    for name in ("TenantMiddleware", "BudgetMiddleware", "RedactMiddleware", "SemanticCacheMiddleware"):
        assert name in asgi_aigw.__all__
    for name in ("RequestLogMiddleware", "ProviderRouter", "RouterConfig", "GatewayConfig", "ConfigError"):
        assert name in asgi_aigw.__all__
    assert all(hasattr(asgi_aigw, name) for name in asgi_aigw.__all__)


async def test_a_failing_close_is_logged_and_shutdown_completes(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def broken_close() -> None:
        calls.append("closed")
        raise RuntimeError("the pool would not close")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await lifespan_passthrough(ok_lifespan, scope, receive, send, on_shutdown=broken_close)

    async def ok_lifespan(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    with caplog.at_level(logging.ERROR, logger="asgi_aigw"):
        async with LifespanManager(app):
            pass
    assert calls == ["closed"]
    assert "the pool would not close" in caplog.text  # logged with its traceback, not swallowed


async def test_build_app_builds_each_section_as_its_component(tmp_path: Path) -> None:
    config = GatewayConfig(
        tenant=TenantConfig(required=False, default_tenant="t"),
        budget=BudgetConfig(),
        log=LogConfig(store="memory://", spool_dir=None),
    )
    app = asgi_aigw.build_app(config, env={})
    assert isinstance(app, RequestLogMiddleware)
    assert isinstance(app.app, TenantMiddleware)
    assert app.app.config is config.tenant
    assert isinstance(app.app.app, BudgetMiddleware)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        assert (await client.get("/healthz")).status_code == 200
