"""End to end: the openai SDK against the gateway with the cache (build_app, the runtime's embedder,
Qdrant Edge), on a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.cache import CacheConfig
from asgi_aigw.testing import FakeProvider, ServerThread

from .support import fake_config

pytestmark = pytest.mark.e2e


@pytest.fixture
async def gateway(fake: FakeProvider, tmp_path: Path) -> AsyncIterator[str]:
    upstream = ServerThread(fake)
    upstream.start()
    config = fake_config(base_url=upstream.base_url + "/v1")
    config.cache = CacheConfig(vector_store=f"qdrant-edge://{tmp_path / 'vectors'}")
    server = ServerThread(build_app(config, env={}))  # the runtime's default embedder (static vectors)
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
        upstream.stop()


async def _stream(client: openai.AsyncOpenAI, question: str) -> tuple[str, str | None, object, list[str]]:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    stream = raw.parse()
    text, usage, finish = "", None, []
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            if chunk.choices[0].finish_reason:
                finish.append(chunk.choices[0].finish_reason)
        if chunk.usage:
            usage = chunk.usage
    return text, raw.headers.get("x-aigw-cache"), usage, finish


async def test_sdk_reads_replayed_streams_like_live_ones(gateway: str, fake: FakeProvider) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/ai/v1", api_key="sk-test-client", max_retries=0)
    live = await _stream(client, "How do I delete a branch in git?")
    exact = await _stream(client, "How do I delete a branch in git?")
    semantic = await _stream(client, "How can I delete a git branch?")
    assert live[1] == "miss"
    assert exact[1] == "hit-exact"
    assert semantic[1] == "hit-semantic"
    for text, _, usage, finish in (exact, semantic):
        assert text == live[0] == "Echo: How do I delete a branch in git?"
        assert finish == ["stop"]
        assert usage == live[2]
    assert len(fake.requests) == 1

    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "How do I delete a branch in git?"}]
    )
    completion = raw.parse()
    assert raw.headers["x-aigw-cache"] == "hit-exact"
    assert completion.choices[0].message.content == live[0]
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    await client.close()
