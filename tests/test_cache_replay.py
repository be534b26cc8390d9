"""A hit looks like the miss that stored it: the same headers (but the cache's) and the same fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.entry import CachedAnswer, StreamAssembler
from asgi_aigw.testing import FakeProvider

from .cache_support import cache_stack, chat, post
from .support import sse_payloads

WHO = ("x-aigw-provider", "x-aigw-model", "x-aigw-deployment")


@pytest.fixture
async def stack() -> AsyncIterator[tuple[httpx.AsyncClient, SemanticCacheMiddleware, FakeProvider]]:
    fake = FakeProvider()
    app, cache = cache_stack(fake)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        yield client, cache, fake
    await cache.aclose()


def _shape(value: Any) -> Any:
    """The keys of a JSON value at every level, with the values that say who answered and how."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in ("id", "created")}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


@pytest.mark.parametrize("second", ["How do I reset my password?", "How can I reset my password, please?"])
async def test_a_json_hit_has_the_headers_and_fields_of_its_miss(stack: Any, second: str) -> None:
    client, _, fake = stack
    miss = await post(client, chat("How do I reset my password?"))
    hit = await post(client, chat(second))
    assert miss.headers["x-aigw-cache"] == "miss"
    assert hit.headers["x-aigw-cache"].startswith("hit-")
    assert len(fake.requests) == 1
    for name in WHO:
        assert miss.headers[name], name  # the router said who answered ...
        assert hit.headers.get(name) == miss.headers[name], name  # ... and the hit says it again
    body_miss, body_hit = miss.json(), hit.json()
    assert body_miss["service_tier"] == "default"
    assert body_miss["choices"][0]["message"]["annotations"] == []
    assert _shape(body_hit) == _shape(body_miss)


async def test_a_streamed_hit_has_the_headers_and_fields_of_its_miss(stack: Any) -> None:
    client, _, fake = stack
    body = chat("What is the capital of France?", stream=True, stream_options={"include_usage": True})
    miss = await post(client, body)
    hit = await post(client, body)
    assert (miss.headers["x-aigw-cache"], hit.headers["x-aigw-cache"]) == ("miss", "hit-exact")
    assert len(fake.requests) == 1
    for name in WHO:
        assert miss.headers[name], name
        assert hit.headers.get(name) == miss.headers[name], name
    live = [p for p in sse_payloads(miss.text) if p != "[DONE]"]
    replayed = [p for p in sse_payloads(hit.text) if p != "[DONE]"]
    assert {c.get("service_tier") for c in live} == {"default"}
    assert {c.get("service_tier") for c in replayed} == {"default"}
    assert {c["model"] for c in replayed} == {c["model"] for c in live}


def test_annotations_survive_storage_and_replay_as_json_and_stream() -> None:
    citation = {"type": "url_citation", "url_citation": {"url": "https://example.org", "title": "t"}}
    body = {
        "object": "chat.completion",
        "model": "m",
        "service_tier": "flex",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi", "annotations": [citation]},
            }
        ],
    }
    answer = CachedAnswer.from_json(orjson.dumps(body))
    assert answer is not None
    answer.keep_headers([(b"x-aigw-provider", b"openai"), (b"content-type", b"application/json")])
    stored = CachedAnswer.from_bytes(answer.to_bytes())
    assert stored is not None
    assert stored.replayed_headers() == [(b"x-aigw-provider", b"openai")]
    replay = orjson.loads(stored.to_json())
    assert replay["service_tier"] == "flex"
    assert replay["choices"][0]["message"]["annotations"] == [citation]
    # a stream of it, read back, gives the same answer
    assembler = StreamAssembler()
    for event in stored.to_sse(include_usage=False):
        assembler.feed(event)
    again = assembler.answer()
    assert again is not None
    assert (again.annotations, again.service_tier, again.content) == ([citation], "flex", "hi")


def test_a_json_replay_is_the_whole_answer_serialised_with_a_fresh_id_and_time() -> None:
    answer = CachedAnswer(
        model="m",
        content="café <b>",
        finish_reason="stop",
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        service_tier="flex",
        headers=[("x-aigw-provider", "openai")],
    )
    raw = answer.to_json()
    first, second = orjson.loads(raw), orjson.loads(answer.to_json())
    assert first["id"] != second["id"]
    for replay in (first, second):
        assert replay["id"].startswith("chatcmpl-")
        assert len(replay["id"]) == len("chatcmpl-") + 32
        int(replay["id"].removeprefix("chatcmpl-"), 16)
    # byte for byte what serialising the whole object gives (key order included)
    expected = {
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "café <b>", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": answer.usage,
        "system_fingerprint": None,
        "service_tier": "flex",
    }
    assert raw == orjson.dumps(expected)


def test_a_replay_follows_fields_assigned_after_an_earlier_replay() -> None:
    answer = CachedAnswer(model="m", content="first", finish_reason="stop", headers=[("x-aigw-model", "a")])
    assert orjson.loads(answer.to_json())["choices"][0]["message"]["content"] == "first"
    assert answer.replayed_headers() == [(b"x-aigw-model", b"a")]
    answer.content = "second"
    answer.usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    answer.keep_headers([(b"x-aigw-model", b"b")])
    replay = orjson.loads(answer.to_json())
    assert replay["choices"][0]["message"]["content"] == "second"
    assert replay["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert answer.replayed_headers() == [(b"x-aigw-model", b"b")]
    # the list handed out is the caller's own: changing it changes no later replay
    answer.replayed_headers().append((b"x-other", b"1"))
    assert answer.replayed_headers() == [(b"x-aigw-model", b"b")]


def test_a_hit_s_usage_is_read_once_per_entry_and_each_hit_gets_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Entries are shared by every hit: the stored usage is read once, and each hit gets a copy, so a
    layer that changes its own (the log marks an estimate) changes no other hit's; a new usage is read."""
    from asgi_aigw.kernel.context import Usage

    reads: list[object] = []
    real = Usage.from_openai
    monkeypatch.setattr(Usage, "from_openai", classmethod(lambda cls, data: reads.append(data) or real(data)))
    answer = CachedAnswer(
        model="m",
        content="hi",
        finish_reason="stop",
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )
    first = answer.replay_usage()
    assert first == Usage(3, 2, 5)
    first.estimated = True
    second = answer.replay_usage()
    assert second == Usage(3, 2, 5)
    assert second is not first
    assert len(reads) == 1
    answer.usage = {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}
    assert answer.replay_usage() == Usage(4, 1, 5)
    assert len(reads) == 2
    answer.usage = None
    assert answer.replay_usage() is None


def test_a_usage_copy_has_every_figure() -> None:
    """Every field, so that a field added later is copied too (or this test says so)."""
    import dataclasses

    from asgi_aigw.kernel.context import Usage

    values = {
        f.name: (True if f.type in (bool, "bool") else index + 1)
        for index, f in enumerate(dataclasses.fields(Usage))
    }
    usage = Usage(**values)
    copied = usage.copy()
    assert copied == usage
    assert copied is not usage
    assert {f.name: getattr(copied, f.name) for f in dataclasses.fields(Usage)} == values
