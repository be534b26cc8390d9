"""A model with no price is never free where a money limit applies: refused when the configuration names
it (at construction, and by ``aigw serve`` before it starts), refused per request otherwise; and
``aigw serve --workers N`` refuses an in-process budget store, whose counters each worker would keep
alone. Real Redis for the request-time checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_aigw import ConfigError, build_app
from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, RedisBudgetStore
from asgi_aigw.budget.config import ModelPrice
from asgi_aigw.budget.pricing import PriceTable
from asgi_aigw.cli import main
from asgi_aigw.config import GatewayConfig
from asgi_aigw.router import DeploymentConfig, ModelConfig, RouterConfig

from . import budget_helpers
from .budget_helpers import JSONApp, chat, completion, fixed_clock, token_counter, usage_of

USAGE = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}


_frozen_now = budget_helpers.frozen_now
store = budget_helpers.store


def budget(inner: Any, store: RedisBudgetStore, config: BudgetConfig) -> BudgetMiddleware:
    return BudgetMiddleware(
        inner, config=config, store=store, token_counter=token_counter(), clock=fixed_clock
    )


async def post(app: Any, body: dict[str, Any], tenant: str | None = None) -> httpx.Response:
    from asgi_aigw.kernel.context import ensure_context

    async def with_tenant(scope: Any, receive: Any, send: Any) -> None:
        scope, ctx = ensure_context(scope)
        ctx.tenant_id = tenant
        await app(scope, receive, send)

    transport = httpx.ASGITransport(with_tenant)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/v1/chat/completions", json=body)


# -- at request time ------------------------------------------------------------------------------------


async def test_an_unpriced_model_is_refused_where_a_money_limit_applies(store: RedisBudgetStore) -> None:
    inner = JSONApp(completion("x", USAGE))
    app = budget(inner, store, BudgetConfig(limits=Limits(cost_per_day=1.0)))
    response = await post(app, {**chat(), "model": "my-local-llm"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_not_priced"
    assert error["param"] == "model"
    assert "budget.pricing.my-local-llm" in error["message"]
    assert inner.calls == 0
    assert (await usage_of(store, "default"))["requests_per_minute"] == 0  # nothing reserved


async def test_only_tenants_with_a_money_limit_are_refused(store: RedisBudgetStore) -> None:
    inner = JSONApp(completion("x", USAGE))
    config = BudgetConfig(tenants={"capped": Limits(cost_per_month=5.0)})
    app = budget(inner, store, config)
    assert (await post(app, {**chat(), "model": "my-local-llm"}, "capped")).status_code == 400
    assert (await post(app, {**chat(), "model": "my-local-llm"}, "free")).status_code == 200
    assert (await post(app, chat(), "capped")).status_code == 200  # a priced model is served


async def test_a_money_limit_set_live_refuses_an_unpriced_model_and_gives_the_reservation_back(
    store: RedisBudgetStore,
) -> None:
    inner = JSONApp(completion("x", USAGE))
    app = budget(inner, store, BudgetConfig(limits=Limits(tokens_per_day=10_000)))
    await store.set_overrides("acme", {"cost_per_day": 1_000_000_000})
    response = await post(app, {**chat(), "model": "my-local-llm"}, "acme")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_priced"
    assert inner.calls == 0
    used = await usage_of(store, "acme")
    assert used["tokens_per_day"] == 0
    assert used["requests_per_minute"] == 0


async def test_a_default_price_prices_unknown_models(store: RedisBudgetStore) -> None:
    inner = JSONApp(completion("x", USAGE).replace(b'"model":"gpt-4o-mini"', b'"model":"my-local-llm"'))
    config = BudgetConfig(limits=Limits(cost_per_day=1.0), default_price=ModelPrice(input=1.0, output=2.0))
    app = budget(inner, store, config)
    assert (await post(app, {**chat(), "model": "my-local-llm"})).status_code == 200
    # 10 prompt tokens at $1/M + 10 completion tokens at $2/M = 30,000 nano-dollars
    assert (await usage_of(store, "default"))["cost_per_day"] == 30_000


async def test_an_unknown_answering_model_is_priced_as_the_model_asked_for(store: RedisBudgetStore) -> None:
    body = completion("x", USAGE).replace(b'"model":"gpt-4o-mini"', b'"model":"local-build-7"')
    app = budget(JSONApp(body), store, BudgetConfig(limits=Limits(cost_per_day=1.0)))
    assert (await post(app, chat())).status_code == 200
    # gpt-4o-mini: $0.15/M in, $0.60/M out -> 1,500 + 6,000 nano-dollars, not $0
    assert (await usage_of(store, "default"))["cost_per_day"] == 7_500


# -- at startup -----------------------------------------------------------------------------------------


def models(*pairs: tuple[str, str]) -> dict[str, list[str]]:
    return {alias: [model] for alias, model in pairs}


def test_a_configured_unpriced_model_under_a_money_limit_is_a_config_error() -> None:
    config = BudgetConfig(
        limits=Limits(cost_per_month=100.0), model_aliases=models(("local", "llama-test:8b"))
    )
    with pytest.raises(ConfigError, match=r"'local'.*budget.pricing.local"):
        BudgetMiddleware(JSONApp(b"{}"), config=config)


def test_a_per_tenant_money_limit_is_enough_to_require_prices() -> None:
    config = BudgetConfig(
        tenants={"acme": Limits(cost_per_day=1.0)}, model_aliases=models(("local", "llama-test:8b"))
    )
    with pytest.raises(ConfigError):
        BudgetMiddleware(JSONApp(b"{}"), config=config)


@pytest.mark.parametrize(
    "config",
    [
        BudgetConfig(limits=Limits(tokens_per_day=1000), model_aliases=models(("local", "llama-test:8b"))),
        BudgetConfig(limits=Limits(cost_per_day=-1), model_aliases=models(("local", "llama-test:8b"))),
        BudgetConfig(
            limits=Limits(cost_per_day=1.0),
            model_aliases=models(("local", "llama-test:8b")),
            default_price=ModelPrice(input=0.1),
        ),
        BudgetConfig(
            limits=Limits(cost_per_day=1.0),
            model_aliases=models(("local", "llama-test:8b")),
            pricing={"local": ModelPrice(input=0.1)},
        ),
        BudgetConfig(limits=Limits(cost_per_day=1.0), model_aliases=models(("smart", "openai/gpt-4o"))),
    ],
    ids=["no-money-limit", "explicitly-unlimited", "default-price", "priced-alias", "priced-deployment"],
)
def test_configurations_that_price_every_model_start(config: BudgetConfig) -> None:
    BudgetMiddleware(JSONApp(b"{}"), config=config)


def test_an_alias_is_priced_as_its_dearest_deployment() -> None:
    table = PriceTable(aliases={"smart": ["gpt-4o-mini", "openai/gpt-4o"], "mixed": ["gpt-4o", "unknown-x"]})
    assert table.lookup("smart") == table.lookup("gpt-4o")
    assert table.lookup("mixed") is None  # one of its models has no price: so has the alias


def test_build_app_passes_the_configured_models_to_the_budget() -> None:
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="local", deployments=[DeploymentConfig(provider="ollama", model="llama-test:8b")]
                )
            ]
        ),
        budget=BudgetConfig(limits=Limits(cost_per_day=1.0)),
    )
    with pytest.raises(ConfigError, match="'local'"):
        build_app(config, env={})


@pytest.fixture(autouse=True)
def _never_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A serve command that gets past its checks fails the test instead of starting uvicorn."""
    import uvicorn

    def started(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("aigw serve started the server")

    monkeypatch.setattr(uvicorn, "run", started)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_serve_refuses_an_unpriced_model_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "router: {models: [{name: local, deployments: [{provider: ollama, model: 'llama-test:8b'}]}]}\n"
        "budget: {limits: {cost_per_day: 5}}\n",
    )
    assert main(["serve", "--config", path]) == 2
    assert "budget.pricing.local" in capsys.readouterr().err


# -- aigw serve --workers -------------------------------------------------------------------------------


def test_serve_refuses_several_workers_with_an_in_process_budget_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "budget: {limits: {tokens_per_day: 1000}}\n")
    assert main(["serve", "--config", path, "--workers", "3"]) == 2
    err = capsys.readouterr().err
    assert "budget.store: redis://" in err
    assert "multiplying every limit by 3" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_refuses_workers_set_in_the_configuration_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "server: {workers: 2}\nbudget: {store: 'memory://'}\n")
    assert main(["serve", "--config", path]) == 2
    assert "budget.store: redis://" in capsys.readouterr().err


def test_several_workers_are_fine_with_a_shared_budget_store() -> None:
    from asgi_aigw.budget.store import multi_worker_error

    assert multi_worker_error("redis://redis.internal:6379/0", 4) is None
    assert multi_worker_error("memory://", 1) is None
    assert multi_worker_error("memory://", 2) is not None
