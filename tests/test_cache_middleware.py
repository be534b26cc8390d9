"""SemanticCacheMiddleware in front of ProviderRouter and FakeProvider, on the memory stores."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_aigw.cache import CacheConfig, MemoryVectorStore, SemanticCacheMiddleware
from asgi_aigw.cache.config import DEFAULT_THRESHOLD
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .cache_support import BagOfWordsEmbedder, cache_stack, chat, post
from .support import ContextSpy, sse_payloads


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
async def stack(fake: FakeProvider) -> AsyncIterator[tuple[httpx.AsyncClient, SemanticCacheMiddleware]]:
    app, cache = cache_stack(fake)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        yield client, cache
    await cache.aclose()


async def test_asking_twice_is_an_exact_hit(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    first = await post(client, chat("What is the capital of France?"))
    second = await post(client, chat("What is the capital of France?"))
    assert first.headers["x-aigw-cache"] == "miss"
    assert second.headers["x-aigw-cache"] == "hit-exact"
    assert "x-aigw-cache-score" not in second.headers
    assert len(fake.requests) == 1
    a, b = first.json(), second.json()
    assert b["choices"][0]["message"]["content"] == a["choices"][0]["message"]["content"]
    assert b["usage"]["total_tokens"] == a["usage"]["total_tokens"]
    assert b["id"] != a["id"]
    assert b["id"].startswith("chatcmpl-")


async def test_paraphrase_is_a_semantic_hit_with_its_score(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    await post(client, chat("How do I reset my password?"))
    hit = await post(client, chat("How can I reset my password, please?"))
    assert hit.headers["x-aigw-cache"] == "hit-semantic"
    assert 0.8 <= float(hit.headers["x-aigw-cache-score"]) <= 1.0001
    assert hit.json()["choices"][0]["message"]["content"] == "Echo: How do I reset my password?"
    assert len(fake.requests) == 1


class ThresholdSpy(MemoryVectorStore):
    """The memory vector store, recording the score each search asked its entries to reach."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    async def search_above(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float, min_score: float
    ) -> list[Any]:
        self.asked.append(min_score)
        return await super().search_above(
            vector, tenant=tenant, scope=scope, limit=limit, now=now, min_score=min_score
        )


@pytest.mark.parametrize(("threshold", "expected"), [(0.75, 0.75), (None, DEFAULT_THRESHOLD)])
async def test_the_semantic_layer_asks_its_store_only_for_entries_close_enough_to_answer(
    fake: FakeProvider, threshold: float | None, expected: float
) -> None:
    # entries under the threshold cannot answer: a store that can leave them out never reads them
    vector = ThresholdSpy()
    app, cache = cache_stack(fake, vector=vector, config=CacheConfig(threshold=threshold))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        await post(client, chat("How do I reset my password?"))
        hit = await post(client, chat("How can I reset my password, please?"))
        miss = await post(client, chat("Which planet is the largest?"))
    await cache.aclose()
    assert vector.asked == [expected] * 3
    assert hit.headers["x-aigw-cache"] == "hit-semantic"
    assert miss.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 2


class SearchOnly:
    """A store of one's own with the protocol's ``search`` and no ``search_above``."""

    def __init__(self) -> None:
        self._inner = MemoryVectorStore()
        self.searches = 0

    async def search(
        self, vector: list[float], *, tenant: str, scope: str, limit: int, now: float
    ) -> list[Any]:
        self.searches += 1
        return await self._inner.search(vector, tenant=tenant, scope=scope, limit=limit, now=now)

    async def upsert(self, entry: Any) -> None:
        await self._inner.upsert(entry)

    async def delete_expired(self, now: float) -> int:
        return await self._inner.delete_expired(now)

    async def purge(self, tenant: str | None = None) -> int:
        return await self._inner.purge(tenant)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_store_without_search_above_is_searched_and_held_to_the_threshold(fake: FakeProvider) -> None:
    vector = SearchOnly()
    app, cache = cache_stack(fake, vector=vector, config=CacheConfig(threshold=0.75))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        await post(client, chat("How do I reset my password?"))
        hit = await post(client, chat("How can I reset my password, please?"))
        miss = await post(client, chat("Which planet is the largest?"))
    await cache.aclose()
    assert vector.searches == 3
    assert hit.headers["x-aigw-cache"] == "hit-semantic"
    assert float(hit.headers["x-aigw-cache-score"]) >= 0.75
    assert miss.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 2


async def test_unrelated_question_is_a_miss(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    await post(client, chat("How do I reset my password?"))
    other = await post(client, chat("Who painted the Mona Lisa?"))
    assert other.headers["x-aigw-cache"] == "miss"
    assert other.json()["choices"][0]["message"]["content"] == "Echo: Who painted the Mona Lisa?"


async def test_verification_refuses_a_close_neighbour_that_asks_something_else(fake: FakeProvider) -> None:
    # A threshold low enough to let "sodium"/"potassium" through: only verification stops it.
    app, cache = cache_stack(fake, config=CacheConfig(threshold=0.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await post(client, chat("What is the chemical symbol for sodium?"))
        response = await post(client, chat("What is the chemical symbol for potassium?"))
    assert response.headers["x-aigw-cache"] == "miss"
    assert response.json()["choices"][0]["message"]["content"].endswith("potassium?")
    # With verification off, the same neighbour is (wrongly) served: the check is what refuses it.
    fake2 = FakeProvider()
    app2, _ = cache_stack(fake2, config=CacheConfig(threshold=0.0, verify=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app2), base_url="http://t") as client:
        await post(client, chat("What is the chemical symbol for sodium?"))
        wrong = await post(client, chat("What is the chemical symbol for potassium?"))
    assert wrong.headers["x-aigw-cache"] == "hit-semantic"
    await cache.aclose()


SYSTEM = {"role": "system", "content": "You are terse."}
QUESTION = {"role": "user", "content": "What is the capital of France?"}


@pytest.mark.parametrize(
    ("first", "second", "headers"),
    [
        pytest.param(
            {"messages": [SYSTEM, QUESTION]},
            {"messages": [{"role": "system", "content": "You are verbose."}, QUESTION]},
            {},
            id="system-prompt",
        ),
        pytest.param(
            {"messages": [QUESTION]},
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                    QUESTION,
                ]
            },
            {},
            id="earlier-turns",
        ),
        pytest.param({"messages": [QUESTION]}, {"messages": [QUESTION], "model": "gpt-4o"}, {}, id="model"),
        pytest.param(
            {"messages": [QUESTION]}, {"messages": [QUESTION], "temperature": 0.2}, {}, id="temperature"
        ),
        pytest.param(
            {"messages": [QUESTION]}, {"messages": [QUESTION], "max_tokens": 5}, {}, id="max-tokens"
        ),
        pytest.param({"messages": [QUESTION]}, {"messages": [QUESTION], "seed": 7}, {}, id="seed"),
        pytest.param(
            {"messages": [QUESTION]},
            {"messages": [QUESTION], "response_format": {"type": "json_object"}},
            {},
            id="response-format",
        ),
        pytest.param({"messages": [QUESTION]}, {"messages": [QUESTION]}, {"x-tenant": "other"}, id="tenant"),
    ],
)
async def test_same_question_in_another_context_is_a_miss(
    stack: Any, fake: FakeProvider, first: dict[str, Any], second: dict[str, Any], headers: dict[str, str]
) -> None:
    client, _ = stack
    await post(client, {"model": "gpt-4o-mini", **first}, **{"x-tenant": "acme"})
    # the same question asked in other words must not match either (the semantic layer is scoped)
    reworded = [
        *second["messages"][:-1],
        {"role": "user", "content": "What's the capital of France, please?"},
    ]
    for messages in (second["messages"], reworded):
        body = {"model": "gpt-4o-mini", **second, "messages": messages}
        # no-store: this context's own answer must not be what the reworded question finds
        response = await post(client, body, **{"x-tenant": "acme", "cache-control": "no-store", **headers})
        assert response.headers["x-aigw-cache"] == "miss", body
    # and the first context still hits
    again = await post(client, {"model": "gpt-4o-mini", **first}, **{"x-tenant": "acme"})
    assert again.headers["x-aigw-cache"] == "hit-exact"


async def test_key_ignores_field_order_stream_and_user(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    await post(client, {"messages": [QUESTION], "model": "gpt-4o-mini", "temperature": 0, "user": "u1"})
    response = await post(
        client, {"temperature": 0, "model": "gpt-4o-mini", "messages": [QUESTION], "user": "u2"}
    )
    assert response.headers["x-aigw-cache"] == "hit-exact"


# -- streams --------------------------------------------------------------------------------------


async def test_stream_is_captured_then_replayed_as_a_stream_and_as_json(
    stack: Any, fake: FakeProvider
) -> None:
    client, _ = stack
    body = chat("Tell me about streams", stream=True, stream_options={"include_usage": True})
    live = await post(client, body)
    assert live.headers["x-aigw-cache"] == "miss"
    replay = await post(client, body)
    assert replay.headers["x-aigw-cache"] == "hit-exact"
    assert replay.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(replay.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    live_text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_payloads(live.text)[:-1] if c["choices"]
    )
    assert text == live_text == "Echo: Tell me about streams"
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] > 0
    assert len({c["id"] for c in chunks}) == 1
    # the same entry answers a JSON request
    as_json = await post(client, chat("Tell me about streams"))
    assert as_json.headers["x-aigw-cache"] == "hit-exact"
    assert as_json.json()["choices"][0]["message"]["content"] == "Echo: Tell me about streams"
    assert as_json.json()["usage"] == usage_chunk["usage"]
    assert len(fake.requests) == 1


async def test_stream_without_usage_replays_without_usage_chunk_but_keeps_usage(
    stack: Any, fake: FakeProvider
) -> None:
    client, _ = stack
    await post(client, chat("No usage please", stream=True))
    replay = await post(client, chat("No usage please", stream=True))
    events = sse_payloads(replay.text)
    assert all(e == "[DONE]" or e["choices"] for e in events)
    as_json = await post(client, chat("No usage please"))
    assert as_json.json()["usage"]["total_tokens"] > 0  # the router read it from the upstream stream


async def test_json_answer_replays_as_a_stream(stack: Any) -> None:
    client, _ = stack
    await post(client, chat("JSON first"))
    replay = await post(client, chat("JSON first", stream=True))
    assert replay.headers["x-aigw-cache"] == "hit-exact"
    events = sse_payloads(replay.text)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "Echo: JSON first"


# -- what is not stored ------------------------------------------------------------------------------


async def test_error_answers_are_not_stored(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    fake.enqueue(FakeBehaviour(status=400, error_message="bad"))
    failed = await post(client, chat("Fail once"))
    assert failed.status_code == 400
    assert failed.headers["x-aigw-cache"] == "miss"
    retry = await post(client, chat("Fail once"))
    assert retry.status_code == 200
    assert retry.headers["x-aigw-cache"] == "miss"


async def test_cut_stream_is_not_stored(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    fake.enqueue(FakeBehaviour(cut_after=2))
    cut = await post(client, chat("Cut me off mid sentence please", stream=True))
    assert "[DONE]" not in cut.text
    again = await post(client, chat("Cut me off mid sentence please", stream=True))
    assert again.headers["x-aigw-cache"] == "miss"
    assert sse_payloads(again.text)[-1] == "[DONE]"


async def test_disconnected_stream_is_not_stored(fake: FakeProvider) -> None:
    fake.behaviour = FakeBehaviour(chunk_delay=0.05)
    app, cache = cache_stack(fake)
    body = orjson.dumps(chat("one two three four five six seven eight", stream=True))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
        "state": {},
    }
    spy = ContextSpy(app)
    communicator = ApplicationCommunicator(spy, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(5)
    assert start["status"] == 200
    await communicator.receive_output(5)  # a first chunk, then the client leaves
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)  # the app notices and stops
    assert spy.contexts[0].client_disconnected
    fake.behaviour = FakeBehaviour()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        again = await post(client, chat("one two three four five six seven eight", stream=True))
    assert again.headers["x-aigw-cache"] == "miss"
    await cache.aclose()


async def test_tool_call_answers_are_cached_only_when_configured(fake: FakeProvider) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    for allowed, expected in ((False, "miss"), (True, "hit-exact")):
        app, cache = cache_stack(FakeProvider(), config=CacheConfig(cache_tool_calls=allowed))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            first = await post(client, chat("Look this up", tools=tools))
            assert first.json()["choices"][0]["message"]["tool_calls"]
            second = await post(client, chat("Look this up", tools=tools))
        assert second.headers["x-aigw-cache"] == expected
        if allowed:
            assert second.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
            assert second.json()["choices"][0]["finish_reason"] == "tool_calls"
        await cache.aclose()


async def test_tool_call_stream_replays_its_tool_call(fake: FakeProvider) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    app, cache = cache_stack(fake, config=CacheConfig(cache_tool_calls=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await post(client, chat("Stream a tool call", tools=tools, stream=True))
        replay = await post(client, chat("Stream a tool call", tools=tools))
    assert replay.headers["x-aigw-cache"] == "hit-exact"
    call = replay.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "lookup"
    assert orjson.loads(call["function"]["arguments"]) == {"query": "Stream a tool call"}
    await cache.aclose()


# -- controls ----------------------------------------------------------------------------------------


async def test_no_cache_skips_lookup_but_stores(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    await post(client, chat("Fresh please"))
    fresh = await post(client, chat("Fresh please"), **{"cache-control": "no-cache"})
    assert fresh.headers["x-aigw-cache"] == "bypass"
    assert len(fake.requests) == 2
    fake.enqueue(FakeBehaviour(answer="A newer answer"))
    await post(client, chat("Refresh me"), **{"cache-control": "no-cache"})
    stored = await post(client, chat("Refresh me"))
    assert stored.headers["x-aigw-cache"] == "hit-exact"
    assert stored.json()["choices"][0]["message"]["content"] == "A newer answer"


async def test_no_store_does_not_store(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    first = await post(client, chat("Secret question"), **{"cache-control": "no-store"})
    assert first.headers["x-aigw-cache"] == "miss"
    second = await post(client, chat("Secret question"))
    assert second.headers["x-aigw-cache"] == "miss"
    both = await post(client, chat("Secret question"), **{"cache-control": "no-cache, no-store"})
    assert both.headers["x-aigw-cache"] == "bypass"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"n": 2}, id="n>1"),
        pytest.param({"temperature": 1.5}, id="high-temperature"),
        pytest.param({"logprobs": True}, id="logprobs"),
    ],
)
async def test_uncacheable_requests_bypass(stack: Any, fake: FakeProvider, extra: dict[str, Any]) -> None:
    client, _ = stack
    for _ in range(2):
        response = await post(client, chat("Roll the dice", **extra))
        assert response.headers["x-aigw-cache"] == "bypass"
    assert len(fake.requests) == 2


async def test_ttl_header_expires_the_entry(stack: Any, fake: FakeProvider) -> None:
    client, _ = stack
    await post(client, chat("Short lived"), **{"x-aigw-cache-ttl": "0.3"})
    assert (await post(client, chat("Short lived"))).headers["x-aigw-cache"] == "hit-exact"
    await anyio.sleep(0.4)
    expired = await post(client, chat("Short lived"))
    assert expired.headers["x-aigw-cache"] == "miss"
    # and the semantic layer does not answer with the expired entry either
    await post(client, chat("Brief lifetime question"), **{"x-aigw-cache-ttl": "0.3"})
    await anyio.sleep(0.4)
    reworded = await post(client, chat("Brief lifetime question, please"))
    assert reworded.headers["x-aigw-cache"] == "miss"


async def test_bad_ttl_header_is_a_400(stack: Any) -> None:
    client, _ = stack
    response = await post(client, chat("x"), **{"x-aigw-cache-ttl": "soon"})
    assert response.status_code == 400
    assert "x-aigw-cache-ttl" in response.json()["error"]["message"]


async def test_config_ttl_applies(fake: FakeProvider) -> None:
    app, cache = cache_stack(fake, config=CacheConfig(ttl=0.2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await post(client, chat("Config TTL"))
        await anyio.sleep(0.3)
        assert (await post(client, chat("Config TTL"))).headers["x-aigw-cache"] == "miss"
    await cache.aclose()


async def test_context_records_hit_and_usage(fake: FakeProvider) -> None:
    app, cache = cache_stack(fake)
    spy = ContextSpy(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(spy), base_url="http://t") as client:
        first = await post(client, chat("Count my tokens"))
        await post(client, chat("Count my tokens"))
        await post(client, chat("Count my tokens, please"))
    miss, exact, semantic = spy.contexts
    assert miss.cache_status == "miss"
    assert exact.cache_status == "hit-exact"
    assert exact.cache_score is None
    assert semantic.cache_status == "hit-semantic"
    assert semantic.cache_score is not None
    assert exact.usage is not None
    assert exact.usage.total_tokens == first.json()["usage"]["total_tokens"]
    await cache.aclose()


async def test_invalid_request_passes_to_the_app_uncached(stack: Any) -> None:
    client, _ = stack
    response = await client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
    assert response.status_code == 400
    assert "x-aigw-cache" not in response.headers


async def test_other_routes_pass_through(stack: Any) -> None:
    client, _ = stack
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert "x-aigw-cache" not in response.headers


# -- failures are misses -------------------------------------------------------------------------------


class BrokenStore:
    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("store down")

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        raise ConnectionError("store down")

    async def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise ConnectionError("store down")

    async def upsert(self, entry: Any) -> None:
        raise ConnectionError("store down")

    async def purge(self, tenant: str | None = None) -> int:
        return 0

    async def delete_expired(self, now: float) -> int:
        return 0

    async def aclose(self) -> None:
        return None


async def test_failing_stores_and_embedder_mean_miss_logged_once(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = BagOfWordsEmbedder()
    app, cache = cache_stack(fake, exact=BrokenStore(), vector=BrokenStore(), embedder=embedder)
    caplog.set_level(logging.WARNING, logger="asgi_aigw.cache")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for _ in range(3):
            response = await post(client, chat("Is anyone there?"))
            assert response.status_code == 200
            assert response.headers["x-aigw-cache"] == "miss"
        embedder.fail = True
        response = await post(client, chat("Is anyone there?"))
        assert response.status_code == 200
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the exact store failed" in m for m in messages) == 1
    assert sum("the vector store failed" in m for m in messages) == 1
    assert sum("the embedder failed" in m for m in messages) == 1
    await cache.aclose()


async def test_without_vector_store_exact_layer_works_alone(fake: FakeProvider) -> None:
    app, cache = cache_stack(fake, vector=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        await post(client, chat("Only exact"))
        assert (await post(client, chat("Only exact"))).headers["x-aigw-cache"] == "hit-exact"
        assert (await post(client, chat("Only exact, please"))).headers["x-aigw-cache"] == "miss"
    await cache.aclose()


async def test_purge_by_tenant(stack: Any) -> None:
    client, cache = stack
    await post(client, chat("Tenant question"), **{"x-tenant": "a"})
    await post(client, chat("Tenant question"), **{"x-tenant": "b"})
    exact, vectors = await cache.purge("a")
    assert (exact, vectors) == (1, 1)
    assert (await post(client, chat("Tenant question"), **{"x-tenant": "a"})).headers[
        "x-aigw-cache"
    ] == "miss"
    assert (await post(client, chat("Tenant question"), **{"x-tenant": "b"})).headers[
        "x-aigw-cache"
    ] == "hit-exact"


async def test_lifespan_warms_the_embedder_and_closes_the_stores(fake: FakeProvider) -> None:
    from asgi_lifespan import LifespanManager

    from asgi_aigw import build_app

    from .support import FAKE_URL, fake_config

    closed: list[str] = []

    class ClosingStore(MemoryVectorStore):
        async def aclose(self) -> None:
            closed.append("vector")

    embedder = BagOfWordsEmbedder()
    app = SemanticCacheMiddleware(
        build_app(fake_config(), transports={FAKE_URL: StreamingASGITransport(fake)}, env={}),
        vector=ClosingStore(),
        embedder=embedder,
    )
    async with LifespanManager(app):
        await app.drain()
        assert embedder.calls == 1  # the model is loaded before the first request needs it
    assert closed == ["vector"]


class _Hanging:
    """Never answers: an embedder or a vector store stuck behind a dead connection."""

    dimension = 128

    async def embed(self, texts: Any) -> list[list[float]]:
        await anyio.sleep(30)
        raise AssertionError("not reached")

    async def search(self, *args: Any, **kwargs: Any) -> list[Any]:
        await anyio.sleep(30)
        raise AssertionError("not reached")


@pytest.mark.parametrize("stuck", ["embedder", "vector store"])
async def test_a_stuck_embedder_or_vector_store_costs_a_lookup_timeout_then_the_question_is_asked(
    fake: FakeProvider, stuck: str
) -> None:
    vector: Any = MemoryVectorStore()
    embedder: Any = BagOfWordsEmbedder()
    if stuck == "embedder":
        embedder = _Hanging()
    else:
        vector.search = _Hanging().search
    app, _ = cache_stack(fake, config=CacheConfig(lookup_timeout=0.2), vector=vector, embedder=embedder)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        with anyio.fail_after(5):  # 30 s without the bound
            response = await post(client, chat("How do I undo the last git commit?"))
    assert response.status_code == 200
    assert response.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 1
