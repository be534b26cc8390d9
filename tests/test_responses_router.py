"""ProviderRouter's Responses route against FakeProvider in process: passthrough to an OpenAI deployment
serving the Responses API, translation to an Anthropic one, routing, fallbacks and errors in OpenAI's
shape, mid-stream errors as numbered ``error`` events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_aigw.kernel.context import RequestContext
from asgi_aigw.kernel.dialects import RESPONSES
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.router.registry import ModelRegistry
from asgi_aigw.router.responses import serves_responses
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .support import ContextSpy, post_scope, sse_payloads

URL = "http://fake-upstream.test"
KEY = "test-key-not-real"
HELLO: dict[str, Any] = {"model": "gpt", "input": "Hello there", "max_output_tokens": 64}
LOOKUP = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}
CLIENT_HEADERS = {"authorization": "Bearer client-gateway-key", "openai-beta": "responses=v1"}


def deployments() -> tuple[DeploymentConfig, DeploymentConfig]:
    openai = DeploymentConfig(
        provider="openai",
        model="gpt-up",
        base_url=URL + "/v1",
        api_key=KEY,  # type: ignore[arg-type]
        responses_api=True,
    )
    anthropic = DeploymentConfig(provider="anthropic", model="claude-up", base_url=URL, api_key=KEY)  # type: ignore[arg-type]
    return openai, anthropic


def config() -> RouterConfig:
    openai, anthropic = deployments()
    return RouterConfig(
        models=[
            ModelConfig(name="gpt", deployments=[openai]),
            ModelConfig(name="claude", deployments=[anthropic]),
            ModelConfig(name="mixed", deployments=[openai, anthropic]),
        ],
        retry=RetryConfig(retries=0, backoff_base=0),
    )


@pytest.fixture
async def spy(fake: FakeProvider) -> ContextSpy:
    return ContextSpy(ProviderRouter(config(), transports={URL: StreamingASGITransport(fake)}, env={}))


@pytest.fixture
async def client(spy: ContextSpy) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(spy)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=CLIENT_HEADERS) as c:
        yield c


async def direct(body: dict[str, Any]) -> httpx.Response:
    """The same request straight to a twin of the upstream (same ids, same answer)."""
    twin = FakeProvider()
    async with httpx.AsyncClient(transport=StreamingASGITransport(twin), base_url=URL) as upstream:
        return await upstream.post("/v1/responses", json=body)


def openai_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]  # type: ignore[no-any-return]


# -- which deployments pass through -----------------------------------------------------------------------


def test_only_openai_deployments_serving_the_api_pass_through() -> None:
    openai, anthropic = deployments()
    registry = ModelRegistry(
        RouterConfig(
            models=[
                ModelConfig(name="own", deployments=[DeploymentConfig(model="gpt-4o", api_key=KEY)]),  # type: ignore[arg-type]
                ModelConfig(
                    name="vllm",
                    deployments=[DeploymentConfig(model="llama", base_url="http://vllm:8000/v1")],
                ),
                ModelConfig(name="set", deployments=[openai]),
                ModelConfig(name="claude", deployments=[anthropic]),
                ModelConfig(
                    name="off",
                    deployments=[DeploymentConfig(model="gpt-4o", api_key=KEY, responses_api=False)],  # type: ignore[arg-type]
                ),
            ]
        ),
        env={},
    )
    served = {name: serves_responses(registry.resolve(name).deployments[0]) for name in registry._aliases}
    # OpenAI's own API does; an OpenAI-compatible server only when configured to; never other providers
    assert served == {"own": True, "vllm": False, "set": True, "claude": False, "off": False}


def test_responses_api_on_another_provider_is_a_configuration_error() -> None:
    bad = DeploymentConfig(provider="anthropic", model="claude-up", api_key=KEY, responses_api=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only openai"):
        ModelRegistry(RouterConfig(models=[ModelConfig(name="c", deployments=[bad])]), env={})


# -- passthrough ------------------------------------------------------------------------------------------


async def test_request_reaches_openai_byte_for_byte_but_the_model(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    # key order, spacing and OpenAI-only fields (stateful ones included) as the client wrote them
    sent = (
        b'{"model": "gpt",  "input": [{"role": "user", "content": "Hi"}], "store": true, '
        b'"previous_response_id": "resp_earlier", "include": ["reasoning.encrypted_content"], '
        b'"tools": [{"type": "web_search"}], "max_output_tokens": 64}'
    )
    response = await client.post("/v1/responses", content=sent, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    upstream = fake.last_request
    assert upstream.path == "/v1/responses"
    assert upstream.body == sent.replace(b'"model": "gpt"', b'"model": "gpt-up"', 1)
    # the deployment's key replaces the client's; the documented beta header is forwarded
    assert upstream.headers["authorization"] == f"Bearer {KEY}"
    assert upstream.headers["openai-beta"] == "responses=v1"
    assert response.json()["previous_response_id"] == "resp_earlier"


async def test_json_answer_is_relayed_unchanged_and_usage_recorded(
    client: httpx.AsyncClient, spy: ContextSpy
) -> None:
    response = await client.post("/v1/responses", json=HELLO)
    expected = await direct({**HELLO, "model": "gpt-up"})
    assert response.content == expected.content
    assert response.headers["x-aigw-provider"] == "openai"
    assert response.headers["x-aigw-model"] == "gpt-up"
    assert response.headers["x-aigw-deployment"] == "openai/gpt-up"
    ctx: RequestContext = spy.contexts[-1]
    assert (ctx.route, ctx.model, ctx.stream, ctx.provider) == ("responses", "gpt", False, "openai")
    assert ctx.usage == RESPONSES.usage(response.json())
    assert ctx.usage is not None
    assert ctx.usage.completion_tokens == 3


async def test_stream_is_relayed_unchanged_and_its_usage_read(
    client: httpx.AsyncClient, spy: ContextSpy
) -> None:
    body = {**HELLO, "stream": True}
    response = await client.post("/v1/responses", json=body)
    expected = await direct({**body, "model": "gpt-up"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == expected.content
    final = sse_payloads(response.text)[-1]
    assert final["type"] == "response.completed"
    ctx: RequestContext = spy.contexts[-1]
    assert ctx.stream
    assert ctx.usage == RESPONSES.usage(final["response"])


async def test_upstream_refusal_keeps_its_status_message_and_param(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/responses", json={**HELLO, "max_output_tokens": 1})
    assert response.status_code == 400
    error = openai_error(response)
    assert "integer below minimum value" in error["message"]
    assert (error["param"], error["code"]) == ("max_output_tokens", "integer_below_min_value")


async def test_failing_openai_falls_back_to_the_translated_deployment(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.enqueue(FakeBehaviour(status=500))
    response = await client.post("/v1/responses", json={**HELLO, "model": "mixed"})
    assert response.status_code == 200, response.text
    assert response.headers["x-aigw-provider"] == "anthropic"
    assert response.headers["x-aigw-attempts"] == "2"
    assert [r.path for r in fake.requests] == ["/v1/responses", "/v1/messages"]
    assert response.json()["output"][0]["content"][0]["text"] == "Echo: Hello there"


async def test_error_event_mid_stream_ends_the_stream_numbered_in_sequence(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.enqueue(FakeBehaviour(stream_error_after=1))
    response = await client.post("/v1/responses", json={**HELLO, "stream": True})
    assert response.status_code == 200
    events = sse_payloads(response.text)
    assert [e["type"] for e in events[:-1]][-1] == "response.output_text.delta"
    error = events[-1]
    assert error == {
        "type": "error",
        "code": "server_error",
        "message": "The fake provider was told to fail.",
        "param": None,
        "sequence_number": events[-2]["sequence_number"] + 1,
    }


# -- translation ------------------------------------------------------------------------------------------


async def test_anthropic_deployment_answers_in_responses_format(
    client: httpx.AsyncClient, fake: FakeProvider, spy: ContextSpy
) -> None:
    body = {**HELLO, "model": "claude", "instructions": "Be brief."}
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    upstream = fake.last_request
    assert upstream.path == "/v1/messages"
    assert upstream.json["system"] == "Be brief."
    assert upstream.json["max_tokens"] == 64
    assert upstream.headers["x-api-key"] == KEY
    answer = response.json()
    assert (answer["object"], answer["status"], answer["model"]) == ("response", "completed", "claude-up")
    assert answer["output"][0]["content"][0]["text"] == "Echo: Hello there"
    usage = answer["usage"]
    assert usage["output_tokens"] == 3
    assert usage["input_tokens"] > 0
    ctx: RequestContext = spy.contexts[-1]
    assert ctx.usage is not None
    assert ctx.usage.completion_tokens == 3
    assert (ctx.provider, ctx.route) == ("anthropic", "responses")


async def test_anthropic_stream_becomes_responses_events_with_usage(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/responses", json={**HELLO, "model": "claude", "stream": True})
    events = sse_payloads(response.text)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Echo: Hello there"
    assert events[-1]["response"]["usage"]["output_tokens"] == 3


async def test_function_call_and_its_output_round_trip_through_anthropic(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    question = {"model": "claude", "input": "Find cats", "tools": [LOOKUP], "max_output_tokens": 64}
    call = (await client.post("/v1/responses", json=question)).json()["output"][0]
    assert call["type"] == "function_call"
    assert call["name"] == "lookup"
    assert orjson.loads(call["arguments"]) == {"query": "Find cats"}
    follow_up = {
        **question,
        "input": [
            {"role": "user", "content": "Find cats"},
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "3 cats"},
        ],
    }
    answer = await client.post("/v1/responses", json=follow_up)
    assert answer.status_code == 200, answer.text
    # Anthropic got the call and its result under the provider's own id
    blocks = fake.last_request.json["messages"]
    assert blocks[1]["content"][0]["id"] == call["call_id"]
    assert blocks[2]["content"][0]["tool_use_id"] == call["call_id"]
    assert answer.json()["output"][0]["content"][0]["text"] == "Tool said: 3 cats"


async def test_untranslatable_fields_are_refused_before_anything_is_sent(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    response = await client.post(
        "/v1/responses", json={**HELLO, "model": "claude", "previous_response_id": "resp_1"}
    )
    assert response.status_code == 400
    error = openai_error(response)
    assert (error["param"], error["code"]) == ("previous_response_id", "untranslatable_param")
    assert fake.requests == []


async def test_translated_stream_error_is_one_numbered_error_event(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.enqueue(FakeBehaviour(stream_error_after=1))
    response = await client.post("/v1/responses", json={**HELLO, "model": "claude", "stream": True})
    events = sse_payloads(response.text)
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1
    assert events[-1] is errors[0]
    assert errors[0]["sequence_number"] == events[-2]["sequence_number"] + 1
    assert "Overloaded" in errors[0]["message"]


# -- the route's own refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": "Hi"}, 400, "model"),
        ({"model": "gpt", "input": "Hi", "stream": "yes"}, 400, "stream"),
        ({"model": "nope", "input": "Hi"}, 404, "model"),
    ],
)
async def test_bad_requests_are_refused_in_openais_shape(
    client: httpx.AsyncClient, fake: FakeProvider, body: dict[str, Any], status: int, param: str
) -> None:
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == status
    assert openai_error(response)["param"] == param
    assert fake.requests == []


async def test_a_body_that_is_not_an_object_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/responses", json=["model", "gpt"])
    assert response.status_code == 400
    assert openai_error(response)["type"] == "invalid_request_error"


async def test_wrong_method_is_a_405_naming_post(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/responses")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    openai_error(response)


# -- streaming, message by message ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_events_leave_as_they_come_and_a_disconnect_closes_the_upstream(model: str) -> None:
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.2))
    router = ProviderRouter(config(), transports={URL: StreamingASGITransport(fake)}, env={})
    body = orjson.dumps({"model": model, "input": "a b c d e", "stream": True, "max_output_tokens": 64})
    communicator = ApplicationCommunicator(router, post_scope("/v1/responses", body))
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    assert (await communicator.receive_output(5))["type"] == "http.response.start"
    first = (await communicator.receive_output(5))["body"]
    assert first.startswith(b"event: response.created")
    # the answer has started while the upstream is still generating: nothing was held back
    assert fake.completed_streams == 0
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)
    assert fake.disconnects == 1
    assert fake.completed_streams == 0
    await router.aclose()


async def test_fields_the_provider_has_no_place_for_are_reported_under_their_responses_names(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = {**HELLO, "model": "claude", "text": {"verbosity": "low"}, "metadata": {"team": "a"}}
    response = await client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    dropped = response.headers["x-aigw-dropped-params"].split(",")
    # the chat field verbosity is the client's text.verbosity
    assert "text.verbosity" in dropped
    assert "verbosity" not in dropped
    assert "metadata" in dropped
    assert "verbosity" not in fake.last_request.json
    # reasoning.effort becomes reasoning_effort, which Anthropic takes as extended thinking
    thinking = await client.post(
        "/v1/responses",
        json={**HELLO, "model": "claude", "reasoning": {"effort": "low"}, "max_output_tokens": 4096},
    )
    assert thinking.status_code == 200, thinking.text
    assert "x-aigw-dropped-params" not in thinking.headers
    assert fake.last_request.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert fake.last_request.json["max_tokens"] == 4096
    # passed through, nothing is left out
    passed = await client.post("/v1/responses", json={**body, "model": "gpt"})
    assert "x-aigw-dropped-params" not in passed.headers
