"""``GET /v1/models/{id}`` never shows a model the gateway does not list, and answers in the OpenAI
chat format carry one ``chatcmpl-`` id, in every chunk of a stream, whichever provider answered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import orjson
import pytest

from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

HELLO = [{"role": "user", "content": "Hello there"}]

#: alias: (provider, model, base URL, key)
DEPLOYMENTS = {
    "gpt": ("openai", "gpt-test-mini", "http://fake-openai.test/v1", "sk-test-not-a-real-key"),
    "claude": ("anthropic", "claude-test-1", "http://fake-anthropic.test", "test-anthropic-key-0000"),
    "gemini": ("gemini", "gemini-test-flash", "http://fake-gemini.test", "test-gemini-key-0000"),
    "llama": ("ollama", "llama-test:8b", "http://fake-ollama.test", None),
    "azure": ("azure", "prod-gpt4o", "http://fake-azure.test", "azure-test-key-not-real-0000"),
    "groq": ("groq", "llama-test-70b", "http://fake-groq.test/groq/v1", "test-groq-key-not-real"),
}
#: Variables that would let prefix routing reach models nobody listed, were it on.
ENV = {"OPENAI_API_KEY": "sk-test-not-a-real-key", "ANTHROPIC_API_KEY": "test-anthropic-key-0000"}


def config() -> RouterConfig:
    return RouterConfig(
        models=[
            ModelConfig(
                name=alias,
                deployments=[DeploymentConfig(provider=provider, model=model, base_url=url, api_key=key)],  # type: ignore[arg-type]
            )
            for alias, (provider, model, url, key) in DEPLOYMENTS.items()
        ]
    )


@pytest.fixture
async def gateway(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = StreamingASGITransport(fake)
    router = ProviderRouter(config(), transports={d[2]: transport for d in DEPLOYMENTS.values()}, env=ENV)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        yield c
    await router.aclose()


# -- GET /v1/models/{id} -------------------------------------------------------------------------------


async def test_retrieve_listed_models_with_the_openai_sdk(gateway: httpx.AsyncClient) -> None:
    client = openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key="sk-test-not-a-real-key", http_client=gateway
    )
    listed = [m.id async for m in client.models.list()]
    assert listed == list(DEPLOYMENTS)
    for alias, (provider, *_) in DEPLOYMENTS.items():
        model = await client.models.retrieve(alias)
        assert (model.id, model.object, model.owned_by) == (alias, "model", provider)
        assert isinstance(model.created, int)


@pytest.mark.parametrize(
    "name", ["openai/gpt-4o", "anthropic/claude-test-1", "gpt-test-mini", "anthropic/*", "prod-gpt4o"]
)
async def test_models_not_listed_are_404_even_when_a_key_could_reach_them(
    gateway: httpx.AsyncClient, name: str
) -> None:
    client = openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key="sk-test-not-a-real-key", http_client=gateway
    )
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve(name)
    assert missing.value.code == "model_not_found"
    error = missing.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"


# -- chatcmpl- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", sorted(DEPLOYMENTS))
async def test_answers_carry_a_chatcmpl_id(gateway: httpx.AsyncClient, alias: str) -> None:
    answer = await gateway.post("/v1/chat/completions", json={"model": alias, "messages": HELLO})
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"].startswith("chatcmpl-")
    assert answer.json()["object"] == "chat.completion"


@pytest.mark.parametrize("alias", sorted(DEPLOYMENTS))
async def test_every_chunk_of_a_stream_carries_the_same_chatcmpl_id(
    gateway: httpx.AsyncClient, alias: str
) -> None:
    body = {"model": alias, "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    answer = await gateway.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    datas = [line[6:] for line in answer.text.split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    chunks = [orjson.loads(d) for d in datas[:-1]]
    assert len(chunks) >= 3
    ids = {chunk["id"] for chunk in chunks}
    assert len(ids) == 1, ids
    assert ids.pop().startswith("chatcmpl-")
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
