"""The whole stack build_app assembles (request log, tenant, budget, redact, cache, router) on
``/v1/responses``, with the official ``openai`` SDK, against an OpenAI deployment (passed through) and
an Anthropic one (translated): PII in the instructions and the input never reaches the provider, Redis
or the request log, and ``responses.create`` and ``responses.stream`` get it back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis.asyncio as aredis

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.config import GatewayConfig
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.redact import RedactConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .redact_support import CANARIES, CANARY_PROMPT
from .test_canary_full_stack import FullStack, layer

UPSTREAM = "http://fake-upstream.test"
LOOKUP: Any = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    "strict": True,
}


class ResponsesStack(FullStack):
    async def places(self) -> dict[str, list[bytes]]:
        """As the chat stack's, with Qdrant's payloads only if the cache made its collection (it lets
        the Responses API pass for now, so it may never have)."""
        cache = layer(self.app, SemanticCacheMiddleware)
        await cache.drain()
        if await cache.vector.client.collection_exists(cache.config.collection):
            return await super().places()
        await cache.vector.client.create_collection(cache.config.collection, vectors_config={})
        found = await super().places()
        assert found["Qdrant payloads"] == []
        return found


@pytest.fixture(params=["openai", "anthropic"])
async def full_stack(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[FullStack]:
    provider = request.param
    deployment = DeploymentConfig(
        provider=provider,
        model="up-model",
        base_url=f"{UPSTREAM}/v1" if provider == "openai" else UPSTREAM,
        api_key="test-key-not-real",  # type: ignore[arg-type]
        responses_api=True if provider == "openai" else None,
    )
    config = GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name="model", deployments=[deployment])], retry=RetryConfig(retries=0)
        ),
        tenant=TenantConfig(header="x-tenant-id"),
        budget=BudgetConfig(
            store=redis_url, key_prefix=f"{redis_prefix}budget:", limits=Limits(tokens_per_minute=1_000_000)
        ),
        redact=RedactConfig(),
        cache=CacheConfig(
            store=redis_url,
            key_prefix=f"{redis_prefix}cache:",
            vector_store=f"qdrant+local://{tmp_path / 'qdrant'}",
        ),
        log=LogConfig(store="memory://", spool_dir=None, flush_interval=3600, log_bodies=True),
    )
    fake = FakeProvider()
    app = build_app(config, transports={UPSTREAM: StreamingASGITransport(fake)}, env={})
    client = aredis.Redis.from_url(redis_url)
    yield ResponsesStack(app, fake, client, redis_prefix)
    async for key in client.scan_iter(match=f"{redis_prefix}*"):
        await client.delete(key)
    await client.aclose()
    await layer(app, SemanticCacheMiddleware).aclose()


async def test_canaries_stay_out_of_every_store_and_come_back_to_the_client(full_stack: FullStack) -> None:
    instructions = f"You assist {CANARIES['PERSON']} ({CANARIES['EMAIL_ADDRESS']})."
    expected = f"Echo: {CANARY_PROMPT}"
    async with httpx.AsyncClient(transport=StreamingASGITransport(full_stack.app)) as http:
        client = openai.AsyncOpenAI(
            base_url="http://app.test/ai/v1",
            api_key="test-key-not-real",
            default_headers={"x-tenant-id": "acme"},
            http_client=http,
            max_retries=0,
        )
        first = await client.responses.create(
            model="model", instructions=instructions, input=CANARY_PROMPT, max_output_tokens=300
        )
        async with client.responses.stream(
            model="model", instructions=instructions, input=CANARY_PROMPT, max_output_tokens=300
        ) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            streamed = await stream.get_final_response()
        async with client.responses.stream(
            model="model", input=CANARY_PROMPT, tools=[LOOKUP], max_output_tokens=300
        ) as stream:
            called = await stream.get_final_response()

    assert first.output_text == expected
    assert "".join(deltas) == expected
    assert streamed.output_text == expected
    call = called.output[0]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"query": CANARY_PROMPT}
    assert len(full_stack.fake.requests) == 3  # the cache lets the Responses API pass

    places = await full_stack.places()
    for where in ("the provider", "Redis", "the request log"):
        assert places[where], f"nothing reached {where}: the test would pass vacuously"
    for where, blobs in places.items():
        text = b"\n".join(blobs).decode("utf-8", "replace")
        squeezed = text.replace(" ", "")
        for entity, value in CANARIES.items():
            assert value not in text, f"{entity} reached {where}"
            assert value.replace(" ", "") not in squeezed, f"{entity} reached {where}"
    # the provider and the log did receive the request, redacted
    assert all(b"<EMAIL_ADDRESS_1>" in blob for blob in places["the provider"])
    assert sum(b"<EMAIL_ADDRESS_1>" in blob for blob in places["the request log"]) == 3
