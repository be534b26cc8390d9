"""Native provider failures, through the router and FakeProvider, become OpenAI-shaped errors with the
right status; API keys never show up in answers, logs or URLs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from asgi_aigw.config import GatewayConfig
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import CooldownConfig, DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

URL = "http://native.test"
KEYS = {"anthropic": "fake-anthropic-key-for-tests", "gemini": "fake-gemini-key-for-tests", "ollama": None}
MODELS = {"anthropic": "claude-x", "gemini": "gemini-x", "ollama": "llama-x"}
HELLO = {"messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
async def client(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name=provider,
                    deployments=[
                        DeploymentConfig(provider=provider, model=MODELS[provider], base_url=URL, api_key=key)
                    ],  # type: ignore[arg-type]
                )
                for provider, key in KEYS.items()
            ],
            # one attempt, no cooldown: each test sees exactly the provider's own failure
            retry=RetryConfig(retries=0),
            cooldown=CooldownConfig(failures=0),
        ),
    )
    router = ProviderRouter(config.router, transports={URL: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as http:
        yield http
    await router.aclose()


@pytest.mark.parametrize(
    ("provider", "status", "expected", "code", "fragment"),
    [
        ("anthropic", 529, 503, "upstream_unavailable", "overloaded_error"),
        ("anthropic", 429, 429, "rate_limit_exceeded", "rate_limit_error"),
        ("gemini", 429, 429, "rate_limit_exceeded", "RESOURCE_EXHAUSTED"),
        ("gemini", 503, 503, "upstream_unavailable", "UNAVAILABLE"),
        ("gemini", 400, 400, "upstream_client_error", "INVALID_ARGUMENT"),
        ("ollama", 404, 404, "upstream_client_error", "told to fail"),
        ("ollama", 500, 502, "bad_gateway", "told to fail"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_native_errors_map_to_openai_errors(
    client: httpx.AsyncClient,
    fake: FakeProvider,
    provider: str,
    status: int,
    expected: int,
    code: str,
    fragment: str,
    stream: bool,
) -> None:
    fake.behaviour = FakeBehaviour(status=status, retry_after="5")
    response = await client.post("/v1/chat/completions", json={**HELLO, "model": provider, "stream": stream})
    assert response.status_code == expected
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["code"] == code
    assert fragment in error["message"]
    if expected == 429:
        assert error["type"] == "rate_limit_error"
        assert response.headers["retry-after"] == "5"


async def test_gemini_safety_block_is_a_clear_400(client: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.behaviour = FakeBehaviour(blocked=True)
    for stream in (False, True):
        response = await client.post(
            "/v1/chat/completions", json={**HELLO, "model": "gemini", "stream": stream}
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "content_filter"
        assert "Gemini blocked the prompt (blockReason: SAFETY)" in error["message"]


async def test_anthropic_refusal_is_a_content_filter_finish(
    client: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(blocked=True)
    response = await client.post("/v1/chat/completions", json={**HELLO, "model": "anthropic"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "ollama"])
async def test_in_stream_error_after_content_ends_with_an_sse_error_event(
    client: httpx.AsyncClient, fake: FakeProvider, provider: str
) -> None:
    fake.behaviour = FakeBehaviour(stream_error_after=1)
    response = await client.post("/v1/chat/completions", json={**HELLO, "model": provider, "stream": True})
    assert response.status_code == 200
    assert '"content":"Echo:"' in response.text
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error")
    assert "[DONE]" not in response.text


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "ollama"])
async def test_malformed_native_answers_are_502(
    client: httpx.AsyncClient, fake: FakeProvider, provider: str
) -> None:
    fake.behaviour = FakeBehaviour(malformed=True)
    response = await client.post("/v1/chat/completions", json={**HELLO, "model": provider})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_gateway"


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
async def test_keys_never_leak(
    client: httpx.AsyncClient, fake: FakeProvider, caplog: pytest.LogCaptureFixture, provider: str
) -> None:
    key = KEYS[provider]
    assert key is not None
    fake.behaviour = FakeBehaviour(status=401, error_message=f"invalid x-api-key {key}")
    with caplog.at_level(logging.DEBUG):
        response = await client.post("/v1/chat/completions", json={**HELLO, "model": provider})
    assert response.status_code == 401
    assert key not in response.text
    assert key not in caplog.text
    sent = fake.last_request
    assert key not in sent.path
    assert key not in sent.query
    header = "x-api-key" if provider == "anthropic" else "x-goog-api-key"
    assert sent.headers[header] == key
    assert "authorization" not in sent.headers


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "ollama"])
async def test_stream_headers_name_the_model_the_provider_reported(
    client: httpx.AsyncClient, fake: FakeProvider, provider: str
) -> None:
    response = await client.post("/v1/chat/completions", json={**HELLO, "model": provider, "stream": True})
    assert response.headers["x-aigw-provider"] == provider
    assert response.headers["x-aigw-model"] == MODELS[provider]
    assert response.headers["x-aigw-attempts"] == "1"
