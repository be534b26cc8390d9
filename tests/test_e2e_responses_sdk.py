"""End to end: the official openai SDK's Responses API against the router mounted at /ai on a real
uvicorn, for a model served by an OpenAI deployment (passthrough) and one served by an Anthropic
deployment (translation), FakeProvider speaking each format on its own uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseErrorEvent, ResponseFunctionToolCall

from asgi_aigw.router.config import DeploymentConfig, ModelConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider

from .support import gateway_over

pytestmark = pytest.mark.e2e

KEY = "test-key-not-real"
#: One model per kind of deployment: passed through, and translated.
MODELS = ["gpt", "claude"]
LOOKUP: Any = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    "strict": True,
}


def models(upstream: str) -> list[ModelConfig]:
    openai_deployment = DeploymentConfig(
        provider="openai",
        model="gpt-up",
        base_url=upstream + "/v1",
        api_key=KEY,  # type: ignore[arg-type]
        responses_api=True,
    )
    anthropic_deployment = DeploymentConfig(
        provider="anthropic",
        model="claude-up",
        base_url=upstream,
        api_key=KEY,  # type: ignore[arg-type]
    )
    return [
        ModelConfig(name="gpt", deployments=[openai_deployment]),
        ModelConfig(name="claude", deployments=[anthropic_deployment]),
    ]


@pytest.fixture
def gateway(fake: FakeProvider) -> Iterator[str]:
    """FakeProvider on one uvicorn, the gateway (router mounted at /ai) on another; the base URL an
    OpenAI client is given."""
    with gateway_over(fake, models) as base_url:
        yield f"{base_url}/ai/v1"


@pytest.fixture
async def sdk(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=gateway, api_key="gateway-key-not-real", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.mark.parametrize("model", MODELS)
async def test_create_and_stream(sdk: openai.AsyncOpenAI, fake: FakeProvider, model: str) -> None:
    response = await sdk.responses.create(model=model, input="Say hi", max_output_tokens=64)
    assert response.output_text == "Echo: Say hi"
    assert response.status == "completed"
    assert response.usage is not None
    assert response.usage.output_tokens == 3
    assert response.usage.input_tokens > 0
    # each kind reached its own API
    assert fake.last_request.path == ("/v1/responses" if model == "gpt" else "/v1/messages")

    async with sdk.responses.stream(
        model=model, input="Stream this please", instructions="Be brief.", max_output_tokens=64
    ) as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Echo: Stream this please"
    assert final.output_text == "Echo: Stream this please"
    assert final.usage is not None
    assert final.usage.output_tokens == 4


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("streamed", [False, True])
async def test_function_call_round_trip(sdk: openai.AsyncOpenAI, model: str, streamed: bool) -> None:
    question: Any = {"role": "user", "content": "Find cats"}
    first: Response
    if streamed:
        async with sdk.responses.stream(
            model=model, input=[question], tools=[LOOKUP], max_output_tokens=64
        ) as stream:
            first = await stream.get_final_response()
    else:
        first = await sdk.responses.create(
            model=model, input=[question], tools=[LOOKUP], max_output_tokens=64
        )
    call = next(item for item in first.output if item.type == "function_call")
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.name == "lookup"
    assert orjson.loads(call.arguments) == {"query": "Find cats"}
    answer = await sdk.responses.create(
        model=model,
        input=[
            question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "3 cats"},
        ],
        tools=[LOOKUP],
        max_output_tokens=64,
    )
    assert answer.output_text == "Tool said: 3 cats"


@pytest.mark.parametrize("model", MODELS)
async def test_mid_stream_failure_is_an_error_event_in_sequence(
    sdk: openai.AsyncOpenAI, fake: FakeProvider, model: str
) -> None:
    # the events arrive apart, as a long answer's do: the error comes after some went to the client
    fake.enqueue(FakeBehaviour(stream_error_after=1, chunk_delay=0.05))
    stream = await sdk.responses.create(
        model=model, input="Tell me something long", max_output_tokens=64, stream=True
    )
    events = [event async for event in stream]
    error = events[-1]
    assert isinstance(error, ResponseErrorEvent)
    assert error.sequence_number == events[-2].sequence_number + 1
    assert [e for e in events if e.type == "error"] == [error]


async def test_openais_own_refusal_reaches_the_sdk(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="gpt", input="Hi", max_output_tokens=1)
    assert caught.value.param == "max_output_tokens"
    assert caught.value.code == "integer_below_min_value"


async def test_translated_deployment_refuses_previous_response_id(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="claude", input="Hi", previous_response_id="resp_1")
    assert caught.value.param == "previous_response_id"
    assert caught.value.code == "untranslatable_param"


async def test_unknown_model_is_a_404(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.responses.create(model="nope", input="Hi")
    assert caught.value.code == "model_not_found"
