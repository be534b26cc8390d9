"""SemanticCacheMiddleware on Anthropic Messages requests: real Redis, the runtime's embedder, Qdrant Edge,
FakeProvider answering ``/v1/messages`` in Anthropic's format (it counts its calls: a hit never reaches it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.entry import CachedAnswer
from asgi_aigw.cache.keys import CacheKeys, cache_keys, canonical_json, tenant_tag
from asgi_aigw.cache.replay_messages import CachedMessage
from asgi_aigw.testing import FakeBehaviour, FakeProvider, ServerThread

from .cache_support import (
    ANTHROPIC_VERSION,
    PARAPHRASE,
    QUESTION,
    WHO,
    WhoAnswered,
    chat,
    edge_cache,
    messages_body,
    post,
    post_messages,
)
from .support import sse_payloads

embedder_module = pytest.importorskip("asgi_aigw.runtime.embedder")

TOOLS = [{"name": "search_help", "description": "Search the help pages", "input_schema": {"type": "object"}}]
STREAM_EVENTS = ["message_start", "content_block_start", "content_block_delta"]


@pytest.fixture(scope="module")
def embedder() -> object:
    return embedder_module.get_embedder()


def build(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object, **config: Any
) -> tuple[Any, SemanticCacheMiddleware]:
    """TenantFromHeader -> SemanticCacheMiddleware (Redis, Qdrant Edge) -> WhoAnswered -> FakeProvider."""
    return edge_cache(WhoAnswered(fake), redis_url, redis_prefix, tmp_path, embedder, **config)


@pytest.fixture
async def stack(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object
) -> AsyncIterator[httpx.AsyncClient]:
    app, cache = build(fake, redis_url, redis_prefix, tmp_path, embedder, cache_tool_calls=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        yield client
    await cache.purge()
    await cache.aclose()


def events(response: httpx.Response) -> list[str]:
    return [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]


def streamed_message(response: httpx.Response) -> dict[str, Any]:
    """The message an Anthropic stream adds up to, rebuilt from its events by hand."""
    payloads = sse_payloads(response.text)
    message = dict(payloads[0]["message"])
    blocks: list[dict[str, Any]] = []
    json_parts: dict[int, str] = {}
    for payload in payloads[1:]:
        if payload["type"] == "content_block_start":
            blocks.append(dict(payload["content_block"]))
        elif payload["type"] == "content_block_delta":
            delta = payload["delta"]
            if delta["type"] == "text_delta":
                blocks[payload["index"]]["text"] += delta["text"]
            else:
                json_parts[payload["index"]] = json_parts.get(payload["index"], "") + delta["partial_json"]
        elif payload["type"] == "message_delta":
            message.update(payload["delta"])
            message["usage"] = {**message["usage"], **payload["usage"]}
    for index, text in json_parts.items():
        blocks[index]["input"] = orjson.loads(text)
    message["content"] = blocks
    return message


def answer_of(response: httpx.Response) -> dict[str, Any]:
    """The message of a JSON or SSE answer, without its id."""
    message = (
        streamed_message(response)
        if response.headers["content-type"].startswith("text/event-stream")
        else response.json()
    )
    return {k: v for k, v in message.items() if k != "id"}


# -- exact hits, each form stored and replayed either way ------------------------------------------------


@pytest.mark.parametrize("stored_stream", [False, True], ids=["stored-json", "stored-stream"])
@pytest.mark.parametrize("asked_stream", [False, True], ids=["asked-json", "asked-stream"])
async def test_repeat_is_an_exact_hit_in_the_form_asked(
    stack: httpx.AsyncClient, fake: FakeProvider, stored_stream: bool, asked_stream: bool
) -> None:
    miss = await post_messages(stack, messages_body(QUESTION, stream=stored_stream))
    hit = await post_messages(stack, messages_body(QUESTION, stream=asked_stream))
    assert miss.headers["x-aigw-cache"] == "miss"
    assert hit.headers["x-aigw-cache"] == "hit-exact"
    assert len(fake.requests) == 1  # the repeat never reached the provider
    assert answer_of(hit) == answer_of(miss)
    assert answer_of(hit)["content"] == [{"type": "text", "text": f"Echo: {QUESTION}"}]
    assert answer_of(hit)["usage"]["output_tokens"] > 0
    # who answered, as the miss said; the provider's own request id is not replayed
    assert [hit.headers[h] for h in WHO] == [miss.headers[h] for h in WHO]
    assert "request-id" not in hit.headers
    if asked_stream:
        assert hit.headers["content-type"].startswith("text/event-stream")
        assert events(hit)[:3] == STREAM_EVENTS
        assert events(hit)[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    else:
        assert hit.json()["type"] == "message"
        assert hit.json()["id"].startswith("msg_")
        miss_id = sse_payloads(miss.text)[0]["message"]["id"] if stored_stream else miss.json()["id"]
        assert hit.json()["id"] != miss_id  # a fresh id, as a live answer has


async def test_replayed_stream_is_anthropics_event_sequence(stack: httpx.AsyncClient) -> None:
    await post_messages(stack, messages_body(QUESTION))
    hit = await post_messages(stack, messages_body(QUESTION, stream=True))
    payloads = sse_payloads(hit.text)
    names = events(hit)
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[1] == "content_block_start"
    assert names[-3] == "content_block_stop"
    assert [p["type"] for p in payloads] == names  # each event's name is its payload's type
    start = payloads[0]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    assert start["usage"]["output_tokens"] == 1
    assert payloads[1]["content_block"] == {"type": "text", "text": ""}
    assert all(p["delta"]["type"] == "text_delta" for p in payloads[2:-3])
    assert payloads[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


@pytest.mark.parametrize("stored_stream", [False, True], ids=["stored-json", "stored-stream"])
async def test_tool_use_replays_as_input_json_deltas(
    stack: httpx.AsyncClient, fake: FakeProvider, stored_stream: bool
) -> None:
    miss = await post_messages(stack, messages_body(QUESTION, tools=TOOLS, stream=stored_stream))
    stream_hit = await post_messages(stack, messages_body(QUESTION, tools=TOOLS, stream=True))
    json_hit = await post_messages(stack, messages_body(QUESTION, tools=TOOLS))
    assert [stream_hit.headers["x-aigw-cache"], json_hit.headers["x-aigw-cache"]] == ["hit-exact"] * 2
    assert len(fake.requests) == 1
    payloads = sse_payloads(stream_hit.text)
    assert payloads[1]["content_block"]["type"] == "tool_use"
    assert payloads[1]["content_block"]["input"] == {}
    assert {p["delta"]["type"] for p in payloads if p["type"] == "content_block_delta"} == {
        "input_json_delta"
    }
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"
    expected = answer_of(miss)
    assert expected["content"][0]["input"] == {"query": QUESTION}
    assert answer_of(stream_hit) == answer_of(json_hit) == expected


async def test_tool_use_is_not_stored_unless_configured(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object
) -> None:
    app, cache = build(fake, redis_url, redis_prefix, tmp_path, embedder)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for _ in range(2):
            response = await post_messages(client, messages_body(QUESTION, tools=TOOLS))
            assert response.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 2
    await cache.aclose()


# -- semantic layer -------------------------------------------------------------------------------------


async def test_paraphrase_is_a_semantic_hit_and_a_swapped_question_a_miss(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    await post_messages(stack, messages_body(QUESTION, stream=True))
    hit = await post_messages(stack, messages_body(PARAPHRASE))
    assert hit.headers["x-aigw-cache"] == "hit-semantic"
    assert float(hit.headers["x-aigw-cache-score"]) >= 0.8
    assert hit.json()["content"][0]["text"] == f"Echo: {QUESTION}"
    assert len(fake.requests) == 1

    await post_messages(stack, messages_body("Convert 10 miles to kilometers"))
    swapped = await post_messages(stack, messages_body("Convert 10 kilometers to miles", stream=True))
    assert swapped.headers["x-aigw-cache"] == "miss"
    assert streamed_message(swapped)["content"][0]["text"] == "Echo: Convert 10 kilometers to miles"
    assert len(fake.requests) == 3


# -- isolation ------------------------------------------------------------------------------------------


async def test_chat_and_messages_with_the_same_text_never_share_an_entry(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    same = {"model": "claude-sonnet-4-5", "max_tokens": 256}
    messages_miss = await post_messages(stack, messages_body(QUESTION))
    chat_miss = await post(stack, chat(QUESTION, **same))
    chat_paraphrase = await post(stack, chat(PARAPHRASE, **same))
    assert [r.headers["x-aigw-cache"] for r in (messages_miss, chat_miss)] == ["miss", "miss"]
    assert chat_miss.json()["object"] == "chat.completion"
    # chat's own paraphrase finds chat's entry, not the Messages one
    assert chat_paraphrase.headers["x-aigw-cache"] == "hit-semantic"
    assert chat_paraphrase.json()["object"] == "chat.completion"
    messages_hit = await post_messages(stack, messages_body(PARAPHRASE))
    assert messages_hit.headers["x-aigw-cache"] == "hit-semantic"
    assert messages_hit.json()["type"] == "message"
    assert len(fake.requests) == 2


async def test_messages_paraphrase_misses_an_entry_stored_by_chat(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    await post(stack, chat(QUESTION, model="claude-sonnet-4-5", max_tokens=256))
    exact = await post_messages(stack, messages_body(QUESTION))
    await post(
        stack, chat("Which port does PostgreSQL listen on?", model="claude-sonnet-4-5", max_tokens=256)
    )
    semantic = await post_messages(stack, messages_body("What port does PostgreSQL listen on?"))
    assert [exact.headers["x-aigw-cache"], semantic.headers["x-aigw-cache"]] == ["miss", "miss"]
    assert exact.json()["type"] == semantic.json()["type"] == "message"
    assert len(fake.requests) == 4


def test_the_dialect_is_part_of_both_keys() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
    chat_keys = CacheKeys("t", request, max_question_chars=2000)
    messages_keys = CacheKeys("t", request, max_question_chars=2000, dialect="messages")
    assert chat_keys.exact != messages_keys.exact
    assert chat_keys.scope != messages_keys.scope
    assert chat_keys.question == messages_keys.question == QUESTION


def test_chat_keys_are_those_of_entries_stored_before_dialects() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
    request = {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}
    digest = __import__("hashlib").sha256(canonical_json({"tenant": "t", "request": request})).hexdigest()
    assert cache_keys(body, "t", max_question_chars=2000).exact == f"{tenant_tag('t')}:{digest}"


async def test_tenants_never_share_an_entry(stack: httpx.AsyncClient, fake: FakeProvider) -> None:
    await post_messages(stack, messages_body(QUESTION), **{"x-tenant": "acme"})
    other_exact = await post_messages(stack, messages_body(QUESTION), **{"x-tenant": "globex"})
    other_semantic = await post_messages(
        stack, messages_body(PARAPHRASE, stream=True), **{"x-tenant": "initech"}
    )
    own = await post_messages(stack, messages_body(PARAPHRASE), **{"x-tenant": "acme"})
    assert other_exact.headers["x-aigw-cache"] == "miss"
    assert other_semantic.headers["x-aigw-cache"] == "miss"
    assert own.headers["x-aigw-cache"] == "hit-semantic"
    assert len(fake.requests) == 3


# -- what is part of the key, what bypasses -------------------------------------------------------------

SYSTEM = "You are terse."
MARKED_SYSTEM = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
MARKED_QUESTION = [{"type": "text", "text": QUESTION, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]


@pytest.mark.parametrize(
    ("first", "second", "first_headers", "second_headers", "status"),
    [
        pytest.param(
            {"system": [{"type": "text", "text": SYSTEM}]},
            {"system": MARKED_SYSTEM},
            {},
            {},
            "hit-exact",
            id="cache-control-on-system",
        ),
        pytest.param(
            {},
            {"messages": [{"role": "user", "content": MARKED_QUESTION}]},
            {},
            {},
            "hit-exact",
            id="cache-control-on-the-question",
        ),
        pytest.param(
            {"tools": TOOLS, "tool_choice": {"type": "none"}},
            {
                "tools": [{**TOOLS[0], "cache_control": {"type": "ephemeral"}}],
                "tool_choice": {"type": "none"},
            },
            {},
            {},
            "hit-exact",
            id="cache-control-on-tools",
        ),
        pytest.param(
            {"metadata": {"user_id": "user-1"}},
            {"metadata": {"user_id": "user-2"}},
            {},
            {},
            "hit-exact",
            id="metadata-user-id",
        ),
        pytest.param(
            {},
            {},
            {"anthropic-beta": "a-beta-2025-01-01,b-beta-2025-02-02"},
            {"anthropic-beta": "b-beta-2025-02-02, a-beta-2025-01-01"},
            "hit-exact",
            id="beta-order",
        ),
        pytest.param({}, {}, {}, {"anthropic-beta": "a-beta-2025-01-01"}, "miss", id="beta"),
        pytest.param(
            {},
            {},
            {"anthropic-version": "2023-06-01"},
            {"anthropic-version": "2023-01-01"},
            "miss",
            id="version",
        ),
        pytest.param({"system": SYSTEM}, {"system": "You are verbose."}, {}, {}, "miss", id="system"),
        pytest.param({}, {"stop_sequences": ["\n\n"]}, {}, {}, "miss", id="stop-sequences"),
        pytest.param({}, {"max_tokens": 64}, {}, {}, "miss", id="max-tokens"),
        pytest.param({}, {"tools": TOOLS, "tool_choice": {"type": "none"}}, {}, {}, "miss", id="tools"),
        pytest.param({}, {"temperature": 0.3}, {}, {}, "miss", id="temperature"),
        pytest.param({}, {}, {}, {"cache-control": "no-cache"}, "bypass", id="no-cache-header"),
    ],
)
async def test_what_splits_the_key(
    stack: httpx.AsyncClient,
    fake: FakeProvider,
    first: dict[str, Any],
    second: dict[str, Any],
    first_headers: dict[str, str],
    second_headers: dict[str, str],
    status: str,
) -> None:
    stored = await post_messages(stack, {**messages_body(QUESTION), **first}, **first_headers)
    asked = await post_messages(stack, {**messages_body(QUESTION), **second}, **second_headers)
    assert stored.status_code == asked.status_code == 200, asked.text
    assert stored.headers["x-aigw-cache"] == "miss"
    assert asked.headers["x-aigw-cache"] == status
    assert len(fake.requests) == (1 if status.startswith("hit") else 2)


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        pytest.param(
            {"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 2048}, {}, id="thinking"
        ),
        pytest.param({"thinking": {"type": "adaptive"}}, {}, id="adaptive-thinking"),
        pytest.param({"temperature": 0.9}, {"max_temperature": 0.5}, id="temperature-above-max"),
    ],
)
async def test_requests_that_bypass_the_cache(
    fake: FakeProvider,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    embedder: object,
    extra: dict[str, Any],
    config: dict[str, Any],
) -> None:
    app, cache = build(fake, redis_url, redis_prefix, tmp_path, embedder, **config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        statuses = [
            (await post_messages(client, messages_body(QUESTION, **extra))).headers["x-aigw-cache"]
            for _ in range(2)
        ]
        disabled = messages_body(QUESTION, thinking={"type": "disabled"})
        cached = [(await post_messages(client, disabled)).headers["x-aigw-cache"] for _ in range(2)]
    assert statuses == ["bypass", "bypass"]
    assert cached == ["miss", "hit-exact"]  # thinking off is cached like any request
    assert len(fake.requests) == 3
    await cache.aclose()


@pytest.mark.parametrize(
    ("behaviour", "stream"),
    [
        pytest.param(FakeBehaviour(blocked=True), False, id="refusal"),
        pytest.param(FakeBehaviour(blocked=True), True, id="refusal-stream"),
        pytest.param(FakeBehaviour(stream_error_after=1), True, id="overloaded-mid-stream"),
        pytest.param(FakeBehaviour(cut_after=1), True, id="cut-stream"),
        pytest.param(FakeBehaviour(status=529), False, id="overloaded"),
    ],
)
async def test_answers_not_worth_replaying_are_not_stored(
    stack: httpx.AsyncClient, fake: FakeProvider, behaviour: FakeBehaviour, stream: bool
) -> None:
    fake.enqueue(behaviour)
    await post_messages(stack, messages_body(QUESTION, stream=stream))
    again = await post_messages(stack, messages_body(QUESTION))
    assert again.headers["x-aigw-cache"] == "miss"
    assert again.json()["content"] == [{"type": "text", "text": f"Echo: {QUESTION}"}]
    assert len(fake.requests) == 2


# -- errors in the client's dialect ---------------------------------------------------------------------


async def test_errors_of_the_cache_layer_are_anthropics(stack: httpx.AsyncClient, fake: FakeProvider) -> None:
    bad_ttl = await post_messages(stack, messages_body(QUESTION), **{"x-aigw-cache-ttl": "soon"})
    not_json = await stack.post(
        "/v1/messages", content=b"{not json", headers={"content-type": "application/json"}
    )
    for response in (bad_ttl, not_json):
        assert response.status_code == 400
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"]
    assert "x-aigw-cache-ttl" in bad_ttl.json()["error"]["message"]
    assert fake.requests == []


async def test_an_invalid_messages_body_goes_to_the_app_uncached(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": QUESTION}],
    }  # no max_tokens
    response = await post_messages(stack, body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "max_tokens: Field required"  # the provider's own 400
    assert "x-aigw-cache" not in response.headers
    assert len(fake.requests) == 1


# -- entries --------------------------------------------------------------------------------------------


def test_each_dialect_reads_only_its_own_entries() -> None:
    old_chat = orjson.dumps(
        {"v": 1, "model": "gpt-4o-mini", "content": "Paris.", "finish_reason": "stop", "created_at": 1.0}
    )
    message = CachedMessage(
        model="claude-sonnet-4-5",
        content=[{"type": "text", "text": "Paris."}],
        stop_reason="end_turn",
        usage={"input_tokens": 5, "output_tokens": 2},
    )
    chat_answer = CachedAnswer.from_bytes(old_chat)
    assert chat_answer is not None
    assert chat_answer.content == "Paris."
    assert CachedMessage.from_bytes(old_chat) is None
    assert CachedAnswer.from_bytes(message.to_bytes()) is None
    again = CachedMessage.from_bytes(message.to_bytes())
    assert again is not None
    assert again.content == message.content
    assert again.usage == message.usage


# -- the anthropic SDK on a real server -----------------------------------------------------------------


@pytest.fixture
def served(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object
) -> Iterator[str]:
    app, _ = build(fake, redis_url, redis_prefix, tmp_path, embedder, cache_tool_calls=True)
    server = ServerThread(app)  # its lifespan closes the cache's stores
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.mark.e2e
def test_anthropic_sdk_reads_replayed_streams_like_live_ones(served: str, fake: FakeProvider) -> None:
    client = anthropic.Anthropic(base_url=served, api_key="test-key-not-real", max_retries=0)

    def ask(question: str, **extra: Any) -> tuple[anthropic.types.Message, str, str]:
        with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=256,
            messages=[{"role": "user", "content": question}],
            **extra,
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
            return final, text, stream.response.headers["x-aigw-cache"]

    live, live_text, live_status = ask(QUESTION)
    exact, exact_text, exact_status = ask(QUESTION)
    semantic, semantic_text, semantic_status = ask(PARAPHRASE)
    assert [live_status, exact_status, semantic_status] == ["miss", "hit-exact", "hit-semantic"]
    assert live_text == exact_text == semantic_text == f"Echo: {QUESTION}"
    for replay in (exact, semantic):
        assert replay.content == live.content
        assert replay.stop_reason == live.stop_reason == "end_turn"
        assert replay.usage.input_tokens == live.usage.input_tokens > 0
        assert replay.usage.output_tokens == live.usage.output_tokens > 0
        assert replay.id != live.id
    tool_live, _, _ = ask("Where is the billing page?", tools=TOOLS)
    tool_hit, _, tool_status = ask("Where is the billing page?", tools=TOOLS)
    assert tool_status == "hit-exact"
    assert tool_hit.content == tool_live.content
    assert tool_hit.content[0].type == "tool_use"
    assert tool_hit.content[0].input == {"query": "Where is the billing page?"}
    assert len(fake.requests) == 2
    parsed = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
    )
    assert parsed.content[0].type == "text"
    assert parsed.content[0].text == live_text
    assert parsed.usage.output_tokens == live.usage.output_tokens
    assert len(fake.requests) == 2
    client.close()


async def test_a_body_over_the_limit_is_anthropics_413(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object
) -> None:
    app, cache = build(fake, redis_url, redis_prefix, tmp_path, embedder, max_body_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await post_messages(client, messages_body("x " * 1000))
    assert response.status_code == 413
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "request_too_large"
    assert fake.requests == []
    await cache.aclose()


async def test_count_tokens_is_not_cached(stack: httpx.AsyncClient, fake: FakeProvider) -> None:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": QUESTION}]}
    for _ in range(2):
        response = await stack.post("/v1/messages/count_tokens", json=body, headers=ANTHROPIC_VERSION)
        assert "x-aigw-cache" not in response.headers
    assert len(fake.requests) == 2
