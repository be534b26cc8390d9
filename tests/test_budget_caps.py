"""The reservation is a cap: BudgetMiddleware asks the upstream for at most the output tokens it reserved,
in each provider's own field, for JSON and streams; an upstream that answers past the cap anyway is
charged in full and the tenant's next requests wait for the window. Real Redis, FakeProvider behind the
router (each wire format's fake honours its cap field as the real API does, unless told not to)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, RedisBudgetStore
from asgi_aigw.kernel.caps import client_cap, is_reasoning_model, output_cap_fields
from asgi_aigw.router import DeploymentConfig, ModelConfig, ProviderRouter, RouterConfig
from asgi_aigw.tenant import TenantConfig, TenantMiddleware
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from . import budget_helpers
from .budget_helpers import JSONApp, completion, fixed_clock, token_counter, usage_of
from .support import sse_payloads

OPENAI_URL = "http://fake-openai.test/v1"
ANTHROPIC_URL = "http://fake-anthropic.test"
GEMINI_URL = "http://fake-gemini.test"
OLLAMA_URL = "http://fake-ollama.test"
LONG_ANSWER = " ".join(f"word{i}" for i in range(60))

#: alias: (provider, upstream model, base URL, key, where the fake finds the cap in the request)
PROVIDERS: dict[str, tuple[str, str, str, str | None, Callable[[dict[str, Any]], Any]]] = {
    "gpt-4o-mini": ("openai", "gpt-4o-mini", OPENAI_URL, "test-openai-key", lambda b: b.get("max_tokens")),
    "o3-mini": ("openai", "o3-mini", OPENAI_URL, "test-openai-key", lambda b: b.get("max_completion_tokens")),
    "claude": (
        "anthropic",
        "claude-test-1",
        ANTHROPIC_URL,
        "test-anthropic-key",
        lambda b: b.get("max_tokens"),
    ),
    "gemini": (
        "gemini",
        "gemini-test-flash",
        GEMINI_URL,
        "test-gemini-key",
        lambda b: (b.get("generationConfig") or {}).get("maxOutputTokens"),
    ),
    "llama": (
        "ollama",
        "llama-test:8b",
        OLLAMA_URL,
        None,
        lambda b: (b.get("options") or {}).get("num_predict"),
    ),
}


_frozen_now = budget_helpers.frozen_now
store = budget_helpers.store


def router(fake: FakeProvider) -> ProviderRouter:
    models = [
        ModelConfig(
            name=alias,
            deployments=[DeploymentConfig(provider=provider, model=model, base_url=url, api_key=key)],  # type: ignore[arg-type]
        )
        for alias, (provider, model, url, key, _) in PROVIDERS.items()
    ]
    transport = StreamingASGITransport(fake)
    transports = dict.fromkeys((OPENAI_URL, ANTHROPIC_URL, GEMINI_URL, OLLAMA_URL), transport)
    return ProviderRouter(RouterConfig(models=models), transports=transports, env={})


def stack(fake: FakeProvider, store: RedisBudgetStore, config: BudgetConfig) -> Any:
    budget = BudgetMiddleware(
        router(fake), config=config, store=store, token_counter=token_counter(), clock=fixed_clock
    )
    return TenantMiddleware(budget, config=TenantConfig(required=False, default_tenant="acme"))


async def post(app: Any, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post("/v1/chat/completions", json=body)


def answer_of(response: httpx.Response, stream: bool) -> tuple[str, str | None, dict[str, Any]]:
    """The answer's text, finish reason and usage, from a JSON answer or an SSE stream."""
    if not stream:
        data = response.json()
        choice = data["choices"][0]
        return choice["message"]["content"], choice["finish_reason"], data["usage"]
    text, finish, usage = "", None, {}
    for event in sse_payloads(response.text):
        if event == "[DONE]":
            continue
        for choice in event.get("choices") or ():
            text += choice.get("delta", {}).get("content") or ""
            finish = choice.get("finish_reason") or finish
        usage = event.get("usage") or usage
    return text, finish, usage


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("alias", list(PROVIDERS))
async def test_without_max_tokens_the_upstream_is_asked_for_the_reserved_output_only(
    fake: FakeProvider, store: RedisBudgetStore, alias: str, stream: bool
) -> None:
    fake.behaviour = FakeBehaviour(answer=LONG_ANSWER)
    config = BudgetConfig(limits=Limits(tokens_per_minute=100_000), default_max_tokens=7)
    body: dict[str, Any] = {"model": alias, "messages": [{"role": "user", "content": "Tell me everything"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    response = await post(stack(fake, store, config), body)
    assert response.status_code == 200, response.text
    sent = fake.last_request.json
    assert PROVIDERS[alias][4](sent) == 7  # the cap, in the provider's own field
    if alias == "o3-mini":
        assert "max_tokens" not in sent  # OpenAI's reasoning models refuse it
    text, finish, usage = answer_of(response, stream)
    assert text == " ".join(LONG_ANSWER.split()[:7])
    assert finish == "length"
    assert usage["completion_tokens"] == 7
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == usage["total_tokens"]


async def test_the_clients_own_cap_is_sent_as_it_is(fake: FakeProvider, store: RedisBudgetStore) -> None:
    fake.behaviour = FakeBehaviour(answer=LONG_ANSWER)
    app = stack(fake, store, BudgetConfig(default_max_tokens=7))
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 3,
    }
    response = await post(app, body)
    assert response.status_code == 200
    assert fake.last_request.json.get("max_completion_tokens") == 3
    assert "max_tokens" not in fake.last_request.json  # nothing added beside the client's own field
    assert response.json()["usage"]["completion_tokens"] == 3


async def test_max_tokens_reaches_a_reasoning_model_as_max_completion_tokens(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    # the real API refuses max_tokens for o1/o3/o4/gpt-5 models; the adapter moves it where it is taken
    app = stack(fake, store, BudgetConfig())
    body = {"model": "o3-mini", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 2}
    response = await post(app, body)
    assert response.status_code == 200, response.text
    assert fake.last_request.json["max_completion_tokens"] == 2
    assert "max_tokens" not in fake.last_request.json


@pytest.mark.parametrize("value", [0, -5, "ten", True, 2.5])
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_a_cap_that_is_not_a_positive_integer_is_a_400(
    fake: FakeProvider, store: RedisBudgetStore, field: str, value: Any
) -> None:
    app = stack(fake, store, BudgetConfig())
    response = await post(
        app, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], field: value}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field
    assert "positive integer" in error["message"]
    assert fake.requests == []


async def test_an_upstream_past_its_cap_is_charged_in_full_and_the_tenant_waits(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    fake.behaviour = FakeBehaviour(answer=LONG_ANSWER, ignore_output_cap=True)
    config = BudgetConfig(limits=Limits(tokens_per_minute=120), default_max_tokens=10)
    app = stack(fake, store, config)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    first = await post(app, body)
    assert first.status_code == 200
    assert fake.last_request.json["max_tokens"] == 10  # asked for 10 ...
    charged = first.json()["usage"]["total_tokens"]
    assert first.json()["usage"]["completion_tokens"] == 60  # ... answered 60
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == charged  # charged in full
    second = await post(app, body)  # room for its reservation, then charged past the limit
    assert second.status_code == 200
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == 2 * charged > 120
    refused = await post(app, body)
    assert refused.status_code == 429
    assert "Try again in" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1  # it will fit once the window allows
    assert len(fake.requests) == 2


def test_the_fake_answers_in_full_without_a_cap_and_cuts_at_one() -> None:
    fake = FakeProvider(FakeBehaviour(answer=LONG_ANSWER))
    assert fake.plan_turn([("user", "x")], [], fake.behaviour).completion_tokens == 60
    cut = fake.plan_turn([("user", "x")], [], fake.behaviour, 5)
    assert (cut.completion_tokens, cut.truncated, cut.text) == (5, True, "word0 word1 word2 word3 word4")
    overrun = FakeBehaviour(answer=LONG_ANSWER, ignore_output_cap=True)
    assert fake.plan_turn([("user", "x")], [], overrun, 5).completion_tokens == 60


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("o1", True),
        ("o1-mini", True),
        ("o3-2025-04-16", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5.1", True),
        ("openai/gpt-5-mini", True),
        ("gpt-4o", False),
        ("gpt-4o-mini", False),
        ("omni-moderation-latest", False),
        ("gpt-50", False),
    ],
)
def test_reasoning_model_families(model: str, reasoning: bool) -> None:
    assert is_reasoning_model(model) is reasoning


def test_output_cap_fields() -> None:
    assert output_cap_fields({"max_tokens": 5}, "o3") == {"max_completion_tokens": 5}
    assert output_cap_fields({"max_tokens": 5, "max_completion_tokens": 9}, "o3") == {
        "max_completion_tokens": 5
    }
    assert output_cap_fields({"max_tokens": 9, "max_completion_tokens": 5}, "o3") == {
        "max_completion_tokens": 5
    }
    assert output_cap_fields({"max_tokens": 5}, "gpt-4o") == {"max_tokens": 5}
    # both set: a server may read either, so neither allows more than the smaller
    assert output_cap_fields({"max_tokens": 50_000, "max_completion_tokens": 30}, "gpt-4o") == {
        "max_tokens": 30,
        "max_completion_tokens": 30,
    }
    assert output_cap_fields({"max_tokens": None}, "o3") == {}


def test_client_cap_prefers_max_completion_tokens() -> None:
    assert client_cap({"max_tokens": 9, "max_completion_tokens": 4}) == 4
    assert client_cap({"max_tokens": 9}) == 9
    assert client_cap({"max_tokens": None}) is None
    with pytest.raises(ValueError, match="max_tokens"):
        client_cap({"max_tokens": 0})


@pytest.mark.parametrize("n", [0, 129, 1000, "2", True, 1.5])
async def test_a_choice_count_the_reservation_cannot_cover_is_a_400(store: RedisBudgetStore, n: Any) -> None:
    # in front of any app, not only the router (which refuses these too)
    inner = JSONApp(completion("x", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
    app = BudgetMiddleware(
        inner, config=BudgetConfig(), store=store, token_counter=token_counter(), clock=fixed_clock
    )
    response = await post(
        app, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": n}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"
    assert inner.calls == 0


async def test_n_choices_reserve_n_caps(fake: FakeProvider, store: RedisBudgetStore) -> None:
    config = BudgetConfig(limits=Limits(tokens_per_minute=1000), default_max_tokens=100)
    app = stack(fake, store, config)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "n": 11}
    response = await post(app, body)  # 11 x 100 output tokens cannot fit in 1,000
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert (await post(app, {**body, "n": 9})).status_code == 200
