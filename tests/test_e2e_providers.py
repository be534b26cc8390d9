"""End to end: the official openai SDK, through the gateway on a real uvicorn, answered by FakeProvider
speaking Anthropic's, Gemini's and Ollama's own wire formats."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.config import GatewayConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport, serve

pytestmark = pytest.mark.e2e

ANTHROPIC_URL = "http://fake-anthropic.test"
GEMINI_URL = "http://fake-gemini.test"
OLLAMA_URL = "http://fake-ollama.test"

PROVIDERS = {
    "claude": ("anthropic", "claude-test-1", ANTHROPIC_URL, "sk-ant-test-0123456789"),
    "gemini": ("gemini", "gemini-test-flash", GEMINI_URL, "test-gemini-key-0123456789"),
    "llama": ("ollama", "llama-test:8b", OLLAMA_URL, None),
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]


def provider_config() -> GatewayConfig:
    models = [
        ModelConfig(
            name=alias,
            deployments=[DeploymentConfig(provider=provider, model=model, base_url=url, api_key=key)],  # type: ignore[arg-type]
        )
        for alias, (provider, model, url, key) in PROVIDERS.items()
    ]
    models.append(
        ModelConfig(
            name="gemini-embed",
            deployments=[
                DeploymentConfig(
                    provider="gemini",
                    model="text-embedding-004",
                    base_url=GEMINI_URL,
                    api_key="test-gemini-key-0123456789",
                )  # type: ignore[arg-type]
            ],
        )
    )
    models.append(
        ModelConfig(
            name="ollama-embed",
            deployments=[DeploymentConfig(provider="ollama", model="all-minilm", base_url=OLLAMA_URL)],
        )
    )
    return GatewayConfig(router=RouterConfig(models=models))


@pytest.fixture
def gateway(fake: FakeProvider) -> Iterator[str]:
    transport = StreamingASGITransport(fake)
    app = build_app(
        provider_config(),
        transports={ANTHROPIC_URL: transport, GEMINI_URL: transport, OLLAMA_URL: transport},
        env={},
    )
    with serve(app) as base_url:
        yield base_url


def sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/ai/v1", api_key="sk-test-client", max_retries=0)


@pytest.mark.parametrize("alias", list(PROVIDERS))
async def test_sdk_json_and_stream_from_each_provider(gateway: str, fake: FakeProvider, alias: str) -> None:
    provider, model, _, _ = PROVIDERS[alias]
    client = sdk(gateway)
    response = await client.chat.completions.with_raw_response.create(
        model=alias,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
    )
    completion = response.parse()
    assert completion.choices[0].message.content == "Echo: Say hi"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    # system ("Be brief." is 3 tokens, + 4) + user (2 + 4) + 3: the same count in every wire format
    assert completion.usage.prompt_tokens == 7 + 6 + 3
    assert response.headers["x-aigw-provider"] == provider
    assert response.headers["x-aigw-model"] == model

    stream = await client.chat.completions.create(
        model=alias,
        messages=[{"role": "user", "content": "Stream this please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "Echo: Stream this please"
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == 4
    assert fake.completed_streams == 1
    await client.close()


@pytest.mark.parametrize("alias", list(PROVIDERS))
@pytest.mark.parametrize("stream", [False, True])
async def test_sdk_tool_call_round_trip(gateway: str, alias: str, stream: bool) -> None:
    client = sdk(gateway)
    messages: list[Any] = [{"role": "user", "content": "weather in Paris"}]
    if stream:
        chunks = await client.chat.completions.create(
            model=alias, messages=messages, tools=TOOLS, stream=True
        )
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in chunks:
            if not chunk.choices:
                continue
            finish = chunk.choices[0].finish_reason or finish
            for delta in chunk.choices[0].delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
        assert finish == "tool_calls"
        call_id, name, arguments = calls[0]["id"], calls[0]["name"], calls[0]["arguments"]
    else:
        completion = await client.chat.completions.create(model=alias, messages=messages, tools=TOOLS)
        assert completion.choices[0].finish_reason == "tool_calls"
        tool_call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        call_id, name, arguments = tool_call.id, tool_call.function.name, tool_call.function.arguments  # type: ignore[union-attr]
    assert name == "lookup"
    assert arguments.replace(" ", "") == '{"query":"weatherinParis"}'
    assert call_id

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    answer = await client.chat.completions.create(model=alias, messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == "Tool said: sunny, 21C"
    await client.close()


@pytest.mark.parametrize("alias", ["gemini-embed", "ollama-embed"])
async def test_sdk_embeddings(gateway: str, alias: str) -> None:
    client = sdk(gateway)
    one = await client.embeddings.create(model=alias, input="vector me")
    many = await client.embeddings.create(model=alias, input=["a", "b c"], encoding_format="float")
    assert len(one.data[0].embedding) == 64  # the SDK asked for base64 and decoded it
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[0].embedding != many.data[1].embedding
    raw = await client.embeddings.with_raw_response.create(model=alias, input="x", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    assert len(struct.unpack("<64f", base64.b64decode(encoded))) == 64
    await client.close()
