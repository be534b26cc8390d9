"""A burst against a small tokens-per-minute limit: the tokens served never exceed it.

FakeProvider on a real uvicorn would answer every request with 3,000 tokens (it stops at the request's
output cap, as real providers do); the gateway on another uvicorn, budgets in a real Redis, allows each
tenant 2,000 tokens per minute. 300 requests at concurrency 50, with and without ``max_tokens``, JSON and
streams, one tenant per case: the answers' usage adds up to no more than the limit. Before the
reservation became a cap, one request was served 3,008 tokens and such a burst 21,103.

``AIGW_BURST_REPORT=burst.json`` writes the figures (docs/reliability.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
import redis

from asgi_aigw import build_app
from asgi_aigw.budget import BudgetConfig, Limits
from asgi_aigw.tenant import TenantConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider, ServerThread

from ..budget_helpers import away_from_minute_boundary
from ..support import fake_config

pytestmark = pytest.mark.e2e

LIMIT = 2_000
REQUESTS = 300
CONCURRENCY = 50
ANSWER = " ".join(f"w{i}" for i in range(3_000))
CASES = [
    pytest.param(False, None, id="json-no-max-tokens"),
    pytest.param(False, 100, id="json-max-tokens-100"),
    pytest.param(True, None, id="stream-no-max-tokens"),
    pytest.param(True, 100, id="stream-max-tokens-100"),
]


@pytest.fixture(scope="module")
def gateway(redis_url: str) -> Iterator[tuple[str, FakeProvider]]:
    fake = FakeProvider(FakeBehaviour(answer=ANSWER))
    upstream = ServerThread(fake)
    upstream.start()
    prefix = f"aigw-test:burst-{os.getpid()}-{time.monotonic_ns()}:"
    config = fake_config(base_url=upstream.base_url + "/v1")
    config.tenant = TenantConfig(required=True)
    config.budget = BudgetConfig(
        store=redis_url, key_prefix=prefix, limits=Limits(tokens_per_minute=LIMIT), default_max_tokens=256
    )
    server = ServerThread(build_app(config, env={}))
    server.start()
    try:
        yield server.base_url + "/ai/v1/chat/completions", fake
    finally:
        server.stop()
        upstream.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def served_usage(response: httpx.Response, stream: bool) -> dict[str, Any]:
    """The usage the answer reports (the stream's usage chunk)."""
    if not stream:
        usage: dict[str, Any] = response.json()["usage"]
        return usage
    for line in reversed(response.text.splitlines()):
        if line.startswith("data: {") and '"usage":{' in line:
            data = orjson.loads(line[6:])
            if data.get("usage"):
                found: dict[str, Any] = data["usage"]
                return found
    raise AssertionError("the stream carried no usage")


async def burst(url: str, tenant: str, stream: bool, max_tokens: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me a story"}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    gate = asyncio.Semaphore(CONCURRENCY)
    statuses: dict[int, int] = {}
    tokens = completion = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> None:
            nonlocal tokens, completion
            async with gate:
                response = await client.post(url, json=body, headers={"x-tenant-id": tenant})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                usage = served_usage(response, stream)
                tokens += usage["total_tokens"]
                completion += usage["completion_tokens"]

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(REQUESTS)))
        elapsed = time.perf_counter() - started
    return {
        "statuses": statuses,
        "tokens_served": tokens,
        "completion_tokens": completion,
        "seconds": round(elapsed, 2),
    }


@pytest.mark.parametrize(("stream", "max_tokens"), CASES)
async def test_a_burst_is_served_no_more_tokens_than_the_limit(
    gateway: tuple[str, FakeProvider], stream: bool, max_tokens: int | None, request: pytest.FixtureRequest
) -> None:
    url, fake = gateway
    await away_from_minute_boundary(margin=20)  # the whole burst in one minute window
    tenant = f"burst-{request.node.callspec.id}"
    before = len(fake.requests)
    result = await burst(url, tenant, stream, max_tokens)
    asked = [r.json for r in fake.requests[before:]]
    cap = max_tokens or 256
    assert all(r.get("max_tokens") == cap for r in asked)  # every upstream call carried the cap
    served = result["statuses"].get(200, 0)
    assert served == len(asked) > 0
    assert result["statuses"].get(200, 0) + result["statuses"].get(429, 0) == REQUESTS
    assert result["completion_tokens"] == served * cap  # the fake would have answered 3,000 each
    assert result["tokens_served"] <= LIMIT
    report = os.environ.get("AIGW_BURST_REPORT")
    if report:
        line = json.dumps({"case": request.node.callspec.id, **result}) + "\n"
        await anyio.Path(report).write_text(
            (await anyio.Path(report).read_text() if await anyio.Path(report).exists() else "") + line
        )
