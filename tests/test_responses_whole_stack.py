"""The whole stack on the OpenAI Responses API (``/v1/responses``), as the Messages one is tested: with
the official ``openai`` SDK, against an OpenAI deployment (passed through) and an Anthropic one
(translated), a budget refusal in OpenAI's shape, PII that never reaches the upstream and comes back
restored, exact-cache hits on the repeat (JSON and stream), and one log row per request with its dialect
and usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from asgi_aigw.config import GatewayConfig
from asgi_aigw.router.config import DeploymentConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .redact_support import CANARIES, CANARY_PROMPT
from .support import WholeStack, whole_stack, whole_stack_config

UPSTREAM = "http://fake-upstream.test"
MODEL = "gpt-5-mini"


def config_for(provider: str, redis_url: str, prefix: str, tmp_path: Path, tokens: int) -> GatewayConfig:
    if provider == "openai":
        deployment = DeploymentConfig(
            provider="openai",
            model=MODEL,
            base_url=f"{UPSTREAM}/v1",
            api_key="test-key-not-real",  # type: ignore[arg-type]
            responses_api=True,
        )
    else:
        deployment = DeploymentConfig(
            provider="anthropic",
            model="claude-sonnet-4-5",
            base_url=UPSTREAM,
            api_key="test-key-not-real",  # type: ignore[arg-type]
        )
    return whole_stack_config(MODEL, deployment, redis_url, prefix, tmp_path, tokens)


class Stack(WholeStack):
    def __init__(self, app: Any, fake: FakeProvider) -> None:
        super().__init__(app, fake)
        self.http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://app.test")
        self.client = openai.AsyncOpenAI(
            base_url="http://app.test/ai/v1",
            api_key="test-key-not-real",
            default_headers={"x-tenant-id": "acme"},
            http_client=self.http,
            max_retries=0,
        )


def _stack(
    provider: str, redis_url: str, prefix: str, tmp_path: Path, tokens: int = 1_000_000
) -> AsyncIterator[Stack]:
    config = config_for(provider, redis_url, prefix, tmp_path, tokens)
    return whole_stack(Stack, config, UPSTREAM, redis_url, prefix)


@pytest.fixture(params=["openai", "anthropic"])
async def stack(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    async for value in _stack(request.param, redis_url, redis_prefix, tmp_path):
        yield value


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_budget_refuses_in_openais_rate_limit_shape(
    provider: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async for stack in _stack(provider, redis_url, redis_prefix, tmp_path, tokens=50):
        with pytest.raises(openai.RateLimitError) as caught:
            await stack.client.responses.create(model=MODEL, max_output_tokens=100, input="Hello there")
        body = caught.value.body
        assert isinstance(body, dict)
        assert body["type"] == "tokens"
        assert body["code"] == "rate_limit_exceeded"
        assert "max_output_tokens" in body["message"]
        assert stack.fake.requests == []
        [row] = await stack.rows()
        assert row["status"] == 429
        assert row["dialect"] == "responses"


async def test_pii_stays_out_and_comes_back_and_the_repeat_is_a_cache_hit(stack: Stack) -> None:
    ask: dict[str, Any] = {"model": MODEL, "max_output_tokens": 200, "input": CANARY_PROMPT, "store": False}
    first = await stack.client.responses.with_raw_response.create(**ask)
    response = first.parse()
    assert first.headers["x-aigw-cache"] == "miss"
    for value in CANARIES.values():
        assert value in response.output_text, "the answer came back restored"
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0

    assert len(stack.fake.requests) == 1
    sent = stack.fake.requests[0].body.decode()
    for entity, value in CANARIES.items():
        assert value not in sent, f"{entity} reached the provider"
    assert "<EMAIL_ADDRESS_1>" in sent

    again = await stack.client.responses.with_raw_response.create(**ask)
    assert again.headers["x-aigw-cache"] == "hit-exact"
    assert again.parse().output_text == response.output_text
    async with stack.client.responses.stream(**ask) as stream:
        streamed = "".join(
            [event.delta async for event in stream if event.type == "response.output_text.delta"]
        )
        final = await stream.get_final_response()
    assert streamed == response.output_text
    assert final.output_text == response.output_text
    assert len(stack.fake.requests) == 1, "the repeats were answered from the cache"

    rows = await stack.rows()
    assert [row["dialect"] for row in rows] == ["responses"] * 3
    assert [row["cache_status"] for row in rows] == ["miss", "hit-exact", "hit-exact"]
    assert rows[0]["prompt_tokens"] == response.usage.input_tokens
    assert rows[0]["completion_tokens"] == response.usage.output_tokens
    logged = orjson.dumps(rows, default=str).decode()
    for entity, value in CANARIES.items():
        assert value not in logged, f"{entity} reached the request log"


async def test_a_streamed_miss_is_replayed_as_json_and_as_a_stream(stack: Stack) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "max_output_tokens": 100,
        "input": "Name three prime numbers below ten.",
        "store": False,
    }
    async with stack.client.responses.stream(**ask) as stream:
        first = "".join([event.delta async for event in stream if event.type == "response.output_text.delta"])
        final = await stream.get_final_response()
    assert first
    assert final.usage is not None
    raw = await stack.client.responses.with_raw_response.create(**ask)
    assert raw.headers["x-aigw-cache"] == "hit-exact"
    assert raw.parse().output_text == first
    async with stack.client.responses.stream(**ask) as stream:
        again = "".join([event.delta async for event in stream if event.type == "response.output_text.delta"])
    assert again == first
    assert len(stack.fake.requests) == 1
    rows = await stack.rows()
    assert [row["cache_status"] for row in rows] == ["miss", "hit-exact", "hit-exact"]
    assert rows[0]["completion_tokens"] == final.usage.output_tokens
