"""The dialect seam: each wire format's errors, caps, usage and generated text."""

from __future__ import annotations

import orjson
import pytest

from asgi_aigw.kernel.context import Usage
from asgi_aigw.kernel.dialects import CHAT, MESSAGES, RESPONSES, dialect_for
from asgi_aigw.kernel.errors import GatewayError, InvalidRequest, RateLimited, UpstreamUnavailable
from asgi_aigw.kernel.routes import GENERATION_ROUTES, PROMPT_ROUTES, classify, is_generation


def _scope(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path}


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/ai/v1/messages", "messages"),
        ("/v1/messages/", "messages"),
        ("/ai/v1/messages/count_tokens", "count_tokens"),
        ("/ai/v1/chat/completions", "chat"),
        ("/ai/v1/responses", "responses"),
        ("/v1/responses/", "responses"),
        # a host app's own messages or responses route is not the gateway's
        ("/api/messages", None),
        ("/messages/count_tokens", None),
        ("/api/responses", None),
    ],
)
def test_classify_anthropic_and_responses_routes_only_under_v1(path: str, route: str | None) -> None:
    assert classify(_scope("POST", path)) == route


def test_responses_is_a_generation_and_prompt_route_spoken_in_its_dialect() -> None:
    assert is_generation("responses")
    assert "responses" in GENERATION_ROUTES
    assert "responses" in PROMPT_ROUTES
    assert dialect_for("responses") is RESPONSES
    # a GET of a stored response (OpenAI's retrieve) is not a generation
    assert classify(_scope("GET", "/v1/responses/resp_1")) is None


def test_each_dialect_names_its_usage_marks_and_whether_the_cap_is_required() -> None:
    # what budget and log readers decode a stream's events by: the chat usage chunk, Anthropic's
    # cumulative message_delta, the Responses final event's response
    assert (CHAT.usage_mark, CHAT.final_mark, CHAT.cap_required) == (
        b'"prompt_tokens"',
        b'"prompt_tokens"',
        False,
    )
    assert (MESSAGES.usage_mark, MESSAGES.final_mark, MESSAGES.cap_required) == (
        b'"usage"',
        b'"message_delta"',
        True,
    )
    assert (RESPONSES.usage_mark, RESPONSES.final_mark, RESPONSES.cap_required) == (
        b'"usage"',
        b'"usage"',
        False,
    )


def test_route_dialects() -> None:
    assert dialect_for("messages") is MESSAGES
    assert dialect_for("count_tokens") is MESSAGES
    assert dialect_for("chat") is CHAT
    assert dialect_for(None) is CHAT


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RateLimited("over"), "rate_limit_error"),
        (InvalidRequest("bad"), "invalid_request_error"),
        (UpstreamUnavailable("down"), "overloaded_error"),
        (GatewayError("boom"), "api_error"),
        (GatewayError("no", status=401), "authentication_error"),
        (GatewayError("gone", status=404), "not_found_error"),
        (GatewayError("slow", status=504), "timeout_error"),
        (GatewayError("huge", status=413), "request_too_large"),
    ],
)
def test_messages_errors_in_anthropic_shape(exc: GatewayError, kind: str) -> None:
    body = orjson.loads(MESSAGES.error_body(exc))
    assert body == {"type": "error", "error": {"type": kind, "message": exc.message}}
    event = MESSAGES.error_event(exc)
    assert event.startswith(b"event: error\ndata: ")
    assert event.endswith(b"\n\n")
    assert orjson.loads(event.split(b"data: ", 1)[1]) == body


def test_chat_errors_keep_openai_shape() -> None:
    exc = RateLimited("over")
    assert orjson.loads(CHAT.error_body(exc))["error"]["type"] == "rate_limit_error"
    assert orjson.loads(CHAT.error_body(exc))["error"]["code"] == "rate_limit_exceeded"


def test_caps() -> None:
    assert MESSAGES.client_cap({"max_tokens": 5}) == 5
    assert MESSAGES.client_cap({}) is None
    # the chat fields mean nothing to Anthropic
    assert MESSAGES.client_cap({"max_completion_tokens": 5}) is None
    for bad in (0, -1, True, 1.5, "7"):
        with pytest.raises(ValueError, match="max_tokens"):
            MESSAGES.client_cap({"max_tokens": bad})
    assert CHAT.client_cap({"max_completion_tokens": 7, "max_tokens": 9}) == 7
    assert MESSAGES.cap_field("o3") == "max_tokens"
    assert CHAT.cap_field("o3") == "max_completion_tokens"
    assert MESSAGES.choices({"n": 4}) == 1
    assert CHAT.choices({"n": 4}) == 4


def test_anthropic_usage_counts_cache_reads_and_writes_in_the_prompt() -> None:
    usage = MESSAGES.usage(
        {
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 1000,
                "output_tokens": 7,
            }
        }
    )
    assert usage == Usage(1110, 7, 1117, 100, cache_write_tokens=1000)
    assert usage is not None
    assert usage.to_anthropic() == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 100,
        "output_tokens": 7,
        # an answer that gave no split by lifetime: every write was a 5-minute one
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0},
    }
    assert MESSAGES.usage({"usage": {"input_tokens": "x"}}) is None


def test_anthropic_usage_keeps_one_hour_cache_writes_apart() -> None:
    figures = {
        "input_tokens": 10,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 1500,
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 7,
    }
    usage = MESSAGES.usage({"usage": figures})
    assert usage == Usage(1610, 7, 1617, 100, cache_write_tokens=1500, cache_write_1h_tokens=1000)
    assert usage is not None
    assert usage.to_anthropic() == figures
    # the split alone (no total beside it) still counts every write
    alone = {
        "input_tokens": 10,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 40},
    }
    assert Usage.from_anthropic(alone) == Usage(50, 0, 50, cache_write_tokens=40, cache_write_1h_tokens=40)
    # no write with no split
    assert Usage.from_anthropic({"input_tokens": 3, "output_tokens": 1}) == Usage(3, 1, 4)


def test_messages_answer_text() -> None:
    payload = {
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ]
    }
    assert MESSAGES.answer_text(payload) == 'hmmHellof{"a":1}'


def test_messages_stream_meter_merges_cumulative_usage() -> None:
    meter = MESSAGES.stream_meter()
    events = [
        {
            "type": "message_start",
            "message": {
                "model": "claude-x",
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a"'},
        },
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 12}},
    ]
    text = "".join(meter.feed(e["type"], e) for e in events)  # type: ignore[arg-type]
    assert text == 'Hif{}{"a"'
    assert meter.model == "claude-x"
    assert meter.usage == Usage(25, 12, 37, 5)


def test_chat_stream_meter() -> None:
    meter = CHAT.stream_meter()
    assert meter.feed(None, {"model": "m", "choices": [{"delta": {"content": "ab"}}]}) == "ab"
    meter.feed(None, {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    assert meter.usage == Usage(3, 4, 7)
    assert meter.model == "m"


def test_openai_chat_usage_keeps_cache_writes_apart() -> None:
    """OpenAI's chat usage reports prompt-cache writes in ``prompt_tokens_details`` (the SDK's
    ``PromptTokensDetails.cache_write_tokens``): read, so the budget prices them apart."""
    data = {
        "prompt_tokens": 1200,
        "completion_tokens": 30,
        "total_tokens": 1230,
        "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 900},
    }
    usage = CHAT.usage({"usage": data})
    assert usage == Usage(1200, 30, 1230, 200, cache_write_tokens=900)
    assert CHAT.usage({"usage": {**data, "prompt_tokens_details": None}}) == Usage(1200, 30, 1230)
