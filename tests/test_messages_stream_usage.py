"""Translated Messages streams (a Messages request served by an OpenAI, Gemini or Ollama deployment) as
Anthropic's own: a ``ping`` where Anthropic sends one, the provider's true input and output tokens in the
message the ``anthropic`` SDK accumulates, and no zero input taken for a figure when a stream is cut."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from asgi_aigw.budget import Limits, RedisBudgetStore
from asgi_aigw.httpx2_bridge import httpx2_client
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from . import budget_helpers
from .budget_helpers import budget_stack, token_counter, usage_of

UPSTREAM = "http://fake-upstream.test"
#: alias: (provider, upstream model); the first three are translated, the last passed through.
MODELS = {
    "gpt": ("openai", "gpt-4o-mini"),
    "gemini": ("gemini", "gemini-2.0-flash"),
    "llama": ("ollama", "llama3.2"),
    "claude": ("anthropic", "claude-sonnet-4-5"),
}
TRANSLATED = ["gpt", "gemini", "llama"]
HEADERS = {"anthropic-version": "2023-06-01"}
PROMPT = [{"role": "user", "content": "Stream a few words about the sea, please"}]

_frozen_now = budget_helpers.frozen_now
store = budget_helpers.store


def router(fake: FakeProvider) -> ProviderRouter:
    def deployment(provider: str, model: str) -> DeploymentConfig:
        base_url = f"{UPSTREAM}/v1" if provider == "openai" else UPSTREAM
        return DeploymentConfig(
            provider=provider, model=model, base_url=base_url, api_key="test-key-not-real"
        )  # type: ignore[arg-type]

    models = [ModelConfig(name=alias, deployments=[deployment(*spec)]) for alias, spec in MODELS.items()]
    transport = StreamingASGITransport(fake)
    return ProviderRouter(
        RouterConfig(models=models), transports={UPSTREAM: transport, f"{UPSTREAM}/v1": transport}, env={}
    )


@pytest.fixture
async def app(fake: FakeProvider) -> AsyncIterator[ProviderRouter]:
    routed = router(fake)
    yield routed
    await routed.aclose()


@pytest.fixture
async def sdk(app: ProviderRouter) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(
        base_url="http://app.test",
        api_key="test-key-not-real",
        # the anthropic SDK is built on httpx2: the in-process transport through the bridge
        http_client=httpx2_client(StreamingASGITransport(app), base_url="http://app.test"),
        max_retries=0,
    )
    yield client
    await client.close()


def wire(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, payload) pairs of a raw Messages stream."""
    names = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    datas = [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    return list(zip(names, datas, strict=True))


@pytest.mark.parametrize("model", [*TRANSLATED, "claude"])
async def test_the_sdks_final_message_has_the_providers_input_and_output_tokens(
    sdk: anthropic.AsyncAnthropic, fake: FakeProvider, model: str
) -> None:
    answered = await sdk.messages.create(model=model, max_tokens=64, messages=PROMPT)  # type: ignore[arg-type]
    async with sdk.messages.stream(model=model, max_tokens=64, messages=PROMPT) as stream:  # type: ignore[arg-type]
        text = await stream.get_final_text()
        final = await stream.get_final_message()
    assert text.startswith("Echo: Stream a few words")
    # the same turn, the same figures as the JSON answer, which carries the provider's usage
    assert final.usage.input_tokens == answered.usage.input_tokens > 0
    assert final.usage.output_tokens == answered.usage.output_tokens > 1


@pytest.mark.parametrize("model", TRANSLATED)
async def test_a_translated_stream_pings_once_after_the_first_block_opens(
    app: ProviderRouter, model: str
) -> None:
    body = {"model": model, "max_tokens": 64, "messages": PROMPT, "stream": True}
    async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://app.test") as http:
        answer = await http.post("/v1/messages", json=body, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    names = [name for name, _ in wire(answer.text)]
    assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert names.count("ping") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    delta = wire(answer.text)[-2][1]
    assert delta["usage"]["input_tokens"] > 0  # the cumulative figures, input included


async def test_a_cut_translated_stream_is_charged_an_input_estimate_not_zero(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    """message_start's zeros are no figure: with the upstream's usage lost, the budget charges its own
    input estimate (marked estimated) and the text that was generated."""
    routed = router(fake)
    fake.behaviour = FakeBehaviour(cut_after=2, answer="one two three four five six seven eight nine ten")
    spy = budget_stack(routed, store, limits=Limits(tokens_per_day=1_000_000))
    body = {"model": "gpt", "max_tokens": 200, "messages": PROMPT, "stream": True}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(spy), base_url="http://app.test") as http:
        answer = await http.post("/v1/messages", json=body, headers=HEADERS)
    await routed.aclose()
    assert "message_stop" not in answer.text
    ctx = spy.contexts[0]
    assert ctx.usage is not None
    assert ctx.usage.estimated
    assert ctx.token_estimate is not None
    assert ctx.usage.prompt_tokens == ctx.token_estimate - 200 > 0
    streamed = "".join(p["delta"]["text"] for name, p in wire(answer.text) if name == "content_block_delta")
    assert ctx.usage.completion_tokens == token_counter().count_text(streamed, "gpt")
    assert (await usage_of(store, "acme"))["tokens_per_day"] == ctx.usage.total_tokens
