"""``aigw budget set|show|reset`` against Redis (changes apply to the next request), the demo's
embedded budget, and the price table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
import yaml

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, ModelPrice, RedisBudgetStore
from asgi_aigw.budget.pricing import PriceTable
from asgi_aigw.cli import main
from asgi_aigw.cli.demo import DEMO_LIMITS, build_demo_app, demo_config

from . import budget_helpers
from .budget_helpers import JSONApp, chat, completion, fixed_clock, token_counter

_frozen_now = budget_helpers.frozen_now


@pytest.fixture
async def config_file(tmp_path: Path, redis_url: str, redis_prefix: str) -> AsyncIterator[Path]:
    path = tmp_path / "gateway.yaml"
    budget = {"store": redis_url, "key_prefix": redis_prefix, "limits": {"requests_per_minute": 100}}
    path.write_text(yaml.safe_dump({"budget": budget}))
    yield path
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def cli(*argv: str) -> int:
    # the command runs its own event loop (asyncio.run), as it does from a shell
    return await anyio.to_thread.run_sync(main, list(argv))


async def test_set_show_reset(config_file: Path, redis_url: str, redis_prefix: str, capsys: Any) -> None:
    await budget_helpers.away_from_minute_boundary()
    budget_helpers.freeze_now()
    store = RedisBudgetStore(redis_url, key_prefix=redis_prefix)
    inner = JSONApp(completion("x", {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}))
    app = BudgetMiddleware(
        inner,
        store=store,
        token_counter=token_counter(),
        clock=fixed_clock,
        config=BudgetConfig(limits=Limits(requests_per_minute=100)),
    )

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            return await client.post("/v1/chat/completions", json=chat())

    assert (
        await cli(
            "budget",
            "set",
            "default",
            "--config",
            str(config_file),
            "--requests-per-minute",
            "1",
            "--cost-per-day",
            "2.50",
            "--tokens-per-hour",
            "unlimited",
        )
        == 0
    )
    assert (await post()).status_code == 200
    response = await post()
    assert response.status_code == 429  # the override applied at once, with no restart
    capsys.readouterr()

    assert await cli("budget", "show", "default", "--config", str(config_file), "--json") == 0
    report = orjson.loads(capsys.readouterr().out)
    windows = {w["window"]: w for w in report["windows"]}
    assert windows["requests_per_minute"]["limit"] == 1
    assert windows["requests_per_minute"]["source"] == "override"
    assert windows["cost_per_day"]["limit"] == 2.5
    assert windows["tokens_per_hour"]["limit"] is None
    assert windows["tokens_per_day"]["used"] == 10  # a day window: the same for the CLI's clock
    assert windows["tokens_per_day"]["source"] == "default"

    assert await cli("budget", "show", "default", "--config", str(config_file)) == 0
    table = capsys.readouterr().out
    assert "requests_per_minute" in table
    assert "override" in table

    # back to the configured default: 100 requests per minute
    assert (
        await cli(
            "budget", "set", "default", "--config", str(config_file), "--requests-per-minute", "default"
        )
        == 0
    )
    assert (await post()).status_code == 200
    capsys.readouterr()
    assert await cli("budget", "reset", "default", "--config", str(config_file), "--limits") == 0
    report_text = capsys.readouterr().out
    assert "override" not in report_text
    assert await store.usage("default", app.slot_clock.slots(budget_helpers.NOW)) == [0] * 7
    await store.aclose()


async def test_cli_refuses_bad_input(config_file: Path, capsys: Any) -> None:
    assert await cli("budget", "show", "a:b", "--config", str(config_file)) == 2
    assert "tenant id" in capsys.readouterr().err
    assert await cli("budget", "set", "acme", "--config", str(config_file), "--tokens-per-day", "lots") == 2
    assert "takes a number" in capsys.readouterr().err
    assert await cli("budget", "set", "acme", "--config", str(config_file)) == 2
    assert "Nothing to set" in capsys.readouterr().err
    assert await cli("budget", "show", "acme", "--store", "memory://") == 2
    assert "memory://" in capsys.readouterr().err
    assert await cli("budget", "show", "acme", "--store", "redis://127.0.0.1:9/0") == 2
    assert "cannot be reached" in capsys.readouterr().err


async def test_demo_shows_a_429_and_the_headers() -> None:
    await budget_helpers.away_from_minute_boundary()
    # the demo's own tenant and budget settings; its request log, redaction and cache (files in .aigw/,
    # models to load) are not under test here
    app = build_demo_app(
        demo_config().model_copy(update={"log": None, "redact": None, "cache": None, "dashboard": None})
    )
    limit = DEMO_LIMITS.requests_per_minute
    assert limit is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://demo") as client:
        first = await client.post("/ai/v1/chat/completions", json=chat("Hello!"))
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-requests"] == str(limit)
        assert first.headers["x-ratelimit-remaining-requests"] == str(limit - 1)
        assert first.headers["x-ratelimit-limit-tokens"] == str(DEMO_LIMITS.tokens_per_minute)
        too_big = await client.post("/ai/v1/chat/completions", json=chat("Hello!", max_tokens=5000))
        assert too_big.status_code == 429
        assert "tokens per minute" in too_big.json()["error"]["message"]
        statuses = [
            (
                await client.post(
                    "/ai/v1/chat/completions", json=chat("Hello!"), headers={"x-tenant-id": "me"}
                )
            ).status_code
            for _ in range(limit + 1)
        ]
        assert statuses == [200] * limit + [429]
        # another tenant has its own budget
        other = await client.post(
            "/ai/v1/chat/completions", json=chat("Hello!"), headers={"x-tenant-id": "you"}
        )
        assert other.status_code == 200


def test_price_table_matches_dated_and_prefixed_names(caplog: pytest.LogCaptureFixture) -> None:
    prices = PriceTable({"fast": ModelPrice(input=1.0, output=2.0)})
    assert prices.price("gpt-4o-mini-2024-07-18") == prices.price("gpt-4o-mini")
    assert prices.price("gpt-4o-2024-08-06") == prices.price("gpt-4o")
    assert prices.price("gpt-4o-mini") != prices.price("gpt-4o")
    assert prices.price("openai/gpt-4.1-mini") == prices.price("gpt-4.1-mini")
    assert prices.price("claude-sonnet-4-5-20250929") == prices.price("claude-sonnet-4-5")
    assert prices.cost_nanos("fast", 1_000_000, 500_000) == 2_000_000_000  # $1 + $1
    # cached prompt tokens at the cached price: gpt-4o-mini $0.15 input, $0.075 cached
    assert prices.cost_nanos("gpt-4o-mini", 1000, 0, cached_tokens=1000) == 75_000
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.budget"):
        assert prices.cost_nanos("mystery-model", 10, 10) == 0
        assert prices.cost_nanos("mystery-model", 10, 10) == 0
    assert len([r for r in caplog.records if "mystery-model" in r.getMessage()]) == 1
    fallback = PriceTable(default=ModelPrice(input=1.0, output=1.0))
    assert fallback.cost_nanos("mystery-model", 1000, 0) == 1_000_000
