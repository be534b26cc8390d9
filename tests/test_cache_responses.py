"""SemanticCacheMiddleware on OpenAI Responses requests: real Redis, the runtime's embedder, Qdrant Edge,
FakeProvider answering ``/v1/responses`` in OpenAI's format (it counts its calls: a hit never reaches it),
and the official ``openai`` SDK parsing replayed streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.keys import CacheKeys, cache_keys
from asgi_aigw.cache.replay_responses import CachedResponse, ResponseAssembler
from asgi_aigw.kernel.context import RequestContext, ensure_context
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .cache_support import (
    PARAPHRASE,
    QUESTION,
    WHO,
    WhoAnswered,
    cache_stack,
    chat,
    edge_cache,
    messages_body,
    post,
    post_messages,
)
from .support import sse_payloads

embedder_module = pytest.importorskip("asgi_aigw.runtime.embedder")

TOOLS = [{"type": "function", "name": "search_help", "parameters": {"type": "object", "properties": {}}}]
MESSAGE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
MESSAGE_TAIL = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def embedder() -> object:
    return embedder_module.get_embedder()


def build(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object, **config: Any
) -> tuple[Any, SemanticCacheMiddleware]:
    """TenantFromHeader -> SemanticCacheMiddleware (Redis, Qdrant Edge) -> WhoAnswered -> FakeProvider."""
    return edge_cache(
        WhoAnswered(fake, provider="openai", deployment="gpt-primary"),
        redis_url,
        redis_prefix,
        tmp_path,
        embedder,
        **config,
    )


@pytest.fixture
async def app(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object
) -> AsyncIterator[Any]:
    app, cache = build(fake, redis_url, redis_prefix, tmp_path, embedder, cache_tool_calls=True)
    yield app
    await cache.purge()
    await cache.aclose()


@pytest.fixture
async def stack(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://testserver"
    ) as client:
        yield client


def body(question: str | list[Any] = QUESTION, **extra: Any) -> dict[str, Any]:
    """A Responses request the cache may answer (``store: false``, see docs/cache.md)."""
    return {"model": "gpt-5-mini", "input": question, "store": False, **extra}


async def ask(client: httpx.AsyncClient, request: dict[str, Any], **headers: str) -> httpx.Response:
    response = await client.post("/v1/responses", json=request, headers=headers)
    assert response.status_code == 200, response.text
    return response


def events(response: httpx.Response) -> list[str]:
    return [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]


def final_response(response: httpx.Response) -> dict[str, Any]:
    """The ``response`` object of a JSON answer, or of a stream's final event."""
    if response.headers["content-type"].startswith("text/event-stream"):
        last = sse_payloads(response.text)[-1]
        assert last["type"] in ("response.completed", "response.incomplete")
        result: dict[str, Any] = last["response"]
        return result
    result = response.json()
    return result


def without_ids(response: dict[str, Any]) -> dict[str, Any]:
    """A response without what every live answer has fresh: ids and times."""
    drop = ("id", "created_at", "completed_at")
    out = {k: v for k, v in response.items() if k not in drop}
    out["output"] = [{k: v for k, v in item.items() if k != "id"} for item in response["output"]]
    return out


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part["text"] for item in response["output"] if item["type"] == "message" for part in item["content"]
    )


# -- exact hits, each form stored and replayed either way ------------------------------------------------


@pytest.mark.parametrize("stored_stream", [False, True], ids=["stored-json", "stored-stream"])
@pytest.mark.parametrize("asked_stream", [False, True], ids=["asked-json", "asked-stream"])
async def test_repeat_is_an_exact_hit_in_the_form_asked(
    stack: httpx.AsyncClient, fake: FakeProvider, stored_stream: bool, asked_stream: bool
) -> None:
    miss = await ask(stack, body(stream=stored_stream))
    hit = await ask(stack, body(stream=asked_stream))
    assert miss.headers["x-aigw-cache"] == "miss"
    assert hit.headers["x-aigw-cache"] == "hit-exact"
    assert len(fake.requests) == 1  # the repeat never reached the provider
    stored, replayed = final_response(miss), final_response(hit)
    assert without_ids(replayed) == without_ids(stored)
    assert text_of(replayed) == f"Echo: {QUESTION}"
    assert replayed["usage"] == stored["usage"]
    assert replayed["usage"]["output_tokens"] > 0
    # fresh ids, as a live answer has
    assert replayed["id"].startswith("resp_")
    assert replayed["id"] != stored["id"]
    assert replayed["output"][0]["id"].startswith("msg_")
    assert replayed["output"][0]["id"] != stored["output"][0]["id"]
    # who answered, as the miss said; the provider's own request id is not replayed
    assert [hit.headers[h] for h in WHO] == [miss.headers[h] for h in WHO]
    assert "x-request-id" in miss.headers or stored_stream  # the fake sends it with JSON answers
    assert "x-request-id" not in hit.headers
    if asked_stream:
        assert hit.headers["content-type"].startswith("text/event-stream")
        assert events(hit)[:4] == MESSAGE_EVENTS
        assert events(hit)[-4:] == MESSAGE_TAIL
    else:
        assert hit.headers["content-type"] == "application/json"


async def test_replayed_stream_is_the_documented_event_sequence(stack: httpx.AsyncClient) -> None:
    long_question = " ".join([QUESTION] * 6)  # several delta pieces
    await ask(stack, body(long_question))
    hit = await ask(stack, body(long_question, stream=True))
    payloads = sse_payloads(hit.text)
    names = events(hit)
    assert [p["type"] for p in payloads] == names  # each event's name is its payload's type
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert names[:4] == MESSAGE_EVENTS
    assert names[-4:] == MESSAGE_TAIL
    deltas = payloads[4:-4]
    assert len(deltas) > 1
    assert {p["type"] for p in deltas} == {"response.output_text.delta"}
    final = payloads[-1]["response"]
    item_id = final["output"][0]["id"]
    assert all(p["item_id"] == item_id for p in payloads[2:-1] if "item_id" in p)
    assert "".join(p["delta"] for p in deltas) == text_of(final) == f"Echo: {long_question}"
    started = payloads[0]["response"]
    assert started["status"] == "in_progress"
    assert started["output"] == []
    assert started["usage"] is None
    assert started["id"] == final["id"]
    assert payloads[2]["item"] == {**final["output"][0], "status": "in_progress", "content": []}
    assert payloads[3]["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert payloads[-2]["item"] == final["output"][0]


@pytest.mark.parametrize("stored_stream", [False, True], ids=["stored-json", "stored-stream"])
async def test_function_call_replays_as_argument_deltas(
    stack: httpx.AsyncClient, fake: FakeProvider, stored_stream: bool
) -> None:
    miss = await ask(stack, body(tools=TOOLS, stream=stored_stream))
    stream_hit = await ask(stack, body(tools=TOOLS, stream=True))
    json_hit = await ask(stack, body(tools=TOOLS))
    assert [stream_hit.headers["x-aigw-cache"], json_hit.headers["x-aigw-cache"]] == ["hit-exact"] * 2
    assert len(fake.requests) == 1
    names = events(stream_hit)
    assert names[2] == "response.output_item.added"
    assert set(names[3:-3]) == {"response.function_call_arguments.delta"}
    assert names[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    payloads = sse_payloads(stream_hit.text)
    assert payloads[2]["item"]["arguments"] == ""
    call = final_response(miss)["output"][0]
    assert "".join(p["delta"] for p in payloads[3:-3]) == payloads[-3]["arguments"] == call["arguments"]
    for hit in (stream_hit, json_hit):
        replayed = final_response(hit)["output"][0]
        assert replayed["type"] == "function_call"
        assert replayed["id"].startswith("fc_")
        # the call id is kept: the client's function_call_output names it
        assert replayed["call_id"] == call["call_id"]
        assert without_ids(final_response(hit)) == without_ids(final_response(miss))


async def test_function_calls_are_not_stored_unless_configured(
    fake: FakeProvider, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object
) -> None:
    app, cache = build(fake, redis_url, redis_prefix, tmp_path, embedder)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        statuses = [(await ask(client, body(tools=TOOLS))).headers["x-aigw-cache"] for _ in range(2)]
    assert statuses == ["miss", "miss"]
    assert len(fake.requests) == 2
    await cache.aclose()


async def test_answer_cut_at_max_output_tokens_replays_as_incomplete(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    long_question = " ".join([QUESTION] * 20)
    miss = await ask(stack, body(long_question, max_output_tokens=16, stream=True))
    hit = await ask(stack, body(long_question, max_output_tokens=16, stream=True))
    assert hit.headers["x-aigw-cache"] == "hit-exact"
    assert events(miss)[-1] == events(hit)[-1] == "response.incomplete"
    assert final_response(hit)["incomplete_details"] == {"reason": "max_output_tokens"}
    assert len(fake.requests) == 1


# -- semantic layer -------------------------------------------------------------------------------------


async def test_paraphrase_is_a_semantic_hit_and_a_swapped_question_a_miss(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    await ask(stack, body(QUESTION, stream=True))
    hit = await ask(stack, body(PARAPHRASE))
    assert hit.headers["x-aigw-cache"] == "hit-semantic"
    assert float(hit.headers["x-aigw-cache-score"]) >= 0.8
    assert text_of(hit.json()) == f"Echo: {QUESTION}"
    assert len(fake.requests) == 1

    await ask(stack, body("Convert 10 miles to kilometers"))
    swapped = await ask(stack, body("Convert 10 kilometers to miles", stream=True))
    assert swapped.headers["x-aigw-cache"] == "miss"
    assert text_of(final_response(swapped)) == "Echo: Convert 10 kilometers to miles"
    assert len(fake.requests) == 3


async def test_instructions_and_earlier_items_are_the_scope(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    earlier = [
        {"role": "user", "content": "I use git on Linux."},
        {"role": "assistant", "content": "Noted."},
    ]
    await ask(stack, body([*earlier, {"role": "user", "content": QUESTION}], instructions="Be terse."))
    same_scope = await ask(
        stack, body([*earlier, {"role": "user", "content": PARAPHRASE}], instructions="Be terse.")
    )
    other_instructions = await ask(
        stack, body([*earlier, {"role": "user", "content": PARAPHRASE}], instructions="Be chatty.")
    )
    other_turns = await ask(stack, body([earlier[0], {"role": "user", "content": PARAPHRASE}]))
    assert same_scope.headers["x-aigw-cache"] == "hit-semantic"
    assert other_instructions.headers["x-aigw-cache"] == "miss"
    assert other_turns.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 3


# -- isolation ------------------------------------------------------------------------------------------


async def test_responses_chat_and_messages_never_share_an_entry(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    chat_miss = await post(stack, chat(QUESTION, model="gpt-5-mini"))
    messages_miss = await post_messages(stack, messages_body(QUESTION, model="gpt-5-mini"))
    exact = await ask(stack, body(QUESTION))
    semantic = await ask(stack, body(PARAPHRASE))
    assert [r.headers["x-aigw-cache"] for r in (chat_miss, messages_miss, exact)] == ["miss"] * 3
    assert exact.json()["object"] == "response"
    # the Responses paraphrase finds the Responses entry, not chat's nor Messages'
    assert semantic.headers["x-aigw-cache"] == "hit-semantic"
    assert semantic.json()["object"] == "response"
    chat_paraphrase = await post(stack, chat(PARAPHRASE, model="gpt-5-mini"))
    assert chat_paraphrase.headers["x-aigw-cache"] == "hit-semantic"
    assert chat_paraphrase.json()["object"] == "chat.completion"
    assert len(fake.requests) == 3


def test_the_dialect_is_part_of_both_keys() -> None:
    chat_keys = CacheKeys(
        "t", {"model": "m", "messages": [{"role": "user", "content": QUESTION}]}, max_question_chars=2000
    )
    responses_keys = cache_keys(
        {"model": "m", "input": [{"role": "user", "content": QUESTION}]},
        "t",
        max_question_chars=2000,
        dialect="responses",
    )
    assert chat_keys.exact != responses_keys.exact
    assert chat_keys.scope != responses_keys.scope
    assert chat_keys.question == responses_keys.question == QUESTION


async def test_tenants_never_share_an_entry(stack: httpx.AsyncClient, fake: FakeProvider) -> None:
    await ask(stack, body(QUESTION), **{"x-tenant": "acme"})
    other_exact = await ask(stack, body(QUESTION), **{"x-tenant": "globex"})
    other_semantic = await ask(stack, body(PARAPHRASE, stream=True), **{"x-tenant": "initech"})
    own = await ask(stack, body(PARAPHRASE), **{"x-tenant": "acme"})
    assert other_exact.headers["x-aigw-cache"] == "miss"
    assert other_semantic.headers["x-aigw-cache"] == "miss"
    assert own.headers["x-aigw-cache"] == "hit-semantic"
    assert len(fake.requests) == 3


# -- what is part of the key, what bypasses -------------------------------------------------------------

FORMAT = {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}}
LONG_FORM = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        pytest.param({}, {"input": [{"role": "user", "content": QUESTION}]}, "hit-exact", id="input-as-item"),
        pytest.param({}, {"input": LONG_FORM}, "hit-exact", id="input-long-form"),
        pytest.param({"metadata": {"a": "1"}}, {"metadata": {"a": "2"}}, "hit-exact", id="metadata"),
        pytest.param({"user": "user-1"}, {"user": "user-2"}, "hit-exact", id="user"),
        pytest.param({}, {"safety_identifier": "s-2"}, "hit-exact", id="safety-identifier"),
        pytest.param(
            {"prompt_cache_key": "k1"}, {"prompt_cache_key": "k2"}, "hit-exact", id="prompt-cache-key"
        ),
        pytest.param({}, {"background": False}, "hit-exact", id="background-false"),
        pytest.param({}, {"instructions": "Be terse."}, "miss", id="instructions"),
        pytest.param({}, {"tools": TOOLS, "tool_choice": "none"}, "miss", id="tools"),
        pytest.param(
            {"tools": TOOLS, "tool_choice": "none"},
            {"tools": TOOLS, "tool_choice": "auto"},
            "miss",
            id="tool-choice",
        ),
        pytest.param({}, {"text": FORMAT}, "miss", id="text-format"),
        pytest.param({}, {"reasoning": {"effort": "low"}}, "miss", id="reasoning-effort"),
        pytest.param({}, {"temperature": 0.3}, "miss", id="temperature"),
        pytest.param({}, {"max_output_tokens": 64}, "miss", id="max-output-tokens"),
        pytest.param({}, {"model": "gpt-5"}, "miss", id="model"),
    ],
)
async def test_what_splits_the_key(
    stack: httpx.AsyncClient, fake: FakeProvider, first: dict[str, Any], second: dict[str, Any], status: str
) -> None:
    stored = await ask(stack, body(**first))
    asked = await ask(stack, {**body(), **second})
    assert stored.headers["x-aigw-cache"] == "miss"
    assert asked.headers["x-aigw-cache"] == status
    assert len(fake.requests) == (1 if status.startswith("hit") else 2)


async def test_a_hit_echoes_the_asking_requests_metadata_and_user(stack: httpx.AsyncClient) -> None:
    await ask(stack, body(metadata={"run": "first"}, user="user-1", stream=True))
    json_hit = await ask(stack, body(metadata={"run": "second"}, user="user-2"))
    stream_hit = await ask(stack, body(stream=True))
    assert json_hit.headers["x-aigw-cache"] == stream_hit.headers["x-aigw-cache"] == "hit-exact"
    assert (json_hit.json()["metadata"], json_hit.json()["user"]) == ({"run": "second"}, "user-2")
    streamed = sse_payloads(stream_hit.text)
    assert (streamed[0]["response"]["metadata"], streamed[0]["response"]["user"]) == ({}, None)
    assert (streamed[-1]["response"]["metadata"], streamed[-1]["response"]["user"]) == ({}, None)


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        pytest.param({"store": None}, {}, id="store-omitted"),
        pytest.param({"store": True}, {}, id="store-true"),
        pytest.param({"previous_response_id": "resp_abc"}, {}, id="previous-response-id"),
        pytest.param({"conversation": "conv_abc"}, {}, id="conversation"),
        pytest.param({"background": True}, {}, id="background"),
        pytest.param({"top_logprobs": 2}, {}, id="top-logprobs"),
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
    request = {k: v for k, v in {**body(), **extra}.items() if v is not None}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        statuses = [
            (await client.post("/v1/responses", json=request)).headers["x-aigw-cache"] for _ in range(2)
        ]
        cached = [(await ask(client, body())).headers["x-aigw-cache"] for _ in range(2)]
    assert statuses == ["bypass", "bypass"]
    assert cached == ["miss", "hit-exact"]  # the same question with store: false is cached
    assert len(fake.requests) == 3
    await cache.aclose()


async def test_a_body_the_cache_cannot_read_is_left_to_the_app(
    stack: httpx.AsyncClient, fake: FakeProvider
) -> None:
    response = await stack.post(
        "/v1/responses", json={"model": "gpt-5-mini", "input": QUESTION, "stream": "yes"}
    )
    assert "x-aigw-cache" not in response.headers
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("behaviour", "stream"),
    [
        pytest.param(FakeBehaviour(stream_error_after=1), True, id="error-mid-stream"),
        pytest.param(FakeBehaviour(cut_after=1), True, id="cut-stream"),
        pytest.param(FakeBehaviour(malformed=True), True, id="malformed-stream"),
        pytest.param(FakeBehaviour(status=500), False, id="server-error"),
    ],
)
async def test_answers_not_worth_replaying_are_not_stored(
    stack: httpx.AsyncClient, fake: FakeProvider, behaviour: FakeBehaviour, stream: bool
) -> None:
    fake.enqueue(behaviour)
    await stack.post("/v1/responses", json=body(stream=stream))
    again = await ask(stack, body())
    assert again.headers["x-aigw-cache"] == "miss"
    assert text_of(again.json()) == f"Echo: {QUESTION}"
    assert len(fake.requests) == 2


# -- what an entry keeps --------------------------------------------------------------------------------


def _response_with(item: dict[str, Any], status: str = "completed") -> bytes:
    return orjson.dumps(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": status,
            "model": "gpt-5-mini",
            "output": [item],
            "incomplete_details": None,
            "usage": None,
        }
    )


TEXT = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
}


@pytest.mark.parametrize(
    ("item", "status", "stored"),
    [
        pytest.param(TEXT, "completed", True, id="text"),
        pytest.param(
            {"type": "reasoning", "id": "rs_1", "summary": []}, "completed", True, id="bare-reasoning"
        ),
        pytest.param(
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            "completed",
            False,
            id="encrypted-reasoning",
        ),
        pytest.param(
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I think"}]},
            "completed",
            False,
            id="reasoning-summary",
        ),
        pytest.param(
            {
                **TEXT,
                "content": [{"type": "output_text", "text": "hi", "annotations": [{"type": "url_citation"}]}],
            },
            "completed",
            False,
            id="annotations",
        ),
        pytest.param(
            {**TEXT, "content": [{"type": "output_text", "text": "hi", "logprobs": [{"token": "hi"}]}]},
            "completed",
            False,
            id="logprobs",
        ),
        pytest.param(
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            "completed",
            False,
            id="web-search",
        ),
        pytest.param(TEXT, "failed", False, id="failed"),
    ],
)
def test_which_answers_are_stored(item: dict[str, Any], status: str, stored: bool) -> None:
    entry = CachedResponse.from_json(_response_with(item, status))
    assert (entry is not None) is stored
    if entry is not None:
        again = CachedResponse.from_bytes(entry.to_bytes())
        assert again is not None
        assert again.response == entry.response
        assert "id" not in entry.response["output"][0]


def test_a_bare_reasoning_item_replays_with_a_fresh_id_in_both_forms() -> None:
    entry = CachedResponse.from_json(_response_with({"type": "reasoning", "id": "rs_1", "summary": []}))
    assert entry is not None
    item = orjson.loads(entry.to_json())["output"][0]
    assert item["type"] == "reasoning"
    assert item["id"].startswith("rs_")
    assert item["id"] != "rs_1"
    payloads = [orjson.loads(raw.split(b"data: ", 1)[1]) for raw in entry.to_sse()]
    assert [p["type"] for p in payloads] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]


def test_an_entry_of_another_dialect_is_not_read() -> None:
    entry = CachedResponse.from_json(_response_with(TEXT))
    assert entry is not None
    raw = entry.to_bytes().replace(b'"dialect":"responses"', b'"dialect":"messages"')
    assert CachedResponse.from_bytes(raw) is None


def test_the_assembler_keeps_nothing_from_a_failed_stream() -> None:
    failed = _response_with(TEXT, "failed").decode()
    assembler = ResponseAssembler()
    assembler.feed(
        b'event: response.failed\ndata: {"type":"response.failed","response":' + failed.encode() + b"}"
    )
    assert assembler.answer() is None


# -- the openai SDK -------------------------------------------------------------------------------------


@pytest.fixture
async def sdk(app: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx.AsyncClient(transport=StreamingASGITransport(app))
    yield openai.AsyncOpenAI(base_url="http://testserver/v1", api_key="test-key-not-real", http_client=http)
    await http.aclose()


@pytest.mark.parametrize("tools", [False, True], ids=["text", "function-call"])
async def test_the_openai_sdk_parses_a_replayed_stream(
    sdk: openai.AsyncOpenAI, fake: FakeProvider, tools: bool
) -> None:
    extra: dict[str, Any] = {"tools": TOOLS} if tools else {}
    stored = await sdk.responses.create(model="gpt-5-mini", input=QUESTION, store=False, **extra)
    created = await sdk.responses.create(
        model="gpt-5-mini", input=QUESTION, store=False, stream=True, **extra
    )
    kinds = [event.type async for event in created]
    async with sdk.responses.stream(model="gpt-5-mini", input=PARAPHRASE, store=False, **extra) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert len(fake.requests) == 1  # both streams were replayed
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final.id != stored.id
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.output_tokens == stored.usage.output_tokens
    if tools:
        call = final.output[0]
        assert call.type == "function_call"
        assert call.call_id == stored.output[0].call_id
        assert call.arguments == stored.output[0].arguments  # type: ignore[union-attr]
    else:
        assert final.output_text == stored.output_text == f"Echo: {QUESTION}"


async def test_the_openai_sdk_raw_response_says_hit(sdk: openai.AsyncOpenAI) -> None:
    await sdk.responses.create(model="gpt-5-mini", input=QUESTION, store=False)
    raw = await sdk.responses.with_raw_response.create(model="gpt-5-mini", input=QUESTION, store=False)
    assert raw.headers["x-aigw-cache"] == "hit-exact"
    assert raw.parse().output_text == f"Echo: {QUESTION}"


# -- the request context, and the router in front of the provider ---------------------------------------


class Contexts:
    """Keeps the request context of every request through ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[RequestContext] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope, ctx = ensure_context(scope)
            self.seen.append(ctx)
        await self.app(scope, receive, send)


@pytest.mark.parametrize("stored_stream", [False, True], ids=["stored-json", "stored-stream"])
async def test_a_hit_reports_the_stored_usage_and_model_in_the_context(app: Any, stored_stream: bool) -> None:
    contexts = Contexts(app)
    async with httpx.AsyncClient(transport=StreamingASGITransport(contexts), base_url="http://t") as client:
        miss = await ask(client, body(stream=stored_stream))
        hit = await ask(client, body(stream=not stored_stream))
    usage = final_response(miss)["usage"]
    ctx = contexts.seen[-1]
    assert hit.headers["x-aigw-cache"] == ctx.cache_status == "hit-exact"
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert ctx.usage.completion_tokens > 0
    assert ctx.upstream_model == final_response(miss)["model"]
    assert ctx.status == 200


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_translated_answer_through_the_router_is_cached(fake: FakeProvider, stream: bool) -> None:
    app, cache = cache_stack(fake)
    async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://t") as client:
        miss = await ask(client, body(model="gpt-4o-mini", stream=stream))
        hit = await ask(client, body(model="gpt-4o-mini", stream=not stream))
    assert [miss.headers["x-aigw-cache"], hit.headers["x-aigw-cache"]] == ["miss", "hit-exact"]
    assert len(fake.requests) == 1
    assert fake.requests[0].path.endswith("/chat/completions")  # translated, then cached as Responses
    assert text_of(final_response(hit)) == text_of(final_response(miss))
    assert [hit.headers[h] for h in WHO] == [miss.headers[h] for h in WHO]
    await cache.aclose()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_bad_ttl_header_is_a_400_in_openais_shape(
    stack: httpx.AsyncClient, fake: FakeProvider, stream: bool
) -> None:
    response = await stack.post(
        "/v1/responses", json=body(stream=stream), headers={"x-aigw-cache-ttl": "soon"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "x-aigw-cache-ttl"
    assert fake.requests == []


def test_a_hit_s_usage_is_its_own_copy_of_the_stored_figures() -> None:
    """Every hit of an entry gets the same figures in an object of its own (the entry reads them once),
    and a usage stored later is read again."""
    from asgi_aigw.kernel.context import Usage

    entry = CachedResponse.from_json(_response_with(TEXT))
    assert entry is not None
    assert entry.replay_usage() is None  # none stored
    entry.fill_usage(Usage(7, 3, 10))
    first, second = entry.replay_usage(), entry.replay_usage()
    assert first == second
    assert (first.prompt_tokens, first.completion_tokens) == (7, 3)  # type: ignore[union-attr]
    assert first is not second
