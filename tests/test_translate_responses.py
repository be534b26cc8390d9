"""Responses <-> chat translation, golden both ways: requests to chat requests, chat answers and chunk
streams to Responses answers and typed event streams, and the official ``openai`` SDK parsing both."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response

from asgi_aigw.kernel.context import Usage
from asgi_aigw.kernel.dialects.responses import RESPONSES
from asgi_aigw.kernel.errors import InvalidRequest, UpstreamError
from asgi_aigw.kernel.sse import parse_event
from asgi_aigw.providers.openai import OpenAIStreamTranslator
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.translate.responses import ResponsesStream, chat_request, response_answer
from asgi_aigw.translate.responses.request import DROPPED_OBFUSCATION, DROPPED_PHASE

from .golden import (
    CLOCK,
    LOOKUP,
    PNG,
    SCHEMA,
    call_answered,
    chunk,
    completion,
    ids,
    lookup_choice,
    lookup_delta,
    openai_sse,
    text_choice,
    usage_chunk,
)

TOOL = {"type": "function", "name": "lookup", "description": "Look something up.", "parameters": SCHEMA}
CHAT_USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}

# -- requests ---------------------------------------------------------------------------------------


def test_text_request() -> None:
    body = {
        "model": "alias",
        "instructions": "You are terse.",
        "input": "Hello there",
        "max_output_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"ticket": "42"},
        "user": "u-1",
        "store": False,
    }
    translation = chat_request(body)
    assert translation.body == {
        "model": "alias",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello there"},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"ticket": "42"},
        "user": "u-1",
    }
    assert translation.dropped == []
    assert translation.request.output_limit == 256


def test_a_reasoning_model_takes_the_cap_as_max_completion_tokens() -> None:
    body = chat_request(
        {"model": "gpt-5", "input": "Hi", "max_output_tokens": 64, "reasoning": {"effort": "low"}}
    ).body
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body
    assert body["reasoning_effort"] == "low"


def test_tool_round_trip_request() -> None:
    body = {
        "model": "alias",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Find cats"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Looking.", "annotations": []}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "lookup",
                "arguments": '{"query": "cats"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "lookup",
                "arguments": '{"query": "dogs"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "3 cats found"},
            {
                "type": "function_call_output",
                "call_id": "call_2",
                "output": [{"type": "input_text", "text": "no dogs"}],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "lookup"},
        "parallel_tool_calls": False,
    }
    assert chat_request(body).body == {
        "model": "alias",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Find cats"}]},
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"query": "cats"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"query": "dogs"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "3 cats found"},
            {"role": "tool", "tool_call_id": "call_2", "content": "no dogs"},
        ],
        "tools": [LOOKUP],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": False,
    }


def test_image_developer_message_and_formats() -> None:
    body = {
        "model": "alias",
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "Be exact."}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this image?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
                ],
            },
        ],
        "text": {
            "format": {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True},
            "verbosity": "low",
        },
        "stream": True,
    }
    assert chat_request(body).body == {
        "model": "alias",
        "messages": [
            {"role": "developer", "content": "Be exact."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                ],
            },
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
        },
        "verbosity": "low",
        "stream": True,
        # usage arrives only when asked for
        "stream_options": {"include_usage": True},
    }


def test_obfuscation_is_a_hint_reported_dropped() -> None:
    translation = chat_request(
        {"model": "m", "input": "Hi", "stream": True, "stream_options": {"include_obfuscation": False}}
    )
    assert translation.dropped == [DROPPED_OBFUSCATION]
    assert translation.body["stream_options"] == {"include_usage": True}


def test_the_phase_label_is_a_hint_reported_dropped() -> None:
    item = {
        "role": "assistant",
        "content": "Done.",
        "phase": "final_answer",
        "id": "msg_1",
        "status": "completed",
    }
    translation = chat_request({"model": "m", "input": [item, {"role": "user", "content": "Thanks"}]})
    assert translation.dropped == [DROPPED_PHASE]
    assert translation.body["messages"][0] == {"role": "assistant", "content": "Done."}


@pytest.mark.parametrize(
    ("changes", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "keeps no responses"),
        ({"store": True}, "store", "keeps no responses"),
        ({"conversation": "conv_1"}, "conversation", "keeps no conversations"),
        ({"background": True}, "background", "background"),
        ({"include": ["reasoning.encrypted_content"]}, "include", "include"),
        ({"truncation": "auto"}, "truncation", "truncat"),
        ({"top_logprobs": 3}, "top_logprobs", "top_logprobs"),
        ({"frobnicate": 1}, "frobnicate", "frobnicate"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
        ({"tools": [{**TOOL, "defer_loading": True}]}, "tools[0].defer_loading", "defer_loading"),
        (
            {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
            "tool_choice",
            "tool_choice",
        ),
        ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary", "reasoning.summary"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type", "grammar"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0].type", "reasoning"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "item_reference"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
            "input[0].content[0].type",
            "input_file",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
            "input[0].content[0].file_id",
            "file_id",
        ),
        ({"input": [{"role": "user", "content": "Hi", "cache": 1}]}, "input[0].cache", "input[0].cache"),
        ({"input": [{"role": ["user"], "content": "Hi"}]}, "input[0].role", "expected one of"),
        ({"input": [{"role": {"user": 1}, "content": "Hi"}]}, "input[0].role", "expected one of"),
        ({"temperature": 5}, "temperature", "temperature"),
        ({"max_output_tokens": "64"}, "max_output_tokens", "positive integer"),
        ({"max_output_tokens": 0}, "max_output_tokens", "positive integer"),
        ({"input": []}, "input", "empty"),
        ({"model": ""}, "model", "model"),
    ],
)
def test_untranslatable_requests_are_refused_naming_the_field(
    changes: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        chat_request({"model": "alias", "input": "Hi", **changes})
    assert refused.value.status == 400
    assert refused.value.param == param
    assert words in refused.value.message


@pytest.mark.parametrize(
    "default", [{"store": False}, {"truncation": "disabled"}, {"include": []}, {"background": False}]
)
def test_defaults_of_refused_fields_are_taken(default: dict[str, Any]) -> None:
    assert chat_request({"model": "m", "input": "Hi", **default}).body["messages"] == [
        {"role": "user", "content": "Hi"}
    ]


# -- answers ----------------------------------------------------------------------------------------

REQUEST: dict[str, Any] = {
    "model": "alias",
    "input": "Hello there",
    "instructions": "Be brief.",
    "max_output_tokens": 64,
}


def test_text_answer() -> None:
    native = completion("chatcmpl-abc", "gpt-4o-2024-08-06", text_choice("Hello!"), CHAT_USAGE)
    answer = response_answer(native, REQUEST, ids=ids())
    assert answer == {
        "id": "resp_abc",
        "object": "response",
        "created_at": int(CLOCK),
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": "Be brief.",
        "max_output_tokens": 64,
        "max_tool_calls": None,
        "model": "gpt-4o-2024-08-06",
        "output": [
            {
                "id": "msg_1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": None,
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        },
        "user": None,
        "metadata": {},
    }
    parsed = Response.model_validate(answer)
    assert parsed.output_text == "Hello!"
    assert parsed.usage is not None
    assert parsed.usage.input_tokens == 12


def test_tool_call_answer_keeps_the_call_id() -> None:
    native = completion("chatcmpl-t", "gpt-4o", lookup_choice("call_Xy9", content="Let me look."), CHAT_USAGE)
    request = {**REQUEST, "tools": [TOOL], "tool_choice": "required"}
    answer = response_answer(native, request, ids=ids())
    assert answer["output"] == [
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []}],
        },
        {
            "id": "fc_2",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_Xy9",
            "name": "lookup",
            "arguments": '{"query":"cats"}',
        },
    ]
    assert answer["tools"] == [{**TOOL, "strict": True}]
    assert answer["tool_choice"] == "required"
    parsed = Response.model_validate(answer)
    call = parsed.output[1]
    assert call.type == "function_call"
    assert call.call_id == "call_Xy9"


def test_length_is_incomplete_and_usage_keeps_cache_and_reasoning() -> None:
    usage = {
        "prompt_tokens": 200,
        "completion_tokens": 64,
        "total_tokens": 264,
        "prompt_tokens_details": {"cached_tokens": 150},
        "completion_tokens_details": {"reasoning_tokens": 40},
    }
    native = completion("chatcmpl-l", "gpt-5", text_choice("Once upon", finish="length"), usage)
    # the adapter's own reading carries the cache writes the chat format has no field for
    known = Usage(200, 64, 264, 150, cache_write_tokens=30)
    answer = response_answer(native, REQUEST, usage=known, ids=ids())
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["output"][0]["status"] == "incomplete"
    assert answer["usage"] == {
        "input_tokens": 200,
        "input_tokens_details": {"cached_tokens": 150, "cache_write_tokens": 30},
        "output_tokens": 64,
        "output_tokens_details": {"reasoning_tokens": 40},
        "total_tokens": 264,
    }
    assert Response.model_validate(answer).incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


def test_refusal_answer() -> None:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": "I can't help."},
        "finish_reason": "stop",
    }
    answer = response_answer(completion("chatcmpl-r", "gpt-4o", choice, CHAT_USAGE), REQUEST, ids=ids())
    assert answer["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]
    Response.model_validate(answer)


def test_an_answer_without_a_message_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        response_answer({"id": "x", "choices": []}, REQUEST)


# -- streams ----------------------------------------------------------------------------------------


def translate(
    native: bytes, request: dict[str, Any] | None = None, split: int | None = None
) -> tuple[ResponsesStream, list[dict[str, Any]]]:
    stream = ResponsesStream(
        OpenAIStreamTranslator(include_usage=True),
        request=request or {**REQUEST, "stream": True},
        model="alias",
        ids=ids(),
    )
    pieces = [native] if split is None else [native[i : i + split] for i in range(0, len(native), split)]
    raw: list[bytes] = []
    for piece in pieces:
        raw.extend(stream.feed(piece))
    raw.extend(stream.close())
    events = []
    for event in raw:
        parsed = parse_event(event)
        payload = orjson.loads(parsed.data)
        assert parsed.event == payload["type"], event  # each event is named by its type
        events.append(payload)
    return stream, events


def text_native(finish: str = "stop") -> bytes:
    return openai_sse(
        chunk("chatcmpl-s", "gpt-4o", {"role": "assistant", "content": ""}),
        chunk("chatcmpl-s", "gpt-4o", {"content": "Hel"}),
        chunk("chatcmpl-s", "gpt-4o", {"content": "lo"}),
        chunk("chatcmpl-s", "gpt-4o", {}, finish),
        usage_chunk("chatcmpl-s", "gpt-4o", CHAT_USAGE),
    )


def tool_native() -> bytes:
    return openai_sse(
        chunk("chatcmpl-t", "gpt-4o", {"role": "assistant", "content": "On it."}),
        chunk("chatcmpl-t", "gpt-4o", lookup_delta("call_Q", "")),
        chunk("chatcmpl-t", "gpt-4o", {"tool_calls": [{"index": 0, "function": {"arguments": '{"query":'}}]}),
        chunk("chatcmpl-t", "gpt-4o", {"tool_calls": [{"index": 0, "function": {"arguments": '"cats"}'}}]}),
        chunk("chatcmpl-t", "gpt-4o", {}, "tool_calls"),
        usage_chunk("chatcmpl-t", "gpt-4o", CHAT_USAGE),
    )


def test_text_stream_golden() -> None:
    stream, events = translate(text_native())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    item = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    body = [{k: v for k, v in e.items() if k not in ("sequence_number", "response")} for e in events]
    assert body == [
        {"type": "response.created"},
        {"type": "response.in_progress"},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {
                "id": "msg_1",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        {"type": "response.output_text.delta", **where, "delta": "Hel", "logprobs": []},
        {"type": "response.output_text.delta", **where, "delta": "lo", "logprobs": []},
        {"type": "response.output_text.done", **where, "text": "Hello", "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed"},
    ]
    created, final = events[0]["response"], events[-1]["response"]
    assert (created["id"], created["status"], created["output"], created["usage"]) == (
        "resp_s",
        "in_progress",
        [],
        None,
    )
    assert (final["id"], final["status"], final["model"]) == ("resp_s", "completed", "gpt-4o")
    assert final["output"] == [item]
    assert final["usage"]["input_tokens"] == 12
    assert final["usage"]["output_tokens"] == 3
    assert stream.done
    assert stream.usage == Usage(12, 3, 15)
    # whatever the chunk boundaries, the same events
    assert translate(text_native(), split=7)[1] == events


def test_tool_call_stream_golden() -> None:
    _, events = translate(tool_native())
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[8]
    assert added["output_index"] == 1
    assert added["item"] == {
        "id": "fc_2",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_Q",
        "name": "lookup",
        "arguments": "",
    }
    assert [e["delta"] for e in events[9:11]] == ['{"query":', '"cats"}']
    assert events[11] == {
        "type": "response.function_call_arguments.done",
        "item_id": "fc_2",
        "output_index": 1,
        "arguments": '{"query":"cats"}',
        "sequence_number": 11,
    }
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "call_Q"
    assert final["output"][1]["status"] == "completed"


def test_length_ends_with_response_incomplete() -> None:
    _, events = translate(text_native("length"))
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


def test_an_upstream_error_becomes_the_error_event_and_a_cut_stream_no_final_event() -> None:
    native = (
        b"data: "
        + orjson.dumps(chunk("chatcmpl-e", "gpt-4o", {"content": "Hi"}))
        + b"\n\n"
        + b'data: {"error": {"message": "Overloaded", "type": "server_error", "code": "overloaded", "param": null}}\n\n'
    )
    stream, events = translate(native)
    assert events[-1] == {
        "type": "error",
        "code": "overloaded",
        "message": "Overloaded",
        "param": None,
        "sequence_number": len(events) - 1,
    }
    assert not stream.done
    assert stream.next_sequence_number == len(events)
    # cut before any finish: the stream ends without a final event for the caller to report
    cut, cut_events = translate(text_native()[:200])
    assert not cut.done
    assert all(e["type"] not in ("response.completed", "response.incomplete") for e in cut_events)


# -- the official SDK parses what the translation writes ----------------------------------------------


def sdk(body: bytes, content_type: str = "text/event-stream") -> openai.OpenAI:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(orjson.loads(request.content))
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    return openai.OpenAI(
        api_key="test-key-not-real", base_url="http://gateway.test/v1", http_client=http, max_retries=0
    )


def _translated(native: bytes) -> bytes:
    stream = ResponsesStream(
        OpenAIStreamTranslator(include_usage=True), request={**REQUEST, "stream": True}, model="alias"
    )
    return b"".join(stream.feed(native) + stream.close())


def test_the_sdk_parses_the_json_answer() -> None:
    native = completion("chatcmpl-abc", "gpt-4o", lookup_choice("call_1", content="Checking."), CHAT_USAGE)
    client = sdk(orjson.dumps(response_answer(native, REQUEST)), "application/json")
    answer = client.responses.create(model="alias", input="Hello there")
    assert answer.id == "resp_abc"
    assert answer.output_text == "Checking."
    assert [item.type for item in answer.output] == ["message", "function_call"]
    assert answer.usage is not None
    assert answer.usage.total_tokens == 15


def test_the_sdk_parses_the_stream_as_typed_events() -> None:
    client = sdk(_translated(tool_native()))
    events = list(client.responses.create(model="alias", input="Find cats", stream=True))
    assert [type(e).__name__ for e in events][:3] == [
        "ResponseCreatedEvent",
        "ResponseInProgressEvent",
        "ResponseOutputItemAddedEvent",
    ]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(deltas) == '{"query":"cats"}'
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "On it."


def test_the_sdk_stream_helper_accumulates_the_final_response() -> None:
    client = sdk(_translated(text_native()))
    with client.responses.stream(model="alias", input="Hello there") as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert snapshots == ["Hel", "Hello"]
    assert final.output_text == "Hello"
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.output_tokens == 3

    client = sdk(_translated(tool_native()))
    with client.responses.stream(model="alias", input="Find cats", tools=[TOOL]) as stream:  # type: ignore[list-item]
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert done[0].arguments == '{"query":"cats"}'
    call = final.output[1]
    assert call.type == "function_call"
    assert call.call_id == "call_Q"


# -- the pieces together: the SDK, the translation, the fake's chat endpoint ------------------------


def translating_client(fake: FakeProvider) -> openai.AsyncOpenAI:
    """The SDK speaking Responses to a handler that translates to the fake's chat endpoint and back,
    as the router will."""
    upstream = httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url="http://fake")

    async def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        translation = chat_request(body)
        answer = await upstream.post("/v1/chat/completions", json=translation.body)
        assert answer.status_code == 200, answer.text
        if not body.get("stream"):
            return httpx.Response(200, json=response_answer(answer.json(), body))
        stream = ResponsesStream(
            OpenAIStreamTranslator(include_usage=True), request=body, model=body["model"]
        )
        events = stream.feed(answer.content) + stream.close()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(events))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return openai.AsyncOpenAI(
        base_url="http://gateway.test/v1", api_key="test-key-not-real", http_client=http
    )


async def test_a_function_call_round_trip_through_the_fake_chat_endpoint(fake: FakeProvider) -> None:
    client = translating_client(fake)
    first = await client.responses.create(model="gpt-4o", input="weather in Paris", tools=[TOOL])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call"
    assert call.arguments == '{"query":"weather in Paris"}'
    # the provider's call id is the call_id the client sends back
    sent = fake.requests[-1].json
    assert sent["tools"] == [{"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}]
    second = await client.responses.create(
        model="gpt-4o",
        tools=[TOOL],  # type: ignore[list-item]
        input=call_answered("weather in Paris", call, "sunny"),  # type: ignore[arg-type]
    )
    assert second.output_text == "Tool said: sunny"
    tool_message = fake.requests[-1].json["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


async def test_a_stream_through_the_fake_chat_endpoint(fake: FakeProvider) -> None:
    client = translating_client(fake)
    async with client.responses.stream(model="gpt-4o", input="hello world", max_output_tokens=2) as stream:
        capped = [e async for e in stream]
    # cut at the cap: the stream ends with response.incomplete, as OpenAI's does
    assert [e.delta for e in capped if e.type == "response.output_text.delta"] == ["Echo:", " hello"]
    assert capped[-1].type == "response.incomplete"
    assert capped[-1].response.incomplete_details is not None
    assert capped[-1].response.incomplete_details.reason == "max_output_tokens"
    assert fake.requests[-1].json["max_tokens"] == 2
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}
    events = [e async for e in await client.responses.create(model="gpt-4o", input="hi there", stream=True)]
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "Echo: hi there"
    assert final.response.usage is not None
    assert final.response.usage.output_tokens == 3


def test_refusal_and_parallel_calls_stream() -> None:
    refusal = openai_sse(
        chunk("chatcmpl-r", "gpt-4o", {"role": "assistant", "refusal": "I can"}),
        chunk("chatcmpl-r", "gpt-4o", {"refusal": "not."}),
        chunk("chatcmpl-r", "gpt-4o", {}, "stop"),
    )
    _, events = translate(refusal)
    assert [e["type"] for e in events[2:-1]] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert events[6]["refusal"] == "I cannot."
    assert events[-1]["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "I cannot."}]
    client = sdk(_translated(refusal))
    with client.responses.stream(model="alias", input="x") as stream:
        final = stream.get_final_response()
    message = final.output[0]
    assert message.type == "message"
    assert message.content[0].type == "refusal"

    def call(index: int, call_id: str, query: str) -> dict[str, Any]:
        arguments = orjson.dumps({"query": query}).decode()
        function = {"name": "lookup", "arguments": arguments}
        return {"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]}

    parallel = openai_sse(
        chunk("chatcmpl-p", "gpt-4o", call(0, "call_A", "cats")),
        chunk("chatcmpl-p", "gpt-4o", call(1, "call_B", "dogs")),
        chunk("chatcmpl-p", "gpt-4o", {}, "tool_calls"),
    )
    _, events = translate(parallel)
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["call_id"]) for e in added] == [(0, "call_A"), (1, "call_B")]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [d["arguments"] for d in done] == ['{"query":"cats"}', '{"query":"dogs"}']
    client = sdk(_translated(parallel))
    with client.responses.stream(model="alias", input="x") as stream:
        final = stream.get_final_response()
    assert [item.call_id for item in final.output if item.type == "function_call"] == ["call_A", "call_B"]


def test_the_dialect_reads_what_the_translation_writes() -> None:
    # the stream: the meter finds the text, the call and the usage the final event carries
    meter = RESPONSES.stream_meter()
    _, events = translate(tool_native())
    text = "".join(meter.feed(e["type"], e) for e in events)
    assert text == 'On it.lookup{"query":"cats"}'
    assert meter.usage == Usage(12, 3, 15)
    assert meter.model == "gpt-4o"
    assert meter.next_sequence_number() == len(events)
    assert text == RESPONSES.answer_text(events[-1]["response"])
    # the JSON answer
    native = completion("chatcmpl-abc", "gpt-4o", lookup_choice("call_1", content="On it."), CHAT_USAGE)
    answer = response_answer(native, REQUEST)
    assert RESPONSES.usage(answer) == Usage(12, 3, 15)
    assert RESPONSES.answer_text(answer) == text
