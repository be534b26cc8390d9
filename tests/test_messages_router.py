"""ProviderRouter's Messages routes against FakeProvider in process: passthrough to an Anthropic
deployment, translation to an OpenAI one, routing, errors in Anthropic's shape, count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_aigw.kernel.context import RequestContext, Usage
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig, Timeouts
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .support import ContextSpy, post_scope

URL = "http://fake-upstream.test"
KEY = "test-key-not-real"
HELLO: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello there"}],
}
SCHEMA = {"type": "object", "properties": {"query": {"type": "string"}}}

#: The request shapes Claude Code sends: a streamed turn with tools, system blocks carrying a cache
#: breakpoint, extended thinking, metadata.user_id, and a tool result answering the previous turn.
CLAUDE_CODE: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Project notes.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "List the files"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should call ls.", "signature": "c2lnbmF0dXJl"},
                {"type": "tool_use", "id": "toolu_01Abc", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01Abc", "content": "a.py\nb.py"},
                {"type": "text", "text": "Now read a.py", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ],
    "tools": [{"name": "Bash", "description": "Run a command.", "input_schema": SCHEMA}],
    "thinking": {"type": "enabled", "budget_tokens": 4000},
    "metadata": {"user_id": "user_abc_account_1_conversation_2"},
}
CLIENT_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
    "x-api-key": "client-gateway-key",
    "authorization": "Bearer client-gateway-key",
}


def config(retry: RetryConfig | None = None) -> RouterConfig:
    anthropic = DeploymentConfig(provider="anthropic", model="claude-up", base_url=URL, api_key=KEY)  # type: ignore[arg-type]
    openai = DeploymentConfig(provider="openai", model="gpt-4o-mini", base_url=URL + "/v1", api_key=KEY)  # type: ignore[arg-type]
    return RouterConfig(
        models=[
            ModelConfig(name="claude", deployments=[anthropic]),
            ModelConfig(name="gpt", deployments=[openai]),
            ModelConfig(name="mixed", deployments=[anthropic, openai]),
        ],
        retry=retry or RetryConfig(retries=0, backoff_base=0),
    )


@pytest.fixture
async def spy(fake: FakeProvider) -> ContextSpy:
    return ContextSpy(ProviderRouter(config(), transports={URL: StreamingASGITransport(fake)}, env={}))


@pytest.fixture
async def client(spy: ContextSpy) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(spy)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=CLIENT_HEADERS) as c:
        yield c


def raw(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


def anthropic_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}
    return body["error"]  # type: ignore[no-any-return]


# -- passthrough ---------------------------------------------------------------------------------------


async def test_claude_code_request_reaches_anthropic_byte_for_byte_but_the_model(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    sent = raw(CLAUDE_CODE)
    response = await client.post("/v1/messages", content=sent, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    upstream = fake.last_request
    assert upstream.path == "/v1/messages"
    assert upstream.body == sent.replace(b'"model":"claude"', b'"model":"claude-up"', 1)
    # the client's version and betas go on; the deployment's key replaces the client's credentials
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["anthropic-beta"] == CLIENT_HEADERS["anthropic-beta"]
    assert upstream.headers["x-api-key"] == KEY
    assert "authorization" not in upstream.headers


async def test_stream_is_relayed_event_by_event_unchanged(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = {**HELLO, "stream": True}
    response = await client.post("/v1/messages", json=body)
    # the same request straight to a twin of the upstream: the very same bytes
    twin = FakeProvider()
    async with httpx.AsyncClient(transport=StreamingASGITransport(twin), base_url=URL) as direct:
        expected = await direct.post(
            "/v1/messages", json={**body, "model": "claude-up"}, headers={"anthropic-version": "2023-06-01"}
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == expected.content
    assert b"event: message_stop" in response.content


async def test_json_answer_is_relayed_unchanged_and_usage_recorded(
    client: httpx.AsyncClient, spy: ContextSpy
) -> None:
    response = await client.post("/v1/messages", json=HELLO)
    twin = FakeProvider()
    async with httpx.AsyncClient(transport=StreamingASGITransport(twin), base_url=URL) as direct:
        expected = await direct.post(
            "/v1/messages", json={**HELLO, "model": "claude-up"}, headers={"anthropic-version": "2023-06-01"}
        )
    assert response.content == expected.content
    # Anthropic's request id comes along (the SDKs expose it as ``_request_id``)
    assert response.headers["request-id"] == expected.headers["request-id"]
    assert response.headers["x-aigw-provider"] == "anthropic"
    assert response.headers["x-aigw-model"] == "claude-up"
    ctx: RequestContext = spy.contexts[-1]
    assert (ctx.route, ctx.model, ctx.stream, ctx.provider) == ("messages", "claude", False, "anthropic")
    assert (ctx.deployment, ctx.upstream_model, ctx.status) == ("anthropic/claude-up", "claude-up", 200)
    assert ctx.usage == Usage.from_anthropic(response.json()["usage"])


async def test_anthropic_version_defaults_when_the_client_sends_none(
    spy: ContextSpy, fake: FakeProvider
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(spy), base_url="http://gw") as bare:
        response = await bare.post("/v1/messages", json=HELLO)
    assert response.status_code == 200
    assert fake.last_request.headers["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in fake.last_request.headers


async def test_upstream_refusal_keeps_its_status_and_message(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    bad = {**HELLO, "thinking": {"type": "enabled", "budget_tokens": 100}}
    response = await client.post("/v1/messages", json=bad)
    assert response.status_code == 400
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error"
    assert "budget_tokens" in error["message"]
    assert len(fake.requests) == 1  # a 400 is not retried


async def test_overloaded_anthropic_falls_back_to_the_openai_deployment(
    client: httpx.AsyncClient, fake: FakeProvider, spy: ContextSpy
) -> None:
    fake.enqueue(FakeBehaviour(status=529, error_message="Overloaded"))
    response = await client.post("/v1/messages", json={**HELLO, "model": "mixed"})
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "Echo: Hello there"}]
    assert [r.path for r in fake.requests] == ["/v1/messages", "/v1/chat/completions"]
    assert response.headers["x-aigw-attempts"] == "2"
    assert spy.contexts[-1].provider == "openai"


async def test_overloaded_with_no_attempt_left_is_anthropics_529(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(status=529, error_message="Overloaded")
    response = await client.post("/v1/messages", json=HELLO)
    assert response.status_code == 529
    assert anthropic_error(response) == {"type": "overloaded_error", "message": "Overloaded"}


async def test_error_event_mid_stream_ends_the_stream_in_anthropics_shape(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(stream_error_after=1)
    response = await client.post("/v1/messages", json={**HELLO, "stream": True})
    assert response.status_code == 200
    assert b"text_delta" in response.content
    tail = response.content.rsplit(b"\n\n", 2)[-2]
    assert tail.startswith(b"event: error\ndata: ")
    assert orjson.loads(tail.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


# -- translation ---------------------------------------------------------------------------------------


async def test_openai_deployment_answers_in_messages_format(
    client: httpx.AsyncClient, fake: FakeProvider, spy: ContextSpy
) -> None:
    response = await client.post("/v1/messages", json={**HELLO, "model": "gpt"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "message"
    assert body["content"] == [{"type": "text", "text": "Echo: Hello there"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 3
    assert "request-id" not in response.headers
    upstream = fake.last_request
    assert upstream.path == "/v1/chat/completions"
    assert upstream.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in upstream.headers
    ctx = spy.contexts[-1]
    assert (ctx.route, ctx.provider, ctx.upstream_model) == ("messages", "openai", "gpt-4o-mini")
    assert ctx.usage is not None
    assert ctx.usage.completion_tokens == 3


async def test_openai_stream_becomes_anthropic_events_with_usage(
    client: httpx.AsyncClient, spy: ContextSpy
) -> None:
    response = await client.post("/v1/messages", json={**HELLO, "model": "gpt", "stream": True})
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert response.headers["x-aigw-provider"] == "openai"
    assert spy.contexts[-1].usage is not None
    assert spy.contexts[-1].stream is True


async def test_cache_control_is_left_out_for_openai_and_reported(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    system = [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
    response = await client.post("/v1/messages", json={**HELLO, "model": "gpt", "system": system})
    assert response.status_code == 200
    assert response.headers["x-aigw-dropped-params"] == "cache_control"
    assert b"cache_control" not in fake.last_request.body


async def test_thinking_for_an_openai_model_is_refused_before_anything_is_sent(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    response = await client.post("/v1/messages", json={**CLAUDE_CODE, "model": "gpt", "stream": False})
    assert response.status_code == 400
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("thinking cannot be turned on")
    assert fake.requests == []


# -- refusals of the gateway itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({k: v for k, v in HELLO.items() if k != "max_tokens"}, 400, "invalid_request_error"),
        ({**HELLO, "stream": "yes"}, 400, "invalid_request_error"),
        ({**HELLO, "messages": [{"role": "system", "content": "x"}]}, 400, "invalid_request_error"),
        ({**HELLO, "model": "no-such-model"}, 404, "not_found_error"),
    ],
)
async def test_bad_requests_are_refused_in_anthropics_shape(
    client: httpx.AsyncClient, fake: FakeProvider, body: dict[str, Any], status: int, kind: str
) -> None:
    response = await client.post("/v1/messages", json=body)
    assert response.status_code == status
    assert anthropic_error(response)["type"] == kind
    assert fake.requests == []


async def test_wrong_method_is_refused_in_anthropics_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/messages")
    assert response.status_code == 405
    assert anthropic_error(response)["type"] == "invalid_request_error"


async def test_chat_errors_keep_openais_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "nope", "messages": []})
    assert response.status_code == 400
    assert "error" in response.json()
    assert "type" not in response.json()


# -- count_tokens --------------------------------------------------------------------------------------


async def test_count_tokens_passes_through_to_anthropic(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = {"model": "claude", "messages": HELLO["messages"]}
    response = await client.post("/v1/messages/count_tokens", json=body)
    assert response.status_code == 200, response.text
    assert fake.last_request.path == "/v1/messages/count_tokens"
    assert fake.last_request.json == {**body, "model": "claude-up"}
    counted = await client.post("/v1/messages", json=HELLO)
    assert response.json() == {"input_tokens": counted.json()["usage"]["input_tokens"]}
    assert "x-aigw-estimate" not in response.headers


async def test_count_tokens_is_estimated_locally_for_other_providers(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    short = await client.post(
        "/v1/messages/count_tokens", json={"model": "gpt", "messages": HELLO["messages"]}
    )
    long_messages = [{"role": "user", "content": "Hello there, " * 50}]
    long = await client.post("/v1/messages/count_tokens", json={"model": "gpt", "messages": long_messages})
    assert short.status_code == 200, short.text
    assert short.headers["x-aigw-estimate"] == "true"
    assert 0 < short.json()["input_tokens"] < long.json()["input_tokens"]
    assert fake.requests == []  # nothing was sent upstream


async def test_count_tokens_refuses_max_tokens_as_anthropic_does(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages/count_tokens", json={**HELLO, "model": "gpt"})
    assert response.status_code == 400
    assert "max_tokens" in anthropic_error(response)["message"]


# -- streaming, message by message ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_events_leave_as_they_come_and_a_disconnect_closes_the_upstream(model: str) -> None:
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.2))
    router = ProviderRouter(config(), transports={URL: StreamingASGITransport(fake)}, env={})
    body = raw(
        {**HELLO, "model": model, "stream": True, "messages": [{"role": "user", "content": "a b c d e"}]}
    )
    communicator = ApplicationCommunicator(router, post_scope("/v1/messages", body))
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    assert (await communicator.receive_output(5))["type"] == "http.response.start"
    first = (await communicator.receive_output(5))["body"]
    assert first.startswith(b"event: message_start")
    # the answer has started while the upstream is still generating: nothing was held back
    assert fake.completed_streams == 0
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)
    assert fake.disconnects == 1
    assert fake.completed_streams == 0
    await router.aclose()


async def test_first_byte_timeout_is_anthropics_timeout_error(fake: FakeProvider) -> None:
    slow = DeploymentConfig(
        provider="anthropic",
        model="claude-up",
        base_url=URL,
        api_key=KEY,  # type: ignore[arg-type]
        timeouts=Timeouts(first_byte=0.1),
    )
    cfg = RouterConfig(models=[ModelConfig(name="claude", deployments=[slow])], retry=RetryConfig(retries=0))
    router = ProviderRouter(cfg, transports={URL: StreamingASGITransport(fake)}, env={})
    fake.behaviour = FakeBehaviour(first_byte_delay=1.0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://gw") as client:
        response = await client.post("/v1/messages", json=HELLO)
    assert response.status_code == 504
    assert anthropic_error(response)["type"] == "timeout_error"


# -- Gemini and Ollama: the other adapters, reused unchanged ---------------------------------------------

LOOKUP = {"name": "lookup", "description": "Look something up.", "input_schema": SCHEMA}


@pytest.mark.parametrize("provider", ["gemini", "ollama"])
@pytest.mark.parametrize("stream", [False, True])
async def test_other_providers_answer_tool_calls_in_messages_format(
    fake: FakeProvider, provider: str, stream: bool
) -> None:
    base_url = URL + ("/v1beta" if provider == "gemini" else "")
    deployment = DeploymentConfig(provider=provider, model="m-1", base_url=base_url, api_key=KEY)  # type: ignore[arg-type]
    cfg = RouterConfig(models=[ModelConfig(name="m", deployments=[deployment])], retry=RetryConfig(retries=0))
    router = ProviderRouter(cfg, transports={URL: StreamingASGITransport(fake)}, env={})
    question = {"role": "user", "content": "Find cats"}
    body = {"model": "m", "max_tokens": 64, "tools": [LOOKUP], "messages": [question], "stream": stream}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://gw") as client:
        first = await client.post("/v1/messages", json=body)
        assert first.status_code == 200, first.text
        assert first.headers["x-aigw-provider"] == provider
        if stream:
            events = [orjson.loads(line[6:]) for line in first.text.splitlines() if line.startswith("data: ")]
            starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
            call = {**starts[-1], "input": {"query": "Find cats"}}
            fragments = "".join(
                e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"
            )
            assert orjson.loads(fragments) == {"query": "Find cats"}
            assert events[-2]["delta"]["stop_reason"] == "tool_use"
        else:
            answer = first.json()
            assert answer["stop_reason"] == "tool_use"
            call = answer["content"][-1]
        assert call["type"] == "tool_use"
        assert call["name"] == "lookup"
        assert call["input"] == {"query": "Find cats"}
        result = {"type": "tool_result", "tool_use_id": call["id"], "content": "3 cats found"}
        second = await client.post(
            "/v1/messages",
            json={
                **body,
                "stream": False,
                "messages": [
                    question,
                    {"role": "assistant", "content": [call]},
                    {"role": "user", "content": [result]},
                ],
            },
        )
    assert second.status_code == 200, second.text
    assert second.json()["content"] == [{"type": "text", "text": "Tool said: 3 cats found"}]


async def test_forward_headers_reach_both_kinds_of_deployment(fake: FakeProvider) -> None:
    cfg = config()
    cfg = cfg.model_copy(update={"forward_headers": ["x-team"]})
    router = ProviderRouter(cfg, transports={URL: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://gw") as client:
        for model in ("claude", "gpt"):
            response = await client.post(
                "/v1/messages", json={**HELLO, "model": model}, headers={"x-team": "blue"}
            )
            assert response.status_code == 200
            assert fake.last_request.headers["x-team"] == "blue"


async def test_passthrough_stream_usage_is_read_from_its_events(
    client: httpx.AsyncClient, spy: ContextSpy
) -> None:
    response = await client.post("/v1/messages", json={**HELLO, "stream": True})
    assert response.status_code == 200
    ctx = spy.contexts[-1]
    assert ctx.stream is True
    assert ctx.upstream_model == "claude-up"
    start = orjson.loads(response.text.split("data: ", 1)[1].split("\n", 1)[0])
    expected = {**start["message"]["usage"], "output_tokens": 3}
    assert ctx.usage == Usage.from_anthropic(expected)
