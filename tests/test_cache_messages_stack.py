"""End to end: the anthropic SDK over uvicorn against build_app with the cache (Redis, Qdrant Edge, the
runtime's embedder) in front of the router's Messages route, for a passed-through Anthropic deployment and
a translated OpenAI one; FakeProvider on its own uvicorn counts what reached it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from asgi_aigw import build_app
from asgi_aigw.cache import CacheConfig
from asgi_aigw.config import GatewayConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, ServerThread

pytest.importorskip("asgi_aigw.router.messages", reason="the router's /v1/messages route is not merged")

pytestmark = pytest.mark.e2e

KEY = "test-key-not-real"
QUESTION = "How do I undo the last git commit?"
PARAPHRASE = "How can I undo my last commit in git?"


@pytest.fixture
def gateway(fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[str]:
    upstream = ServerThread(fake)
    upstream.start()
    deployments = {
        "claude": DeploymentConfig(
            provider="anthropic", model="claude-up", base_url=upstream.base_url, api_key=KEY
        ),  # type: ignore[arg-type]
        "gpt": DeploymentConfig(
            provider="openai", model="gpt-4o-mini", base_url=upstream.base_url + "/v1", api_key=KEY
        ),  # type: ignore[arg-type]
    }
    config = GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name=name, deployments=[d]) for name, d in deployments.items()],
            retry=RetryConfig(retries=0),
        )
    )
    config.cache = CacheConfig(
        store=redis_url, key_prefix=redis_prefix, vector_store=f"qdrant-edge://{tmp_path / 'vectors'}"
    )
    server = ServerThread(build_app(config, env={}))
    server.start()
    try:
        yield server.base_url + "/ai"
    finally:
        server.stop()
        upstream.stop()


@pytest.mark.parametrize("model", ["claude", "gpt"])
def test_sdk_streams_are_answered_from_the_cache(gateway: str, fake: FakeProvider, model: str) -> None:
    client = anthropic.Anthropic(base_url=gateway, api_key=KEY, max_retries=0)

    def ask(question: str) -> tuple[anthropic.types.Message, Any]:
        with client.messages.stream(
            model=model, max_tokens=256, messages=[{"role": "user", "content": question}]
        ) as stream:
            return stream.get_final_message(), stream.response.headers

    live, live_headers = ask(QUESTION)
    exact, exact_headers = ask(QUESTION)
    semantic, semantic_headers = ask(PARAPHRASE)
    assert [h["x-aigw-cache"] for h in (live_headers, exact_headers, semantic_headers)] == [
        "miss",
        "hit-exact",
        "hit-semantic",
    ]
    generations = [r for r in fake.requests if r.path.endswith(("/messages", "/chat/completions"))]
    assert len(generations) == 1
    for replay, headers in ((exact, exact_headers), (semantic, semantic_headers)):
        assert replay.content[0].text == live.content[0].text == f"Echo: {QUESTION}"  # type: ignore[union-attr]
        assert replay.usage.output_tokens == live.usage.output_tokens
        assert replay.usage.input_tokens == live.usage.input_tokens
        assert headers["x-aigw-provider"] == live_headers["x-aigw-provider"]
    json_hit = client.messages.with_raw_response.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
    )
    assert json_hit.headers["x-aigw-cache"] == "hit-exact"
    assert json_hit.parse().content[0].text == live.content[0].text  # type: ignore[union-attr]
    client.close()
