"""FakeProvider speaks the OpenAI Responses API: JSON and typed SSE events the official SDK parses,
the echo and function calls of its chat endpoint, and the real API's refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest

from asgi_aigw.kernel.context import Usage
from asgi_aigw.kernel.dialects.responses import RESPONSES
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport
from asgi_aigw.testing.server import serve

from .golden import call_answered
from .support import sse_payloads

TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url="http://fake") as client:
        yield client


@pytest.fixture
async def client(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://fake/v1", api_key="test-key-not-real", http_client=http, max_retries=0
    )


async def test_json_answer_echoes_with_usage(client: openai.AsyncOpenAI, fake: FakeProvider) -> None:
    answer = await client.responses.create(
        model="gpt-4o", instructions="Be brief.", input="one two, three", max_output_tokens=64, store=False
    )
    assert answer.object == "response"
    assert answer.id.startswith("resp_")
    assert answer.status == "completed"
    assert answer.output_text == "Echo: one two, three"
    assert answer.output[0].id.startswith("msg_")
    assert (answer.instructions, answer.max_output_tokens, answer.store) == ("Be brief.", 64, False)
    assert answer.usage is not None
    # the fake's count: words and punctuation, +4 a message, +3 a request; one token a streamed piece
    assert answer.usage.input_tokens == (3 + 4) + (4 + 4) + 3
    assert answer.usage.output_tokens == 4
    assert answer.usage.total_tokens == 18 + 4
    assert fake.last_request.path == "/v1/responses"


async def test_function_call_round_trip(client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="m", input="weather in Paris", tools=[TOOL])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call"
    assert (call.name, call.arguments) == ("lookup", '{"query":"weather in Paris"}')
    assert call.call_id.startswith("call_")
    assert call.id is not None
    assert call.id.startswith("fc_")
    second = await client.responses.create(
        model="m",
        tools=[TOOL],  # type: ignore[list-item]
        input=call_answered("weather in Paris", call, "sunny"),  # type: ignore[arg-type]
    )
    assert second.output_text == "Tool said: sunny"
    # tool_choice none: no call
    plain = await client.responses.create(model="m", input="hi", tools=[TOOL], tool_choice="none")  # type: ignore[list-item]
    assert plain.output_text == "Echo: hi"


async def test_the_output_cap_makes_the_answer_incomplete(client: openai.AsyncOpenAI) -> None:
    words = " ".join(f"w{i}" for i in range(40))
    answer = await client.responses.create(model="m", input=words, max_output_tokens=16)
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"
    assert answer.usage is not None
    assert answer.usage.output_tokens == 16


async def test_stream_is_the_typed_event_sequence(client: openai.AsyncOpenAI) -> None:
    events = [e async for e in await client.responses.create(model="m", input="a b", stream=True)]
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Echo: a b"
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None
    assert final.response.usage.output_tokens == 3


async def test_stream_helper_with_a_function_call(client: openai.AsyncOpenAI) -> None:
    async with client.responses.stream(model="m", input="find cats", tools=[TOOL]) as stream:  # type: ignore[list-item]
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    assert kinds.count("response.function_call_arguments.delta") == 2
    assert "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call"
    assert call.arguments == '{"query":"find cats"}'


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        (
            {"model": "m", "input": "x", "max_tokens": 20},
            "max_tokens",
            "unknown_parameter",
            "Unknown parameter: 'max_tokens'.",
        ),
        (
            {"model": "m", "input": "x", "max_output_tokens": 15},
            "max_output_tokens",
            "integer_below_min_value",
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 15 instead.",
        ),
        (
            {
                "model": "m",
                "input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
            },
            "input",
            None,
            "No tool call found for function call output with call_id call_nope.",
        ),
        ({"input": "x"}, "model", "missing_required_parameter", "Missing required parameter: 'model'."),
    ],
)
async def test_refuses_what_the_real_api_refuses(
    http: httpx.AsyncClient, body: dict[str, Any], param: str, code: str | None, message: str
) -> None:
    answer = await http.post("/v1/responses", json=body)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


async def test_a_call_output_may_refer_to_a_previous_response(http: httpx.AsyncClient) -> None:
    items = [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]
    answer = await http.post(
        "/v1/responses", json={"model": "m", "input": items, "previous_response_id": "resp_1"}
    )
    assert answer.status_code == 200
    assert answer.json()["output"][0]["content"][0]["text"] == "Tool said: sunny"
    assert (
        await http.post("/v1/responses", json={"model": "m", "input": "x", "max_output_tokens": 16})
    ).status_code == 200


async def test_the_sdk_raises_the_refusal(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="m", input="x", max_output_tokens=8)
    assert refused.value.code == "integer_below_min_value"
    assert refused.value.param == "max_output_tokens"


async def test_behaviours(http: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.enqueue(FakeBehaviour(status=429, retry_after="2"))
    limited = await http.post("/v1/responses", json={"model": "m", "input": "x"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"

    fake.enqueue(FakeBehaviour(stream_error_after=1))
    payloads = sse_payloads(
        (await http.post("/v1/responses", json={"model": "m", "input": "a b c", "stream": True})).text
    )
    assert [p["type"] for p in payloads][-2:] == ["response.output_text.delta", "error"]
    assert payloads[-1]["sequence_number"] == len(payloads) - 1

    fake.enqueue(FakeBehaviour(cut_after=1))
    payloads = sse_payloads(
        (await http.post("/v1/responses", json={"model": "m", "input": "a b c", "stream": True})).text
    )
    assert payloads[-1]["type"] == "response.output_text.delta"


@pytest.fixture
def served(fake: FakeProvider) -> Iterator[str]:
    with serve(fake) as base:
        yield base


def test_the_sdk_over_a_real_server(served: str) -> None:
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="test-key-not-real", max_retries=0)
    with client.responses.stream(model="m", input="hello world") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "Echo: hello world"


async def test_the_dialect_meters_the_fakes_stream(http: httpx.AsyncClient) -> None:
    body = {"model": "m", "input": "a b", "stream": True}
    payloads = sse_payloads((await http.post("/v1/responses", json=body)).text)
    meter = RESPONSES.stream_meter()
    assert "".join(meter.feed(p["type"], p) for p in payloads) == "Echo: a b"
    final = payloads[-1]["response"]
    assert meter.usage == Usage(final["usage"]["input_tokens"], 3, final["usage"]["total_tokens"])
    assert meter.model == "m"
    json_answer = (await http.post("/v1/responses", json={**body, "stream": False})).json()
    assert RESPONSES.usage(json_answer) == meter.usage
    assert RESPONSES.answer_text(json_answer) == "Echo: a b"
