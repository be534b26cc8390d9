"""End to end: the official anthropic SDK against the router mounted at /ai on a real uvicorn, for a
model served by an Anthropic deployment (passthrough) and one served by an OpenAI deployment
(translation), FakeProvider speaking each format on its own uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import pytest

from asgi_aigw.router.config import DeploymentConfig, ModelConfig
from asgi_aigw.testing import FakeProvider

from .golden import PNG
from .support import gateway_over

pytestmark = pytest.mark.e2e

KEY = "test-key-not-real"
#: One model per kind of deployment: passed through, and translated.
MODELS = ["claude", "gpt"]
LOOKUP = {
    "name": "lookup",
    "description": "Look something up.",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}


def models(upstream: str) -> list[ModelConfig]:
    anthropic_up = DeploymentConfig(provider="anthropic", model="claude-up", base_url=upstream, api_key=KEY)  # type: ignore[arg-type]
    openai_up = DeploymentConfig(
        provider="openai", model="gpt-4o-mini", base_url=upstream + "/v1", api_key=KEY
    )  # type: ignore[arg-type]
    return [
        ModelConfig(name="claude", deployments=[anthropic_up]),
        ModelConfig(name="gpt", deployments=[openai_up]),
    ]


@pytest.fixture
def gateway(fake: FakeProvider) -> Iterator[str]:
    """FakeProvider on one uvicorn, the gateway (router mounted at /ai) on another; the base URL an
    Anthropic client is given (``ANTHROPIC_BASE_URL``)."""
    with gateway_over(fake, models) as base_url:
        yield f"{base_url}/ai"


@pytest.fixture
async def sdk(gateway: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=gateway, api_key="gateway-key-not-real", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize("model", MODELS)
async def test_create_and_stream(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    message = await sdk.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Say hi"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: Say hi"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3
    assert message.usage.input_tokens > 0

    async with sdk.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Stream this please"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Echo: Stream this please"
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_tool_use_round_trip(sdk: anthropic.AsyncAnthropic, model: str, streamed: bool) -> None:
    question: anthropic.types.MessageParam = {"role": "user", "content": "Find cats"}
    if streamed:
        async with sdk.messages.stream(model=model, max_tokens=64, messages=[question], tools=[LOOKUP]) as s:
            call = await s.get_final_message()
    else:
        call = await sdk.messages.create(model=model, max_tokens=64, messages=[question], tools=[LOOKUP])
    assert call.stop_reason == "tool_use"
    tool_use = next(block for block in call.content if block.type == "tool_use")
    assert tool_use.name == "lookup"
    assert tool_use.input == {"query": "Find cats"}
    answer = await sdk.messages.create(
        model=model,
        max_tokens=64,
        tools=[LOOKUP],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump() for block in call.content]},  # type: ignore[misc]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "3 cats found"}],
            },
        ],
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "Tool said: 3 cats found"


@pytest.mark.parametrize("model", MODELS)
async def test_image_and_count_tokens(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    content: list[anthropic.types.ContentBlockParam] = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]
    message = await sdk.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: What is in this image?"

    short = await sdk.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hello"}])
    long = await sdk.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hello " * 40}])
    assert 0 < short.input_tokens < long.input_tokens


@pytest.mark.parametrize("model", MODELS)
async def test_errors_are_the_sdks_own_exceptions(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await sdk.messages.create(
            model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    body = missing.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        await sdk.messages.create(model=model, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in bad.value.message


async def test_models_in_anthropics_shape_through_the_whole_gateway(sdk: anthropic.AsyncAnthropic) -> None:
    page = await sdk.models.list()
    assert [m.id for m in page.data] == MODELS
    assert (page.first_id, page.last_id, page.has_more) == ("claude", "gpt", False)
    beta = await sdk.beta.models.retrieve("gpt")
    assert (beta.type, beta.id) == ("model", "gpt")
    with pytest.raises(anthropic.NotFoundError) as missing:
        await sdk.models.retrieve("claude-up")  # the upstream's name, not one the gateway lists
    body = missing.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "not_found_error"
