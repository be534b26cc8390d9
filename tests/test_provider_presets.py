"""OpenAI-compatible presets (vLLM, Groq, DeepSeek, Mistral, OpenRouter, Together) through the gateway
to FakeProvider: the base URL each names, the key read from its own variable, and Mistral's departures
from the OpenAI format, which the fake refuses as Mistral does."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.providers import ADAPTERS, PRESETS, Deployment
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

HELLO = [{"role": "user", "content": "Hello there"}]

#: The base URLs the providers document for their OpenAI-compatible APIs.
DOCUMENTED = {
    "vllm": ("http://localhost:8000/v1", "VLLM_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "deepseek": ("https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
}


def fake_url(name: str) -> str:
    # Mistral's departures are served under /mistral/ by the fake
    return f"http://fake-{name}.test/{name}/v1"


def key_of(name: str) -> str:
    return f"test-{name}-key-not-real"


def test_every_preset_is_documented_and_served() -> None:
    assert {name: (p.base_url, p.key_env) for name, p in PRESETS.items()} == DOCUMENTED
    for name, (base_url, _) in DOCUMENTED.items():
        deployment = Deployment(id=name, provider=name, model="m", base_url=base_url, api_key="k")
        upstream = ADAPTERS[name].chat_request(deployment, None, {"messages": HELLO}, stream=False)  # type: ignore[arg-type]
        assert upstream.url == f"{base_url}/chat/completions"
        assert upstream.headers["authorization"] == "Bearer k"


def router_for(
    fake: FakeProvider, name: str, env: dict[str, str], url: str | None = None, **fields: Any
) -> ProviderRouter:
    url = url or fake_url(name)
    deployment = DeploymentConfig(provider=name, model="test-model", base_url=url, **fields)
    config = RouterConfig(models=[ModelConfig(name="m", deployments=[deployment])])
    return ProviderRouter(config, transports={url: StreamingASGITransport(fake)}, env=env)


async def post(router: ProviderRouter, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        answer = await c.post("/v1/chat/completions", json=body)
    await router.aclose()
    return answer


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
async def test_the_key_comes_from_the_presets_own_variable(fake: FakeProvider, name: str) -> None:
    env = {PRESETS[name].key_env: key_of(name), "OPENAI_API_KEY": "sk-test-not-a-real-key"}
    answer = await post(router_for(fake, name, env), {"model": "m", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-provider"] == name
    sent = fake.last_request
    assert sent.path == f"/{name}/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {key_of(name)}"
    assert sent.json["model"] == "test-model"


async def test_prefix_routing_reaches_the_default_base_url(fake: FakeProvider) -> None:
    env = {"TOGETHER_API_KEY": key_of("together")}
    transports = {"https://api.together.xyz": StreamingASGITransport(fake)}
    router = ProviderRouter(RouterConfig(), transports=transports, env=env)
    model = "together/meta-llama/Llama-3.3-70B-Instruct-Turbo"
    answer = await post(router, {"model": model, "messages": HELLO})
    assert answer.status_code == 200, answer.text
    sent = fake.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert sent.headers["authorization"] == f"Bearer {key_of('together')}"


async def test_a_preset_without_its_key_is_not_offered(fake: FakeProvider) -> None:
    router = ProviderRouter(RouterConfig(), transports={}, env={})
    answer = await post(router, {"model": "groq/llama-3.3-70b-versatile", "messages": HELLO})
    assert answer.status_code == 404
    assert "Set GROQ_API_KEY" in answer.json()["error"]["message"]


async def test_vllm_needs_no_key(fake: FakeProvider) -> None:
    answer = await post(router_for(fake, "vllm", {}), {"model": "m", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    assert "authorization" not in fake.last_request.headers


async def test_openrouter_attribution_headers_are_the_deployments(fake: FakeProvider) -> None:
    headers = {"HTTP-Referer": "https://app.example", "X-Title": "Example App"}
    env = {"OPENROUTER_API_KEY": key_of("openrouter")}
    answer = await post(
        router_for(fake, "openrouter", env, headers=headers), {"model": "m", "messages": HELLO}
    )
    assert answer.status_code == 200, answer.text
    sent = fake.last_request.headers
    assert (sent["http-referer"], sent["x-title"]) == ("https://app.example", "Example App")


# -- Mistral refuses stream_options and max_completion_tokens ------------------------------------------

STREAMED = {
    "model": "m",
    "messages": HELLO,
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_completion_tokens": 50,
}


async def test_the_fake_refuses_what_mistral_refuses(fake: FakeProvider) -> None:
    # the plain OpenAI adapter sends both fields to Mistral's URL: Mistral's 422 comes back
    env = {"OPENAI_API_KEY": "sk-test-not-a-real-key"}
    answer = await post(router_for(fake, "openai", env, url=fake_url("mistral")), STREAMED)
    assert answer.status_code == 422
    assert "Extra inputs are not permitted" in answer.json()["error"]["message"]


async def test_mistral_gets_what_it_takes_and_usage_still_arrives(fake: FakeProvider) -> None:
    answer = await post(router_for(fake, "mistral", {"MISTRAL_API_KEY": key_of("mistral")}), STREAMED)
    assert answer.status_code == 200, answer.text
    sent = fake.last_request.json
    assert "stream_options" not in sent
    assert "max_completion_tokens" not in sent
    assert sent["max_tokens"] == 50
    datas = [line[6:] for line in answer.text.split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    usages = [orjson.loads(d).get("usage") for d in datas[:-1]]
    assert [u for u in usages if u] == [
        {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    ] or any(u and u["completion_tokens"] == 3 for u in usages)


def test_a_preset_at_its_own_url_without_a_key_is_a_config_error() -> None:
    deployment = DeploymentConfig(provider="groq", model="llama-3.3-70b-versatile")
    config = RouterConfig(models=[ModelConfig(name="m", deployments=[deployment])])
    with pytest.raises(ConfigError, match="GROQ_API_KEY"):
        ProviderRouter(config, transports={}, env={})
    router = ProviderRouter(config, transports={}, env={"GROQ_API_KEY": key_of("groq")})
    assert router.registry.resolve("m").deployments[0].api_key == key_of("groq")


# -- Groq refuses logprobs, top_logprobs, logit_bias, message names and n > 1 -------------------------

NAMED = [{"role": "user", "content": "Hello there", "name": "alice"}]


async def test_the_fake_refuses_what_groq_refuses(fake: FakeProvider) -> None:
    env = {"OPENAI_API_KEY": "sk-test-not-a-real-key"}
    for extra in ({"logprobs": True}, {"logit_bias": {"50256": -100}}, {"messages": NAMED}, {"n": 2}):
        body = {"model": "m", "messages": HELLO, **extra}
        answer = await post(router_for(fake, "openai", env, url=fake_url("groq")), body)
        assert answer.status_code == 400, extra
        assert "unsupported" in answer.text or "at most 1" in answer.text


async def test_groq_gets_only_what_it_takes(fake: FakeProvider) -> None:
    env = {"GROQ_API_KEY": key_of("groq")}
    body = {"model": "m", "messages": NAMED, "logprobs": True, "top_logprobs": 2, "logit_bias": {"1": 5}}
    answer = await post(router_for(fake, "groq", env), body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-dropped-params"] == "logprobs,top_logprobs,logit_bias,name"
    sent = fake.last_request.json
    assert not {"logprobs", "top_logprobs", "logit_bias"} & set(sent)
    assert sent["messages"] == HELLO


async def test_groq_n_above_one_is_refused_before_anything_is_sent(fake: FakeProvider) -> None:
    answer = await post(
        router_for(fake, "groq", {"GROQ_API_KEY": key_of("groq")}), {"model": "m", "messages": HELLO, "n": 2}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "n"
    assert fake.requests == []
