"""Billing end to end over a real uvicorn: the official anthropic SDK with gateway API keys, through the
whole gateway (tenant, budget, request log) to FakeProvider's Anthropic endpoint. A 1-hour prompt-cache
breakpoint is written then read, each priced at its own rate in the budget and the log row, and the log
row names the key (its id, never the key), so ``read_usage(group_by=("key",))`` gives spend per key."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget import BudgetConfig, Limits
from asgi_aigw.config import GatewayConfig
from asgi_aigw.logs import LogConfig, read_usage
from asgi_aigw.logs.usage_jsonl import read_jsonl
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.tenant import TenantConfig
from asgi_aigw.tenant.config import APIKeyEntry
from asgi_aigw.tenant.keys import hash_key, key_id, new_key
from asgi_aigw.testing import FakeProvider, StreamingASGITransport, serve

pytestmark = pytest.mark.e2e

ANTHROPIC_URL = "http://fake-anthropic.test"
MODEL = "claude-sonnet-4-5"
#: claude-sonnet-4-5 per million tokens: input, output, cache read, 5-minute write, 1-hour write.
INPUT, OUTPUT, READ, WRITE_1H = 3.00, 15.00, 0.30, 6.00
DOCUMENT = "Every pump in the plant is inspected on Mondays and every valve on Thursdays. " * 100


def cost(usage: anthropic.types.Usage) -> float:
    """What the budget charges for an answer with this usage, in US dollars (rounded up to a nano)."""
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0
    dollars = (
        usage.input_tokens * INPUT
        + (usage.cache_read_input_tokens or 0) * READ
        + usage.cache_creation.ephemeral_1h_input_tokens * WRITE_1H
        + usage.output_tokens * OUTPUT
    )
    return math.ceil(dollars * 1000 - 1e-6) / 1e9


@pytest.fixture
def keys() -> tuple[str, str]:
    return new_key()[1], new_key()[1]


@pytest.fixture
def gateway(fake: FakeProvider, keys: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    deployment = DeploymentConfig(
        provider="anthropic", model=MODEL, base_url=ANTHROPIC_URL, api_key="sk-ant-test-not-a-real-key"
    )
    config = GatewayConfig(
        router=RouterConfig(models=[ModelConfig(name=MODEL, deployments=[deployment])]),
        tenant=TenantConfig(
            api_keys=[
                APIKeyEntry(id=key_id(key), hash=hash_key(key), tenant="acme", user=user)
                for key, user in zip(keys, ("ci", "ops"), strict=True)
            ]
        ),
        budget=BudgetConfig(limits=Limits(cost_per_day=10.0)),
        log=LogConfig(store=f"jsonl://{tmp_path / 'requests.jsonl'}", spool_dir=str(tmp_path / "spool")),
    )
    app = build_app(config, transports={ANTHROPIC_URL: StreamingASGITransport(fake)}, env={})
    with serve(app) as base_url:
        yield base_url


async def ask(base_url: str, key: str, question: str) -> anthropic.types.Message:
    system: Any = [{"type": "text", "text": DOCUMENT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    async with anthropic.AsyncAnthropic(base_url=f"{base_url}/ai", api_key=key, max_retries=0) as client:
        return await client.messages.create(
            model=MODEL, max_tokens=64, system=system, messages=[{"role": "user", "content": question}]
        )


async def test_one_hour_cache_writes_and_spend_per_key(
    gateway: str, fake: FakeProvider, keys: tuple[str, str], tmp_path: Path
) -> None:
    ci, ops = keys
    first = await ask(gateway, ci, "When are pumps inspected?")
    second = await ask(gateway, ops, "When are valves inspected?")
    written = first.usage.cache_creation_input_tokens
    assert written is not None
    assert written >= 1024
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == written
    assert (second.usage.cache_read_input_tokens, second.usage.cache_creation_input_tokens) == (written, 0)
    # the provider got the system prompt's breakpoint as the client sent it
    sent = fake.requests[0].json
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}

    log = tmp_path / "requests.jsonl"
    for _ in range(100):  # the writer flushes each second
        if log.exists() and len(list(read_jsonl(log))) == 2:
            break
        await asyncio.sleep(0.05)
    rows = sorted(read_jsonl(log), key=lambda row: row["timestamp"])
    assert [row["key_id"] for row in rows] == [key_id(ci), key_id(ops)]
    assert not any(ci in str(row) or ops in str(row) for row in rows)  # the ids, never the keys
    assert [row["cache_write_1h_tokens"] for row in rows] == [written, 0]
    assert rows[0]["cost"] == pytest.approx(cost(first.usage), abs=1e-12)
    assert rows[1]["cost"] == pytest.approx(cost(second.usage), abs=1e-12)

    per_key = {row.key: row for row in read_usage(log, group_by=("key",))}
    assert set(per_key) == {key_id(ci), key_id(ops)}
    assert per_key[key_id(ci)].cost == pytest.approx(cost(first.usage), abs=1e-12)
    assert per_key[key_id(ci)].cache_write_tokens == written
    assert per_key[key_id(ops)].cached_tokens == written
