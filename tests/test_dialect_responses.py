"""The Responses dialect: OpenAI's errors, the Responses ``error`` event, ``max_output_tokens``, usage
from the Responses usage object, generated text from output items and from the typed stream events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.responses import Response, ResponseErrorEvent

from asgi_aigw.kernel.context import Usage
from asgi_aigw.kernel.dialects import DIALECTS, Dialect, dialect_for
from asgi_aigw.kernel.dialects.responses import RESPONSES
from asgi_aigw.kernel.errors import InvalidRequest, RateLimited, UpstreamError

USAGE = {
    "input_tokens": 120,
    "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 15},
    "output_tokens": 40,
    "output_tokens_details": {"reasoning_tokens": 25},
    "total_tokens": 160,
}

OUTPUT: list[dict[str, Any]] = [
    {
        "id": "msg_1",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "Hello ", "annotations": []},
            {"type": "refusal", "refusal": "I cannot."},
        ],
    },
    {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"query":"cats"}',
    },
    # reasoning summaries are not answer text
    {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
]


def test_it_satisfies_the_dialect_protocol_and_is_registered_for_its_route() -> None:
    dialect: Dialect = RESPONSES
    assert dialect.name == "responses"
    assert DIALECTS["responses"] is RESPONSES
    assert dialect_for("responses") is RESPONSES
    # a layer reading a stream decodes the events holding "usage"; only the final one has figures
    assert dialect.usage_mark == b'"usage"'
    assert not dialect.cap_required


def test_errors_are_openai_error_objects() -> None:
    exc = RateLimited("Budget exceeded.", param="model")
    assert orjson.loads(RESPONSES.error_body(exc)) == {
        "error": {
            "message": "Budget exceeded.",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "param": "model",
        }
    }


def test_the_stream_error_is_the_documented_error_event() -> None:
    event = RESPONSES.error_event(UpstreamError("Upstream failed."), 7)
    head, _, data = event.partition(b"\ndata: ")
    assert head == b"event: error"
    assert event.endswith(b"\n\n")
    payload = orjson.loads(data)
    assert payload == {
        "type": "error",
        "code": "bad_gateway",
        "message": "Upstream failed.",
        "param": None,
        "sequence_number": 7,
    }
    # the openai SDK's own type for it
    assert ResponseErrorEvent.model_validate(payload).message == "Upstream failed."
    assert (
        orjson.loads(RESPONSES.error_event(InvalidRequest("x")).split(b"data: ")[1])["sequence_number"] == 0
    )


@pytest.mark.parametrize("bad", [0, -3, "16", 2.5, True])
def test_the_cap_is_max_output_tokens(bad: Any) -> None:
    assert RESPONSES.client_cap({"max_output_tokens": 64, "max_tokens": 9}) == 64
    assert RESPONSES.client_cap({"max_tokens": 9}) is None
    assert RESPONSES.cap_field("gpt-5") == RESPONSES.cap_field("gpt-4o") == "max_output_tokens"
    with pytest.raises(ValueError, match="max_output_tokens"):
        RESPONSES.client_cap({"max_output_tokens": bad})


def test_one_answer_per_request() -> None:
    assert RESPONSES.choices({"n": 3}) == 1


def test_usage_counts_cache_reads_and_writes_in_the_input_and_reasoning_in_the_output() -> None:
    assert RESPONSES.usage({"usage": USAGE}) == Usage(
        120, 40, 160, 100, cache_write_tokens=15, reasoning_tokens=25
    )
    # cache_write_tokens is optional in older answers
    minimal = {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}}
    assert RESPONSES.usage({"usage": minimal}) == Usage(5, 2, 7, 0)
    assert RESPONSES.usage({"usage": None}) is None
    assert RESPONSES.usage({"usage": {"input_tokens": "many"}}) is None
    assert RESPONSES.usage("not an answer") is None


def test_answer_text_reads_output_text_refusals_and_function_calls() -> None:
    answer = {"object": "response", "output": OUTPUT, "usage": USAGE}
    assert RESPONSES.answer_text(answer) == 'Hello I cannot.lookup{"query":"cats"}'
    assert RESPONSES.answer_text({"output": None}) == ""
    assert RESPONSES.answer_text([]) == ""


def _response(status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "model": "gpt-4o-2024-08-06",
        "status": status,
        "usage": usage,
    }


def test_stream_meter_reads_typed_events() -> None:
    meter = RESPONSES.stream_meter()
    events: list[tuple[dict[str, Any], str]] = [
        ({"type": "response.created", "response": _response("in_progress", None), "sequence_number": 0}, ""),
        ({"type": "response.output_text.delta", "delta": "Hel", "sequence_number": 3}, "Hel"),
        ({"type": "response.output_text.delta", "delta": "lo", "sequence_number": 4}, "lo"),
        ({"type": "response.output_text.done", "text": "Hello", "sequence_number": 5}, ""),
        ({"type": "response.refusal.delta", "delta": "No.", "sequence_number": 6}, "No."),
        (
            {
                "type": "response.output_item.added",
                "item": {"type": "function_call", "name": "lookup", "arguments": ""},
                "sequence_number": 7,
            },
            "lookup",
        ),
        (
            {"type": "response.function_call_arguments.delta", "delta": '{"q":1}', "sequence_number": 8},
            '{"q":1}',
        ),
        ({"type": "response.function_call_arguments.done", "arguments": '{"q":1}', "sequence_number": 9}, ""),
    ]
    for payload, text in events:
        assert meter.feed(payload["type"], payload) == text
    assert meter.model == "gpt-4o-2024-08-06"
    assert meter.usage is None  # usage arrives with the final event only
    assert meter.next_sequence_number() == 10
    meter.feed(
        "response.completed", {"type": "response.completed", "response": _response("completed", USAGE)}
    )
    assert meter.usage == Usage(120, 40, 160, 100, cache_write_tokens=15, reasoning_tokens=25)


@pytest.mark.parametrize("final", ["response.incomplete", "response.failed"])
def test_stream_meter_reads_usage_of_unfinished_responses(final: str) -> None:
    meter = RESPONSES.stream_meter()
    meter.feed(
        final, {"type": final, "response": _response(final.split(".")[1], USAGE), "sequence_number": 4}
    )
    assert meter.usage is not None
    assert meter.usage.completion_tokens == 40
    # an in_progress snapshot carries no usage to read
    other = RESPONSES.stream_meter()
    other.feed(
        "response.in_progress", {"type": "response.in_progress", "response": _response("in_progress", USAGE)}
    )
    assert other.usage is None
    assert other.feed(None, "not json") == ""


def test_sdk_answer_is_read() -> None:
    # an answer built with the SDK's own model, so the field names are OpenAI's
    answer = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": "gpt-4o",
            "output": OUTPUT[:2],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": USAGE,
        }
    ).model_dump(mode="json")
    assert RESPONSES.usage(answer) == Usage(120, 40, 160, 100, cache_write_tokens=15, reasoning_tokens=25)
    assert RESPONSES.answer_text(answer).endswith('lookup{"query":"cats"}')
