"""End to end, the deployed order (budget in Redis in front of the cache, Redis exact + Qdrant Edge): an
answer's semantic entry is written in place once its last byte has gone, for a stream of each dialect
through the official SDKs, and the question asked in other words next is a semantic hit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget import BudgetConfig, Limits
from asgi_aigw.cache import CacheConfig
from asgi_aigw.cache.vector import VectorEntry
from asgi_aigw.testing import FakeProvider, ServerThread

from .support import fake_config

pytestmark = pytest.mark.e2e

KEY = "test-key-not-real"
FIRST = "Which port does PostgreSQL listen on?"
QUESTION = "How do I undo the last git commit?"
PARAPHRASE = "How can I undo my last commit in git?"


def _vector_layer(app: Any) -> Any:
    layer = app
    while layer is not None:
        if getattr(layer, "vector", None) is not None:
            return layer
        layer = getattr(layer, "app", None)
    raise AssertionError("no semantic cache in the stack")


@pytest.fixture
def gateway(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[str, list[str]]]:
    """The gateway's URL, and the questions whose entries were written through the store's awaited
    ``upsert`` (a task) rather than in place."""
    upstream = ServerThread(fake)
    upstream.start()
    config = fake_config("gpt", base_url=upstream.base_url + "/v1", api_key=KEY)
    config.budget = BudgetConfig(
        store=redis_url, key_prefix=f"{redis_prefix}budget:", limits=Limits(requests_per_minute=1000)
    )
    config.cache = CacheConfig(
        store=redis_url, key_prefix=redis_prefix, vector_store=f"qdrant-edge://{tmp_path / 'vectors'}"
    )
    app = build_app(config, env={})
    store = _vector_layer(app).vector
    awaited: list[str] = []
    upsert = store.upsert

    async def counted(entry: VectorEntry) -> None:
        awaited.append(entry.question)
        await upsert(entry)

    store.upsert = counted
    server = ServerThread(app)
    server.start()
    # the shard is made at startup, in the background, once the embedder has loaded
    deadline = time.monotonic() + 30
    while store._shard is None and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield server.base_url + "/ai", awaited
    finally:
        server.stop()
        upstream.stop()


def _drained(response: Any) -> str:
    """Read a streamed answer to its end; its cache status."""
    for _ in response.iter_lines():
        pass
    status: str = response.headers["x-aigw-cache"]
    return status


def _chat_stream(base: str, question: str) -> str:
    with (
        openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client,
        client.chat.completions.with_streaming_response.create(
            model="gpt", messages=[{"role": "user", "content": question}], stream=True
        ) as response,
    ):
        return _drained(response)


def _responses_stream(base: str, question: str) -> str:
    with (
        openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client,
        client.responses.with_streaming_response.create(
            model="gpt", input=question, store=False, stream=True
        ) as response,
    ):
        return _drained(response)


def _messages_stream(base: str, question: str) -> str:
    with (
        anthropic.Anthropic(base_url=base, api_key=KEY, max_retries=0) as client,
        client.messages.stream(
            model="gpt", max_tokens=256, messages=[{"role": "user", "content": question}]
        ) as stream,
    ):
        stream.get_final_message()
        status: str = stream.response.headers["x-aigw-cache"]
        return status


@pytest.mark.parametrize(
    "ask", [_chat_stream, _messages_stream, _responses_stream], ids=["chat", "messages", "responses"]
)
def test_a_streamed_answer_behind_the_budget_is_stored_in_place_and_found_in_other_words(
    gateway: tuple[str, list[str]], fake: FakeProvider, ask: Any
) -> None:
    base, awaited = gateway
    assert ask(base, FIRST) == "miss"
    assert ask(base, QUESTION) == "miss"
    assert ask(base, PARAPHRASE) == "hit-semantic"
    assert awaited == []  # no entry went through a task: the first one did while it made the shard
    generations = [r for r in fake.requests if r.path.endswith("/chat/completions")]
    assert len(generations) == 2
