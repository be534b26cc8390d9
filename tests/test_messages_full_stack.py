"""The whole stack on Anthropic's ``/v1/messages``, with the official ``anthropic`` SDK, against an
Anthropic deployment (passed through) and an OpenAI one (translated): a budget refusal in Anthropic's
shape, PII that never reaches the upstream and comes back restored, exact-cache hits on the repeat (JSON
and stream), and one log row per request with its dialect and usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from asgi_aigw.config import GatewayConfig
from asgi_aigw.httpx2_bridge import httpx2_client
from asgi_aigw.router.config import DeploymentConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .redact_support import CANARIES, CANARY_PROMPT
from .support import WholeStack, whole_stack, whole_stack_config

UPSTREAM = "http://fake-upstream.test"
#: The model name clients send; the deployment behind it is Anthropic's or OpenAI's.
MODEL = "claude-sonnet-4-5"


def config_for(provider: str, redis_url: str, prefix: str, tmp_path: Path, tokens: int) -> GatewayConfig:
    upstream_model = MODEL if provider == "anthropic" else "gpt-4o-mini"
    base_url = UPSTREAM if provider == "anthropic" else f"{UPSTREAM}/v1"
    deployment = DeploymentConfig(
        provider=provider,
        model=upstream_model,
        base_url=base_url,
        api_key="test-key-not-real",  # type: ignore[arg-type]
    )
    return whole_stack_config(MODEL, deployment, redis_url, prefix, tmp_path, tokens)


class Stack(WholeStack):
    def __init__(self, app: Any, fake: FakeProvider) -> None:
        super().__init__(app, fake)
        # the anthropic SDK is built on httpx2: the in-process transport through the bridge
        self.http = httpx2_client(StreamingASGITransport(app), base_url="http://app.test")
        self.client = anthropic.AsyncAnthropic(
            base_url="http://app.test/ai",
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


@pytest.fixture(params=["anthropic", "openai"])
async def stack(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    async for value in _stack(request.param, redis_url, redis_prefix, tmp_path):
        yield value


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_budget_refuses_in_anthropics_rate_limit_shape(
    provider: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    async for stack in _stack(provider, redis_url, redis_prefix, tmp_path, tokens=50):
        with pytest.raises(anthropic.RateLimitError) as caught:
            await stack.client.messages.create(
                model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Hello there"}]
            )
        body = caught.value.body
        assert isinstance(body, dict)
        assert body["type"] == "error"
        assert body["error"]["type"] == "rate_limit_error"
        assert "max_tokens" in body["error"]["message"]
        assert stack.fake.requests == []
        [row] = await stack.rows()
        assert row["status"] == 429
        assert row["dialect"] == "messages"


async def test_pii_stays_out_and_comes_back_and_the_repeat_is_a_cache_hit(stack: Stack) -> None:
    messages: list[Any] = [{"role": "user", "content": CANARY_PROMPT}]
    first = await stack.client.messages.with_raw_response.create(
        model=MODEL, max_tokens=200, messages=messages
    )
    message = await first.parse()
    assert first.headers["x-aigw-cache"] == "miss"
    text = "".join(block.text for block in message.content if block.type == "text")
    for value in CANARIES.values():
        assert value in text, "the answer came back restored"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0

    # the upstream saw placeholders only
    assert len(stack.fake.requests) == 1
    sent = stack.fake.requests[0].body.decode()
    for entity, value in CANARIES.items():
        assert value not in sent, f"{entity} reached the provider"
    assert "<EMAIL_ADDRESS_1>" in sent

    # the same question again: JSON, then as a stream, both from the cache, restored
    again = await stack.client.messages.with_raw_response.create(
        model=MODEL, max_tokens=200, messages=messages
    )
    assert again.headers["x-aigw-cache"] == "hit-exact"
    assert (await again.parse()).content[0].type == "text"
    async with stack.client.messages.stream(model=MODEL, max_tokens=200, messages=messages) as stream:
        streamed = "".join([part async for part in stream.text_stream])
        final = await stream.get_final_message()
    assert streamed == text
    assert final.stop_reason == message.stop_reason
    assert len(stack.fake.requests) == 1, "the repeats were answered from the cache"

    rows = await stack.rows()
    assert len(rows) == 3
    assert [row["dialect"] for row in rows] == ["messages"] * 3
    assert [row["cache_status"] for row in rows] == ["miss", "hit-exact", "hit-exact"]
    assert rows[0]["prompt_tokens"] > 0
    assert rows[0]["completion_tokens"] > 0
    logged = orjson.dumps(rows, default=str).decode()
    for entity, value in CANARIES.items():
        assert value not in logged, f"{entity} reached the request log"


async def test_a_streamed_miss_is_replayed_as_json_and_as_a_stream(stack: Stack) -> None:
    messages: list[Any] = [{"role": "user", "content": "Name three prime numbers below ten."}]
    async with stack.client.messages.stream(model=MODEL, max_tokens=100, messages=messages) as stream:
        first = "".join([part async for part in stream.text_stream])
        final = await stream.get_final_message()
    assert first
    assert final.usage.output_tokens > 0
    raw = await stack.client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=messages)
    assert raw.headers["x-aigw-cache"] == "hit-exact"
    assert "".join(b.text for b in (await raw.parse()).content if b.type == "text") == first
    async with stack.client.messages.stream(model=MODEL, max_tokens=100, messages=messages) as stream:
        assert "".join([part async for part in stream.text_stream]) == first
    assert len(stack.fake.requests) == 1
    rows = await stack.rows()
    assert [row["cache_status"] for row in rows] == ["miss", "hit-exact", "hit-exact"]
    assert rows[0]["completion_tokens"] == final.usage.output_tokens


async def test_count_tokens_goes_through_every_layer_uncharged_and_redacted(stack: Stack) -> None:
    messages: list[Any] = [{"role": "user", "content": CANARY_PROMPT}]
    counted = await stack.client.messages.with_raw_response.count_tokens(model=MODEL, messages=messages)
    assert (await counted.parse()).input_tokens > 0
    # counting is no generation: neither cached nor charged, and (Anthropic counts upstream) redacted
    assert "x-aigw-cache" not in counted.headers
    for request in stack.fake.requests:
        for entity, value in CANARIES.items():
            assert value not in request.body.decode(), f"{entity} reached the provider"
    await stack.client.messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    )
    rows = await stack.rows()
    assert [(row["route"], row["dialect"]) for row in rows] == [
        ("count_tokens", "messages"),
        ("messages", "messages"),
    ]
    assert rows[0]["status"] == 200
    # the budget reserved nothing for the count, and did for the message after it
    assert rows[0]["token_estimate"] is None
    assert rows[1]["token_estimate"] is not None
    assert rows[0]["cost"] in (None, 0, 0.0)
    logged = orjson.dumps(rows, default=str).decode()
    for entity, value in CANARIES.items():
        assert value not in logged, f"{entity} reached the request log"
