"""Structured outputs on the Messages route: ``output_config.format`` passes through to Anthropic and is
translated to each other provider's structured output; the rest of ``output_config`` is refused there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.router import ProviderRouter
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .test_provider_fidelity import DEPLOYMENTS, VERSION, router_config

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "nights": {"type": ["integer", "null"]}},
    "required": ["city", "nights"],
    "additionalProperties": False,
}
OUTPUT = {"format": {"type": "json_schema", "schema": SCHEMA}}


@pytest.fixture
async def gateway(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = StreamingASGITransport(fake)
    router = ProviderRouter(
        router_config(), transports={url: transport for _, _, url, _ in DEPLOYMENTS.values()}, env={}
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(router), base_url="http://testserver", headers=VERSION
    ) as client:
        yield client
    await router.aclose()


async def messages(client: httpx.AsyncClient, model: str, output_config: Any) -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Plan a trip"}],
        "output_config": output_config,
    }
    return await client.post("/v1/messages", json=body)


async def test_passes_through_to_anthropic_unchanged(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await messages(gateway, "claude", OUTPUT)
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1].json["output_config"] == OUTPUT
    assert orjson.loads(answer.json()["content"][0]["text"]) == {"city": "text", "nights": 1}


async def test_becomes_a_json_schema_response_format_at_openai(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await messages(gateway, "gpt", OUTPUT)
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA},
    }
    assert answer.json()["type"] == "message"


async def test_becomes_a_response_schema_at_gemini(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await messages(gateway, "gemini", OUTPUT)
    assert answer.status_code == 200, answer.text
    config = fake.requests[-1].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["nights"] == {"type": "integer", "nullable": True}


async def test_other_output_config_fields_are_a_400_where_they_have_no_translation(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await messages(gateway, "gpt", {"effort": "low"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "output_config.effort" in error["message"]
    assert fake.requests == []
