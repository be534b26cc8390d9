"""The Messages entry on its own: capture from JSON and events, replay read back by the anthropic SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from asgi_aigw.cache.replay_messages import CachedMessage, MessageAssembler

USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 40,
    "cache_read_input_tokens": 2000,
    "output_tokens": 31,
    "service_tier": "standard",
}
TWO_BLOCKS = CachedMessage(
    model="claude-sonnet-4-5",
    content=[
        {"type": "text", "text": "Let me look that up in the help pages for you, one moment please."},
        {
            "type": "tool_use",
            "id": "toolu_01",
            "name": "search_help",
            "input": {"query": "billing", "limit": 3},
        },
    ],
    stop_reason="tool_use",
    usage=USAGE,
)


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def assembled(events: list[bytes]) -> CachedMessage | None:
    assembler = MessageAssembler()
    for raw in events:
        assembler.feed(raw)
    return assembler.answer()


def sdk_client(body: bytes, content_type: str) -> anthropic.Anthropic:
    """The anthropic SDK reading ``body`` as the answer to any request."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})

    return anthropic.Anthropic(
        api_key="test-key-not-real",
        base_url="http://gateway.test",
        # this SDK sends through httpx2, whose clients it requires
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=0,
    )


ASK: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Where is billing?"}],
}


def test_the_sdk_reads_a_replayed_two_block_stream_as_the_stored_message() -> None:
    client = sdk_client(b"".join(TWO_BLOCKS.to_sse()), "text/event-stream")
    with client.messages.stream(**ASK) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[0].text == TWO_BLOCKS.content[0]["text"]  # type: ignore[union-attr]
    assert final.content[1].input == {"query": "billing", "limit": 3}  # type: ignore[union-attr]
    assert final.content[1].id == "toolu_01"  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 12
    assert final.usage.cache_read_input_tokens == 2000
    assert final.usage.cache_creation_input_tokens == 40
    assert final.usage.output_tokens == 31
    assert final.id.startswith("msg_")


def test_the_sdk_reads_a_replayed_json_message() -> None:
    client = sdk_client(TWO_BLOCKS.to_json(), "application/json")
    message = client.messages.create(**ASK)
    assert message.content[1].input == {"query": "billing", "limit": 3}  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 2000
    assert message.stop_reason == "tool_use"


def test_a_replayed_stream_assembles_back_into_the_entry() -> None:
    again = assembled(TWO_BLOCKS.to_sse())
    assert again is not None
    assert again.content == TWO_BLOCKS.content
    assert again.usage == USAGE
    assert again.stop_reason == "tool_use"
    payloads = [orjson.loads(raw.split(b"data: ", 1)[1]) for raw in TWO_BLOCKS.to_sse()]
    starts = [p for p in payloads if p["type"] == "content_block_start"]
    assert [p["index"] for p in starts] == [0, 1]
    assert len([p for p in payloads if p["type"] == "content_block_delta" and p["index"] == 0]) > 1  # pieces


def test_a_stop_sequence_is_kept_both_ways() -> None:
    body = orjson.dumps(
        {
            "id": "msg_x",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "1, 2, 3"}],
            "stop_reason": "stop_sequence",
            "stop_sequence": "4",
            "usage": {"input_tokens": 5, "output_tokens": 6},
        }
    )
    entry = CachedMessage.from_json(body)
    assert entry is not None
    stored = CachedMessage.from_bytes(entry.to_bytes())
    assert stored is not None
    assert orjson.loads(stored.to_json())["stop_sequence"] == "4"
    delta = next(p for p in map(_payload, stored.to_sse()) if p["type"] == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "4"}


def _payload(raw: bytes) -> dict[str, Any]:
    return dict(orjson.loads(raw.split(b"data: ", 1)[1]))


START = event(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
    },
)
TEXT_START = event(
    "content_block_start",
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
)
TEXT = event(
    "content_block_delta",
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
)
STOP_BLOCK = event("content_block_stop", {"type": "content_block_stop", "index": 0})
STOP = event("message_stop", {"type": "message_stop"})


def delta(output: int, **extra: Any) -> bytes:
    return event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output, **extra},
        },
    )


def test_usage_of_several_message_deltas_is_the_last_cumulative_figure() -> None:
    answer = assembled([START, TEXT_START, TEXT, STOP_BLOCK, delta(3), delta(7, input_tokens=10), STOP])
    assert answer is not None
    assert answer.usage == {"input_tokens": 10, "output_tokens": 7}
    assert answer.content == [{"type": "text", "text": "Hello"}]


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([START, TEXT_START, TEXT, STOP_BLOCK, delta(3)], id="no-message-stop"),
        pytest.param(
            [
                START,
                TEXT_START,
                TEXT,
                event("error", {"type": "error", "error": {"type": "overloaded_error"}}),
            ],
            id="error-event",
        ),
        pytest.param(
            [
                START,
                event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "thinking", "thinking": ""},
                    },
                ),
                STOP_BLOCK,
                delta(3),
                STOP,
            ],
            id="thinking-block",
        ),
        pytest.param(
            [
                START,
                TEXT_START,
                event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "citations_delta", "citation": {"type": "char_location"}},
                    },
                ),
                STOP_BLOCK,
                delta(3),
                STOP,
            ],
            id="citations",
        ),
        pytest.param(
            [START, TEXT_START, b"event: content_block_delta\ndata: {oops\n\n", delta(3), STOP], id="not-json"
        ),
    ],
)
def test_streams_not_replayable_are_not_assembled(events: list[bytes]) -> None:
    assert assembled(events) is None


def test_json_answers_with_blocks_not_replayed_are_not_captured() -> None:
    thinking = {"type": "thinking", "thinking": "Hmm.", "signature": "sig"}
    cited = {"type": "text", "text": "Paris.", "citations": [{"type": "char_location"}]}
    for block in (thinking, cited):
        body = {
            "id": "msg_x",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [block, {"type": "text", "text": "Paris."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 6},
        }
        assert CachedMessage.from_json(orjson.dumps(body)) is None
    assert (
        CachedMessage.from_json(orjson.dumps({**body, "content": [{"type": "text", "text": "Paris."}]}))
        is not None
    )


def test_a_hit_s_usage_is_its_own_copy_of_the_stored_figures() -> None:
    """Every hit of an entry gets the same figures in an object of its own (the entry reads them once),
    and a usage stored later is read again."""
    from asgi_aigw.kernel.context import Usage

    entry = CachedMessage.from_bytes(TWO_BLOCKS.to_bytes())
    assert entry is not None
    first, second = entry.replay_usage(), entry.replay_usage()
    assert first == second == Usage.from_anthropic(USAGE)
    assert first is not second
    entry.usage = {"input_tokens": 5, "output_tokens": 1}
    assert entry.replay_usage() == Usage(5, 1, 6)
