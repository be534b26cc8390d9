"""Token log probabilities end to end: the openai SDK reads Gemini's and Ollama's through the gateway,
redaction leaves the tokens as generated while restoring the text, and the cache never answers for
a request that asks for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from asgi_aigw.cache import CacheConfig, SemanticCacheMiddleware
from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .cache_support import BagOfWordsEmbedder
from .redact_support import ScriptedApp, base_analyzer
from .redact_support import chunk as openai_chunk

URL = "http://fake-provider.test"
DEPLOYMENTS = {
    "gemini": ("gemini", "gemini-test-flash", "test-gemini-key-0000"),
    "llama": ("ollama", "llama-test:8b", None),
}
QUESTION = "Hello there, friend"
#: The fake answers "Echo: <question>", one token a word, the first certain (logprob 0), the others
#: a quarter less likely per character (at most 1), each alternative 1.5 below the one before.
TOKENS = ["Echo:", " Hello", " there,", " friend"]


def router(fake: FakeProvider) -> ProviderRouter:
    config = RouterConfig(
        models=[
            ModelConfig(
                name=alias,
                deployments=[DeploymentConfig(provider=provider, model=model, base_url=URL, api_key=key)],  # type: ignore[arg-type]
            )
            for alias, (provider, model, key) in DEPLOYMENTS.items()
        ]
    )
    return ProviderRouter(config, transports={URL: StreamingASGITransport(fake)}, env={})


@pytest.fixture
async def sdk(fake: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    app = router(fake)
    http = httpx.AsyncClient(transport=StreamingASGITransport(app))
    async with http:
        yield openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key="sk-test-not-a-real-key", http_client=http
        )
    await app.aclose()


@pytest.mark.parametrize("model", sorted(DEPLOYMENTS))
async def test_the_openai_sdk_reads_logprobs(sdk: openai.AsyncOpenAI, model: str) -> None:
    completion = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], logprobs=True, top_logprobs=2
    )
    choice = completion.choices[0]
    assert choice.message.content == "Echo: " + QUESTION
    assert choice.logprobs is not None
    assert choice.logprobs.content is not None
    content = choice.logprobs.content
    assert [t.token for t in content] == TOKENS
    assert content[0].logprob == 0.0
    assert content[1].logprob == -1.0
    assert content[2].bytes == list(b" there,")
    assert [(a.token, a.logprob) for a in content[3].top_logprobs] == [(" friend", -1.0), (" friend_1", -2.5)]


@pytest.mark.parametrize("model", sorted(DEPLOYMENTS))
async def test_the_openai_sdk_reads_streamed_logprobs(sdk: openai.AsyncOpenAI, model: str) -> None:
    stream = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], logprobs=True, stream=True
    )
    text, tokens = "", []
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None and choice.logprobs.content:
                # each chunk carries the tokens of its own text
                assert "".join(t.token for t in choice.logprobs.content) == choice.delta.content
                tokens.extend((t.token, t.logprob, t.top_logprobs) for t in choice.logprobs.content)
    assert text == "Echo: " + QUESTION
    assert tokens == [("Echo:", 0.0, []), (" Hello", -1.0, []), (" there,", -1.0, []), (" friend", -1.0, [])]


# -- redaction ----------------------------------------------------------------------------------------

EMAIL = "maria.gonzalez@example.com"


@pytest.mark.parametrize("stream", [False, True])
async def test_redaction_restores_the_text_and_leaves_the_tokens(fake: FakeProvider, stream: bool) -> None:
    app = router(fake)
    redact = RedactMiddleware(app, config=RedactConfig(), analyzer=base_analyzer(True))
    body = {
        "model": "gemini",
        "messages": [{"role": "user", "content": f"Write to {EMAIL}"}],
        "logprobs": True,
        "stream": stream,
    }
    async with httpx.AsyncClient(transport=StreamingASGITransport(redact), base_url="http://t") as client:
        answer = await client.post("/v1/chat/completions", json=body)
    await app.aclose()
    assert answer.status_code == 200, answer.text
    assert EMAIL not in fake.requests[-1].body.decode()
    if stream:
        chunks = [c for c in _payloads(answer.text) if c["choices"]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        tokens = [t for c in chunks for t in (c["choices"][0]["logprobs"] or {}).get("content", [])]
    else:
        choice = answer.json()["choices"][0]
        text, tokens = choice["message"]["content"], choice["logprobs"]["content"]
    assert text == f"Echo: Write to {EMAIL}"
    # the tokens are what the model generated: the placeholder, its bytes matching it
    assert tokens[-1]["token"] == " <EMAIL_ADDRESS_1>"
    assert tokens[-1]["bytes"] == list(b" <EMAIL_ADDRESS_1>")


def _token(text: str) -> dict[str, Any]:
    return {"token": text, "logprob": -0.5, "bytes": list(text.encode()), "top_logprobs": []}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_openai_answers_tokens_are_left_as_generated_too(stream: bool) -> None:
    placeholder = "<EMAIL_ADDRESS_1>"
    logprobs = {"content": [_token("Mail "), _token(placeholder)], "refusal": None}
    if stream:
        event = orjson.loads(openai_chunk("Mail " + placeholder)[6:])
        event["choices"][0]["logprobs"] = logprobs
        upstream = ScriptedApp(
            events=[
                b"data: " + orjson.dumps(event) + b"\n\n",
                openai_chunk(finish="stop"),
                b"data: [DONE]\n\n",
            ]
        )
    else:
        message = {"role": "assistant", "content": "Mail " + placeholder}
        choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": "stop"}
        upstream = ScriptedApp(
            json_body={"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]}
        )
    redact = RedactMiddleware(upstream, config=RedactConfig(), analyzer=base_analyzer(True))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Write to {EMAIL}"}]}
    async with httpx.AsyncClient(transport=StreamingASGITransport(redact), base_url="http://t") as client:
        answer = await client.post("/v1/chat/completions", json={**body, "logprobs": True, "stream": stream})
    assert EMAIL not in orjson.dumps(upstream.bodies).decode()
    if stream:
        chunks = [c for c in _payloads(answer.text) if c["choices"]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        tokens = [t for c in chunks for t in (c["choices"][0].get("logprobs") or {}).get("content", [])]
    else:
        choice = answer.json()["choices"][0]
        text, tokens = choice["message"]["content"], choice["logprobs"]["content"]
    assert text == "Mail " + EMAIL
    assert tokens == logprobs["content"]


def _payloads(text: str) -> list[Any]:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


# -- cache --------------------------------------------------------------------------------------------


async def test_a_logprobs_request_bypasses_the_cache(fake: FakeProvider) -> None:
    app = router(fake)
    cache = SemanticCacheMiddleware(
        app, config=CacheConfig(store="memory://", vector_store=None), embedder=BagOfWordsEmbedder()
    )
    plain = {"model": "gemini", "messages": [{"role": "user", "content": QUESTION}]}
    asking = {**plain, "logprobs": True}
    async with httpx.AsyncClient(transport=StreamingASGITransport(cache), base_url="http://t") as client:
        statuses = []
        for body in (plain, plain, asking, asking):
            answer = await client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            statuses.append(answer.headers["x-aigw-cache"])
            logprobs = answer.json()["choices"][0]["logprobs"]
            assert (logprobs is not None) is ("logprobs" in body)
    await app.aclose()
    # the cache works (a hit for the plain request), and the logprobs requests reach the provider
    assert statuses == ["miss", "hit-exact", "bypass", "bypass"]
    assert len(fake.requests) == 3
