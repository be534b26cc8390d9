"""End to end: the official openai SDK asks for ``reasoning_effort`` through the gateway (a real uvicorn)
and reads the thinking of Anthropic, Gemini and Ollama (FakeProvider, speaking each wire format and
refusing what each real API refuses) as ``reasoning_content``; then the whole stack: redaction restores
placeholders in the thinking, the cache replays it, the request log records the reasoning tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.config import GatewayConfig
from asgi_aigw.logs import ClickHouseSink, read_usage
from asgi_aigw.logs.row import COLUMN_NAMES
from asgi_aigw.redact import RedactConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport, serve

from .support import WholeStack, sse_payloads, whole_stack, whole_stack_config

ANTHROPIC_URL = "http://fake-anthropic.test"
GEMINI_URL = "http://fake-gemini.test"
OLLAMA_URL = "http://fake-ollama.test"

PROVIDERS = {
    "claude": ("anthropic", "claude-test-1", ANTHROPIC_URL, "sk-ant-test-not-a-real-key"),
    "gemini": ("gemini", "gemini-2.5-flash", GEMINI_URL, "test-gemini-key-not-real"),
    "qwen": ("ollama", "qwen3-test:8b", OLLAMA_URL, None),
}
LOOKUP: Any = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
QUESTION = "Why is the sky blue?"


def config() -> GatewayConfig:
    models = [
        ModelConfig(
            name=alias,
            deployments=[DeploymentConfig(provider=provider, model=model, base_url=url, api_key=key)],  # type: ignore[arg-type]
        )
        for alias, (provider, model, url, key) in PROVIDERS.items()
    ]
    return GatewayConfig(router=RouterConfig(models=models))


@pytest.fixture
def gateway(fake: FakeProvider) -> Iterator[str]:
    transport = StreamingASGITransport(fake)
    app = build_app(
        config(), transports={ANTHROPIC_URL: transport, GEMINI_URL: transport, OLLAMA_URL: transport}, env={}
    )
    with serve(app) as base_url:
        yield base_url


def sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/ai/v1", api_key="sk-test-not-a-real-key", max_retries=0)


def reasoning_of(message: Any) -> Any:
    """``reasoning_content``, an extra field to the openai SDK (as DeepSeek-style clients read it)."""
    return (message.model_extra or {}).get("reasoning_content")


@pytest.mark.e2e
@pytest.mark.parametrize("alias", list(PROVIDERS))
async def test_sdk_reads_reasoning_content_from_each_provider(
    gateway: str, fake: FakeProvider, alias: str
) -> None:
    client = sdk(gateway)
    messages: Any = [{"role": "user", "content": QUESTION}]
    completion = await client.chat.completions.create(model=alias, messages=messages, reasoning_effort="low")
    message = completion.choices[0].message
    assert message.content == f"Echo: {QUESTION}"
    assert reasoning_of(message) == f"Considering: {QUESTION}"
    sent = fake.last_request.json
    assert sent is not None
    provider = PROVIDERS[alias][0]
    if provider == "anthropic":
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    elif provider == "gemini":
        assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
        # Gemini reports its thinking apart: the fake's thought is 6 words, one token each
        assert completion.usage is not None
        assert completion.usage.completion_tokens_details is not None
        assert completion.usage.completion_tokens_details.reasoning_tokens == 6
    else:
        assert sent["think"] == "low"

    stream = await client.chat.completions.create(
        model=alias, messages=messages, reasoning_effort="low", stream=True
    )
    thinking, text, order = "", "", []
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if piece := reasoning_of(delta):
            thinking += piece
            order.append("thinking")
        if delta.content:
            text += delta.content
            order.append("text")
    assert thinking == f"Considering: {QUESTION}"
    assert text == f"Echo: {QUESTION}"
    # the thinking streams before the answer
    assert order.index("text") > max(i for i, kind in enumerate(order) if kind == "thinking")
    await client.close()


@pytest.mark.e2e
@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_tool_loop_with_thinking_runs_to_the_answer(
    gateway: str, fake: FakeProvider, stream: bool
) -> None:
    """The turn answering a tool result cannot carry Anthropic's signed thinking block through the Chat
    Completions format: it is sent without thinking (named in the header), not refused by Anthropic."""
    client = sdk(gateway)
    messages: Any = [{"role": "user", "content": "weather in Paris"}]
    first = await client.chat.completions.create(
        model="claude", messages=messages, tools=[LOOKUP], reasoning_effort="medium"
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert reasoning_of(first.choices[0].message) == "Considering: weather in Paris"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    if stream:
        raw = await client.chat.completions.with_raw_response.create(
            model="claude", messages=messages, tools=[LOOKUP], reasoning_effort="medium", stream=True
        )
        text = ""
        async for chunk in raw.parse():
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    else:
        raw = await client.chat.completions.with_raw_response.create(  # type: ignore[assignment]
            model="claude", messages=messages, tools=[LOOKUP], reasoning_effort="medium"
        )
        text = raw.parse().choices[0].message.content or ""  # type: ignore[union-attr]
    assert text == "Tool said: sunny, 21C"
    assert "reasoning_effort" in raw.headers["x-aigw-dropped-params"].split(",")
    assert "thinking" not in fake.last_request.json
    await client.close()


@pytest.mark.e2e
async def test_responses_clients_get_gemini_reasoning_tokens(gateway: str, fake: FakeProvider) -> None:
    client = sdk(gateway)
    response = await client.responses.create(
        model="gemini", input=QUESTION, reasoning={"effort": "low"}, store=False
    )
    assert response.output_text == f"Echo: {QUESTION}"
    assert fake.last_request.json["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 1024
    assert response.usage is not None
    # the fake's thought is 6 words, one token each, counted in the output as OpenAI counts reasoning
    assert response.usage.output_tokens_details.reasoning_tokens == 6
    assert response.usage.output_tokens == 6 + 6
    await client.close()


# -- the whole stack ----------------------------------------------------------------------------------


class Stack(WholeStack):
    def __init__(self, app: Any, fake: FakeProvider) -> None:
        super().__init__(app, fake)
        self.http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://gateway")
        self.client = openai.AsyncOpenAI(
            base_url="http://gateway/ai/v1",
            api_key="sk-test-not-a-real-key",
            http_client=self.http,
            max_retries=0,
            default_headers={"x-tenant-id": "acme"},
        )


async def stack_of(provider: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    _, model, url, key = next(v for v in PROVIDERS.values() if v[0] == provider)
    deployment = DeploymentConfig(provider=provider, model=model, base_url=url, api_key=key)  # type: ignore[arg-type]
    settings = whole_stack_config("thinker", deployment, redis_url, redis_prefix, tmp_path, 1_000_000)
    settings.redact = RedactConfig(regex_only=True)
    assert settings.cache is not None
    settings.cache.vector_store = None  # exact hits are enough here
    async for built in whole_stack(Stack, settings, url, redis_url, redis_prefix):
        yield built


@pytest.fixture
async def stack(redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async for built in stack_of("gemini", redis_url, redis_prefix, tmp_path):
        yield built


@pytest.fixture
async def claude_stack(redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async for built in stack_of("anthropic", redis_url, redis_prefix, tmp_path):
        yield built


async def test_the_budget_cap_bounds_thinking_and_answer(claude_stack: Stack) -> None:
    """The budget layer reserves its default cap (4096) for a request without one and sends it: the
    thinking fits inside that cap, which is not raised past what was reserved."""
    answer = await claude_stack.client.chat.completions.create(
        model="thinker", messages=[{"role": "user", "content": QUESTION}], reasoning_effort="high"
    )
    assert reasoning_of(answer.choices[0].message) == f"Considering: {QUESTION}"
    sent = claude_stack.fake.last_request.json
    assert sent["max_tokens"] == 4096
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    (row,) = await claude_stack.rows()
    assert row["token_estimate"] >= row["prompt_tokens"] + sent["max_tokens"]


async def test_whole_stack_restores_caches_and_logs_the_thinking(stack: Stack) -> None:
    email = "maria.gonzalez@example.com"
    messages: Any = [{"role": "user", "content": f"Write to {email} please"}]
    first = await stack.client.chat.completions.with_raw_response.create(
        model="thinker", messages=messages, reasoning_effort="medium"
    )
    assert first.headers["x-aigw-cache"] == "miss"
    message = first.parse().choices[0].message
    # the provider thought about the placeholder; the client reads its own address back
    assert reasoning_of(message) == f"Considering: Write to {email} please"
    assert email not in stack.fake.last_request.body.decode()
    assert "<EMAIL_ADDRESS_1>" in stack.fake.last_request.body.decode()

    again = await stack.client.chat.completions.with_raw_response.create(
        model="thinker", messages=messages, reasoning_effort="medium"
    )
    assert again.headers["x-aigw-cache"] == "hit-exact"
    assert reasoning_of(again.parse().choices[0].message) == f"Considering: Write to {email} please"

    streamed = await stack.http.post(
        "/ai/v1/chat/completions",
        json={"model": "thinker", "messages": messages, "reasoning_effort": "medium", "stream": True},
        headers={"x-tenant-id": "acme"},
    )
    assert streamed.headers["x-aigw-cache"] == "hit-exact"
    deltas = [p["choices"][0]["delta"] for p in sse_payloads(streamed.text)[:-1] if p["choices"]]
    assert (
        "".join(d.get("reasoning_content") or "" for d in deltas) == f"Considering: Write to {email} please"
    )
    assert len(stack.fake.requests) == 1
    # the budget layer's cap reached Gemini, where it bounds thoughts and answer together
    assert stack.fake.requests[0].json["generationConfig"]["maxOutputTokens"] == 4096

    # a live stream: the placeholder is restored in the reasoning deltas as they pass
    live = await stack.http.post(
        "/ai/v1/chat/completions",
        json={
            "model": "thinker",
            "messages": [{"role": "user", "content": f"Mail {email}"}],
            "reasoning_effort": "medium",
            "stream": True,
        },
        headers={"x-tenant-id": "acme"},
    )
    assert live.headers["x-aigw-cache"] == "miss"
    deltas = [p["choices"][0]["delta"] for p in sse_payloads(live.text)[:-1] if p["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == f"Considering: Mail {email}"
    assert email not in stack.fake.last_request.body.decode()

    rows = await stack.rows()
    # "Considering: Write to <EMAIL_ADDRESS_1> please": 5 words of thought, one token each
    assert [row["reasoning_tokens"] for row in rows] == [5, 5, 5, 3]
    assert all(row["completion_tokens"] > row["reasoning_tokens"] for row in rows)


async def test_reasoning_tokens_column_in_chdb_and_usage_reports(chdb_url: str, tmp_path: Path) -> None:
    assert "reasoning_tokens" in COLUMN_NAMES
    sink = ClickHouseSink(chdb_url, table=f"reasoning_{tmp_path.name[-10:]}")
    base = {"timestamp": 1_800_000_000_000, "tenant": "acme", "model": "thinker", "latency_ms": 5.0}
    sink.write(
        [
            {**base, "request_id": "a", "completion_tokens": 40, "reasoning_tokens": 30},
            {**base, "request_id": "b", "completion_tokens": 12, "reasoning_tokens": 5},
        ],
        "batch-1",
    )
    try:
        assert sink.query("SELECT sum(reasoning_tokens) FROM {table}") == [(35,)]
        (row,) = read_usage(sink, group_by=("tenant",))
        assert (row.completion_tokens, row.reasoning_tokens) == (52, 35)
    finally:
        sink.close()
