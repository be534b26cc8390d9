"""ProviderRouter with the OpenAI adapter, against FakeProvider in process."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.config import GatewayConfig
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig, Timeouts
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport
from asgi_aigw.testing.server import free_port

from .support import FAKE_URL, ContextSpy, served, sse_payloads
from .support import fake_config as _fake_config

CHAT = "/v1/chat/completions"
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}


async def test_json_answer_is_forwarded_byte_for_byte(client: httpx.AsyncClient, fake: FakeProvider) -> None:
    response = await client.post(CHAT, json=HELLO, headers={"authorization": "Bearer client-key"})
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Echo: Hello there"
    assert body["object"] == "chat.completion"
    assert response.headers["x-aigw-provider"] == "openai"
    sent = fake.last_request
    assert sent.path == "/v1/chat/completions"
    # the deployment's key goes upstream, never the client's own credentials
    assert sent.headers["authorization"] == "Bearer sk-test-fake"


async def test_unknown_request_fields_are_forwarded(client: httpx.AsyncClient, fake: FakeProvider) -> None:
    await client.post(CHAT, json={**HELLO, "reasoning_effort": "low", "metadata": {"k": "v"}})
    assert fake.last_request.json["reasoning_effort"] == "low"
    assert fake.last_request.json["metadata"] == {"k": "v"}


async def test_stream_without_include_usage_hides_the_usage_chunk_but_records_usage(
    fake: FakeProvider,
) -> None:
    router = ProviderRouter(_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    spy = ContextSpy(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(spy), base_url="http://t") as client:
        response = await client.post(CHAT, json={**HELLO, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    assert all(p == "[DONE]" or p["choices"] for p in payloads)  # no usage-only chunk
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1])
    assert text == "Echo: Hello there"
    # the gateway asked for usage upstream anyway, and recorded it
    assert fake.last_request.json["stream_options"] == {"include_usage": True}
    usage = spy.contexts[0].usage
    assert usage is not None
    assert usage.completion_tokens == 3  # "Echo:", " Hello", " there"
    assert usage.prompt_tokens > 0
    assert spy.contexts[0].provider == "openai"
    assert spy.contexts[0].upstream_model == "gpt-4o-mini"


async def test_stream_with_include_usage_passes_the_usage_chunk(client: httpx.AsyncClient) -> None:
    response = await client.post(
        CHAT, json={**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    )
    payloads = sse_payloads(response.text)
    usage_chunks = [p for p in payloads if p != "[DONE]" and not p["choices"]]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["usage"]["completion_tokens"] == 3


async def test_json_usage_is_recorded_in_the_context(fake: FakeProvider) -> None:
    router = ProviderRouter(_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    spy = ContextSpy(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(spy), base_url="http://t") as client:
        response = await client.post(CHAT, json=HELLO)
    ctx = spy.contexts[0]
    assert ctx.usage is not None
    assert ctx.usage.total_tokens == response.json()["usage"]["total_tokens"]
    assert (ctx.route, ctx.model, ctx.status, ctx.stream) == ("chat", "gpt-4o-mini", 200, False)


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "gpt-4o-mini", "messages": "hi"}', 400, "'messages'"),
        (
            b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            400,
            "'stream'",
        ),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "'model'"),
        (b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}', 404, "no-such-model"),
        (b'{"model": "gpt-4o-mini", "messages": []}', 400, "'messages'"),
    ],
)
async def test_bad_requests_get_openai_shaped_errors(
    client: httpx.AsyncClient, fake: FakeProvider, content: bytes, status: int, fragment: str
) -> None:
    response = await client.post(CHAT, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"]
    assert set(error) == {"message", "type", "code", "param"}
    assert fake.requests == []  # nothing bad reaches the provider


async def test_oversized_body_is_413(fake: FakeProvider) -> None:
    config = _config()
    config.router = RouterConfig(max_body_bytes=2048)
    router = ProviderRouter(config.router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        big = {**HELLO, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await client.post(CHAT, json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert "POST /v1/chat/completions" in response.json()["error"]["message"]
    response = await client.get(CHAT)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        (FakeBehaviour(status=500), 502, "bad_gateway"),
        (FakeBehaviour(status=503), 503, "upstream_unavailable"),
        (FakeBehaviour(status=400, error_message="bad param"), 400, "upstream_client_error"),
        (FakeBehaviour(malformed=True), 502, "bad_gateway"),
    ],
)
async def test_upstream_failures_are_mapped(
    client: httpx.AsyncClient, fake: FakeProvider, behaviour: FakeBehaviour, status: int, code: str
) -> None:
    fake.behaviour = behaviour
    response = await client.post(CHAT, json=HELLO)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_upstream_429_keeps_retry_after(client: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.behaviour = FakeBehaviour(status=429, retry_after="7", error_message="slow down")
    response = await client.post(CHAT, json=HELLO)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert "slow down" in response.json()["error"]["message"]


async def test_upstream_timeout_is_504(fake: FakeProvider) -> None:
    fake.behaviour = FakeBehaviour(first_byte_delay=2.0)
    config = _config(timeouts=Timeouts(read=0.2))
    async with served(fake) as base_url:
        config = _config(base_url=base_url + "/v1", timeouts=Timeouts(read=0.2))
        router = ProviderRouter(config.router, env={})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
            response = await client.post(CHAT, json=HELLO)
        await router.aclose()
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_connection_refused_is_503(transport: str) -> None:
    config = _config(base_url=f"http://127.0.0.1:{free_port()}/v1")
    config.router.transport = transport  # type: ignore[assignment]
    router = ProviderRouter(config.router, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        response = await client.post(CHAT, json=HELLO)
    await router.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert "Could not connect" in response.json()["error"]["message"]


async def test_stream_cut_short_ends_with_an_error_event(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(cut_after=1)
    response = await client.post(CHAT, json={**HELLO, "stream": True})
    assert response.status_code == 200  # the status line went out with the first event
    assert "[DONE]" not in response.text
    last_event = response.text.strip().split("\n\n")[-1]
    assert last_event.startswith("event: error")
    assert "ended the stream before the answer was complete" in last_event


async def test_error_before_the_first_stream_event_is_a_plain_status(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(status=500)
    response = await client.post(CHAT, json={**HELLO, "stream": True})
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"


async def test_fallback_to_the_next_deployment_on_a_retryable_failure() -> None:
    primary, secondary = FakeProvider(FakeBehaviour(status=500)), FakeProvider()
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="gpt-4o-mini",
                    deployments=[
                        DeploymentConfig(model="primary-model", base_url="http://primary/v1", api_key="k1"),  # type: ignore[arg-type]
                        DeploymentConfig(
                            model="secondary-model", base_url="http://secondary/v1", api_key="k2"
                        ),  # type: ignore[arg-type]
                    ],
                )
            ]
        )
    )
    transports = {
        "http://primary/v1": StreamingASGITransport(primary),
        "http://secondary/v1": StreamingASGITransport(secondary),
    }
    router = ProviderRouter(config.router, transports=transports, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        response = await client.post(CHAT, json=HELLO)
    assert response.status_code == 200
    assert response.headers["x-aigw-model"] == "secondary-model"
    assert len(primary.requests) == 1
    assert secondary.last_request.json["model"] == "secondary-model"


async def test_no_fallback_on_a_client_error() -> None:
    primary, secondary = FakeProvider(FakeBehaviour(status=400)), FakeProvider()
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="m",
                    deployments=[
                        DeploymentConfig(model="a", base_url="http://primary/v1", api_key="k1"),  # type: ignore[arg-type]
                        DeploymentConfig(model="b", base_url="http://secondary/v1", api_key="k2"),  # type: ignore[arg-type]
                    ],
                )
            ]
        )
    )
    transports = {
        "http://primary/v1": StreamingASGITransport(primary),
        "http://secondary/v1": StreamingASGITransport(secondary),
    }
    router = ProviderRouter(config.router, transports=transports, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        response = await client.post(CHAT, json={**HELLO, "model": "m"})
    assert response.status_code == 400
    assert secondary.requests == []


async def test_the_api_key_never_appears_in_an_error(fake: FakeProvider) -> None:
    key = "fake-openai-key-for-tests"
    fake.behaviour = FakeBehaviour(status=401, error_message=f"Incorrect API key provided: {key}.")
    config = _config(api_key=key)
    router = ProviderRouter(config.router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        response = await client.post(CHAT, json=HELLO)
    assert response.status_code == 401
    assert key not in response.text
    assert "[redacted]" in response.text


async def test_models_lists_aliases_and_env_providers(fake: FakeProvider) -> None:
    env = {"OPENAI_API_KEY": "sk-test-env", "OPENAI_BASE_URL": FAKE_URL}
    router = ProviderRouter(_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env=env)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        response = await client.get("/v1/models")
    ids = [m["id"] for m in response.json()["data"]]
    # Ollama needs no key: its local default (OLLAMA_HOST) is always offered
    assert ids == ["gpt-4o-mini", "text-embedding-3-small", "openai/*", "ollama/*"]
    assert response.json()["object"] == "list"


async def test_provider_prefix_routes_with_env_credentials(fake: FakeProvider) -> None:
    env = {"OPENAI_API_KEY": "sk-test-env", "OPENAI_BASE_URL": FAKE_URL}
    router = ProviderRouter(RouterConfig(), transports={FAKE_URL: StreamingASGITransport(fake)}, env=env)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        ok = await client.post(CHAT, json={**HELLO, "model": "openai/gpt-4.1-nano"})
        unconfigured = await client.post(CHAT, json={**HELLO, "model": "anthropic/claude-x"})
        unknown = await client.post(CHAT, json={**HELLO, "model": "acme/model"})
    assert ok.status_code == 200
    assert fake.last_request.json["model"] == "gpt-4.1-nano"
    assert fake.last_request.headers["authorization"] == "Bearer sk-test-env"
    assert unconfigured.status_code == 404
    assert unknown.status_code == 404
    assert "does not support" in unknown.json()["error"]["message"]


async def test_embeddings_pass_through_with_usage(client: httpx.AsyncClient, fake: FakeProvider) -> None:
    response = await client.post(
        "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": ["a b", "c"], "encoding_format": "base64"},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    vector = struct.unpack("<64f", base64.b64decode(data[0]["embedding"]))
    assert abs(sum(v * v for v in vector) - 1.0) < 1e-4
    assert response.json()["usage"]["prompt_tokens"] == 3
    assert fake.last_request.json["model"] == "text-embedding-3-small"


async def test_embeddings_bad_input_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": {"a": 1}}
    )
    assert response.status_code == 400
    assert "'input'" in response.json()["error"]["message"]


async def test_paths_work_with_and_without_v1_and_under_a_mount(fake: FakeProvider) -> None:
    router = ProviderRouter(_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})

    async def mounted(scope: Any, receive: Any, send: Any) -> None:
        await router({**scope, "root_path": "/ai"}, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(mounted), base_url="http://t") as client:
        assert (await client.post("/ai/v1/chat/completions", json=HELLO)).status_code == 200
        assert (await client.post("/ai/chat/completions", json=HELLO)).status_code == 200


def _config(**kwargs: Any) -> GatewayConfig:
    return _fake_config(**kwargs)


async def test_upstream_cookies_are_never_carried_to_the_next_request() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        body = orjson.dumps(
            {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [], "usage": None}
        )
        return httpx.Response(200, content=body, headers={"set-cookie": "session=tenant-a-secret; Path=/"})

    router = ProviderRouter(
        _config(base_url="http://up/v1").router,
        transports={"http://up/v1": httpx.MockTransport(handler)},
        env={},
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        first = await client.post(CHAT, json=HELLO)
        second = await client.post(CHAT, json=HELLO)
    assert (first.status_code, second.status_code) == (200, 200)
    assert seen == [None, None]


def test_request_ids_are_unique_across_a_fork() -> None:
    import os

    from asgi_aigw.kernel.context import new_request_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    parent_id = new_request_id()
    assert child_id[:12] != parent_id[:12]
