"""Golden tests: Anthropic Messages ⇄ the canonical chat format (requests, answers, streams), and the
passthrough's in-place ``model`` rewrite."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from asgi_aigw.kernel.context import Usage
from asgi_aigw.kernel.dialects.messages import MessagesStreamMeter
from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.kernel.models import MessagesRequest
from asgi_aigw.kernel.sse import parse_event
from asgi_aigw.providers import TranslatedResponse
from asgi_aigw.providers.ollama import OllamaAdapter
from asgi_aigw.providers.openai import OpenAIStreamTranslator
from asgi_aigw.router.passthrough import MessagesRelay, client_headers, rewrite_model
from asgi_aigw.translate.messages import MessagesStream, chat_request, message_answer

from .golden import (
    CLOCK,
    PNG,
    anthropic_sse,
    chunk,
    deployment,
    ids,
    lookup_delta,
    ndjson,
    openai_sse,
    usage_chunk,
)

SCHEMA = {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}

#: The shape Claude Code sends: system blocks with a cache breakpoint, tools, a tool round trip with
#: ``toolu_`` ids, an image, metadata.user_id, stop sequences.
CLAUDE_CODE: dict[str, Any] = {
    "model": "claude-sonnet",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You write code."},
        {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Find cats"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_01A", "name": "lookup", "input": {"query": "cats"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "3 cats found"},
                {"type": "text", "text": "And this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            ],
        },
    ],
    "tools": [{"name": "lookup", "description": "Look something up.", "input_schema": SCHEMA}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "metadata": {"user_id": "user-42"},
    "stream": True,
}


def translate(data: dict[str, Any], provider: str = "openai") -> Any:
    return chat_request(MessagesRequest.model_validate(data), provider)


def messages_body(**changes: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **changes}


def tool_result_turns(tool_id: str, content: Any, **result: Any) -> list[dict[str, Any]]:
    """A turn asking, the assistant's call of the tool ``f`` (Anthropic requires it before a result),
    and the tool's result with ``content`` (and ``result``'s other fields)."""
    call = {"type": "tool_use", "id": tool_id, "name": "f", "input": {}}
    answer = {"type": "tool_result", "tool_use_id": tool_id, **result, "content": content}
    return [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [answer]},
    ]


# -- requests ------------------------------------------------------------------------------------------


def test_claude_code_request_becomes_this_chat_request() -> None:
    translation = translate(CLAUDE_CODE)
    assert translation.body == {
        "model": "claude-sonnet",
        "messages": [
            {"role": "system", "content": "You write code.\n\nBe terse."},
            # one text block is plain content, as chat clients send it
            {"role": "user", "content": "Find cats"},
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    {
                        "id": "toolu_01A",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"query":"cats"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "3 cats found"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            },
        ],
        "max_tokens": 1024,
        "stream": True,
        "temperature": 0.5,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": SCHEMA, "description": "Look something up."},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "user-42",
    }
    # the caching hint has no place in the chat format: left out, and said
    assert translation.dropped == ["cache_control"]
    assert translation.request.messages[3].tool_call_id == "toolu_01A"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "lookup"}, {"type": "function", "function": {"name": "lookup"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "lookup", "input_schema": SCHEMA}]
    body = translate(messages_body(tools=tools, tool_choice=choice)).body
    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


def test_an_error_tool_result_still_says_it_failed() -> None:
    data = messages_body(
        messages=tool_result_turns("toolu_1", [{"type": "text", "text": "no such file"}], is_error=True)
    )
    messages = translate(data).body["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no such file"}


def test_thinking_blocks_of_earlier_turns_are_left_out_and_reported() -> None:
    data = messages_body(
        thinking={"type": "disabled"},
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Hello"},
                ],
            },
            {"role": "user", "content": "again"},
        ],
    )
    translation = translate(data, "gemini")
    assert translation.body["messages"][1] == {"role": "assistant", "content": "Hello"}
    assert translation.dropped == ["thinking_blocks"]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
        ({"top_k": 5}, "top_k"),
        ({"container": "c-1"}, "container"),
        ({"metadata": {"user_id": "u", "tenant": "t"}}, "metadata.tenant"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text"}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "citations": [{}]}]}]},
            "messages[0].content[0].citations",
        ),
        (
            {"messages": tool_result_turns("t", [{"type": "image", "source": {"type": "url", "url": "u"}}])},
            "messages[2].content[0].content[0].type",
        ),
    ],
)
def test_what_has_no_translation_is_refused_by_name(changes: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(messages_body(**changes))
    assert caught.value.status == 400
    assert caught.value.param == param
    assert "openai" in caught.value.message


def test_top_k_goes_to_providers_that_take_it() -> None:
    assert translate(messages_body(top_k=5), "ollama").body["top_k"] == 5


# -- answers -------------------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str, usage: Usage) -> TranslatedResponse:
    body = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": int(CLOCK),
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage.to_openai(),
    }
    return TranslatedResponse(orjson.dumps(body), usage, "gpt-4o-mini")


def test_text_answer_becomes_a_message() -> None:
    usage = Usage(20, 5, 25, cached_tokens=8)
    answer = message_answer(
        completion({"role": "assistant", "content": "Hello"}, "stop", usage), "m", "msg_x"
    )
    assert orjson.loads(answer.body) == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-mini",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 8,
            "output_tokens": 5,
        },
    }
    assert answer.usage == usage


def test_tool_call_answer_becomes_tool_use_blocks_with_their_ids() -> None:
    call = {
        "id": "toolu_9",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"query":"cats"}'},
    }
    message = {"role": "assistant", "content": "Let me look.", "tool_calls": [call]}
    body = orjson.loads(message_answer(completion(message, "tool_calls", Usage(5, 3, 8)), "m", "msg_x").body)
    assert body["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"query": "cats"}},
    ]
    assert body["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_tokens"), ("content_filter", "refusal"), ("stop", "end_turn")]
)
def test_finish_reasons_map_to_stop_reasons(finish: str, reason: str) -> None:
    answer = message_answer(completion({"role": "assistant", "content": "x"}, finish, Usage()), "m", "msg_x")
    assert orjson.loads(answer.body)["stop_reason"] == reason


# -- streams -------------------------------------------------------------------------------------------


def events(raw: list[bytes]) -> list[tuple[str | None, Any]]:
    out = []
    for item in raw:
        assert item.endswith(b"\n\n"), item
        event = parse_event(item)
        payload = orjson.loads(event.data)
        assert payload["type"] == event.event  # Anthropic names each event after its data's type
        out.append((event.event, payload))
    return out


def run(translator: Any, native: bytes, split: int | None = None) -> list[tuple[str | None, Any]]:
    pieces = [native] if split is None else [native[i : i + split] for i in range(0, len(native), split)]
    raw: list[bytes] = []
    for piece in pieces:
        raw.extend(translator.feed(piece))
    raw.extend(translator.close())
    return events(raw)


def openai_stream() -> MessagesStream:
    return MessagesStream(
        OpenAIStreamTranslator(include_usage=True), model="gpt-4o-mini", fallback_id="msg_f"
    )


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
TEXT_STREAM = openai_sse(
    chunk("chatcmpl-1", "gpt-4o-mini", {"role": "assistant", "content": ""}),
    chunk("chatcmpl-1", "gpt-4o-mini", {"content": "Hel"}),
    chunk("chatcmpl-1", "gpt-4o-mini", {"content": "lo"}),
    chunk("chatcmpl-1", "gpt-4o-mini", {}, "stop"),
    usage_chunk("chatcmpl-1", "gpt-4o-mini", USAGE),
)
TEXT_EVENTS: list[tuple[str, Any]] = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "gpt-4o-mini",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "output_tokens": 0,
                },
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", {"type": "ping"}),  # where Anthropic's own streams send it
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 9,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 3,
            },
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


@pytest.mark.parametrize("split", [None, 1, 7])
def test_text_stream_becomes_anthropics_event_sequence(split: int | None) -> None:
    translator = openai_stream()
    assert run(translator, TEXT_STREAM, split) == TEXT_EVENTS
    assert translator.done
    assert translator.usage == Usage(9, 3, 12)


def test_tool_call_stream_opens_a_tool_use_block_after_the_text() -> None:
    native = openai_sse(
        chunk("chatcmpl-2", "gpt-4o-mini", {"role": "assistant", "content": "On it."}),
        chunk("chatcmpl-2", "gpt-4o-mini", lookup_delta("toolu_7", "")),
        chunk(
            "chatcmpl-2", "gpt-4o-mini", {"tool_calls": [{"index": 0, "function": {"arguments": '{"query"'}}]}
        ),
        chunk(
            "chatcmpl-2", "gpt-4o-mini", {"tool_calls": [{"index": 0, "function": {"arguments": ':"cats"}'}}]}
        ),
        chunk("chatcmpl-2", "gpt-4o-mini", {}, "tool_calls"),
        usage_chunk("chatcmpl-2", "gpt-4o-mini", USAGE),
    )
    out = run(openai_stream(), native)
    assert [name for name, _ in out] == [
        "message_start",
        "content_block_start",
        "ping",  # once, after the first block opens
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert out[5][1]["content_block"] == {"type": "tool_use", "id": "toolu_7", "name": "lookup", "input": {}}
    assert out[5][1]["index"] == 1
    fragments = [p["delta"]["partial_json"] for _, p in out[6:8]]
    assert fragments == ['{"query"', ':"cats"}']
    assert all(p["delta"]["type"] == "input_json_delta" and p["index"] == 1 for _, p in out[6:8])
    assert out[9][1]["delta"]["stop_reason"] == "tool_use"


def test_a_stream_cut_before_its_end_is_not_done() -> None:
    translator = openai_stream()
    out = run(translator, TEXT_STREAM[: TEXT_STREAM.index(b"data: [DONE]")])
    assert "message_stop" not in [name for name, _ in out]
    assert not translator.done


def test_a_stream_without_usage_reports_no_input_figure() -> None:
    """An upstream that sends no usage: message_delta carries only the required output count, and the
    Messages meter (the gateway's budget and logs read it) reports nothing rather than a zero input."""
    translator = openai_stream()
    native = openai_sse(
        chunk("chatcmpl-1", "gpt-4o-mini", {"role": "assistant", "content": ""}),
        chunk("chatcmpl-1", "gpt-4o-mini", {"content": "Hello"}),
        chunk("chatcmpl-1", "gpt-4o-mini", {}, "stop"),
    )
    out = run(translator, native)
    assert translator.usage is None
    assert out[-2] == (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 0},
        },
    )
    meter = MessagesStreamMeter()
    for name, payload in out:
        meter.feed(name, payload)
    assert meter.usage is None


def test_the_meter_reads_a_translated_streams_figures_from_message_delta_only() -> None:
    meter = MessagesStreamMeter()
    out = run(openai_stream(), TEXT_STREAM)
    meter.feed(*out[0])
    assert out[0][0] == "message_start"
    assert meter.usage is None  # message_start's zeros are no figure
    for name, payload in out[1:]:
        meter.feed(name, payload)
    assert meter.usage == Usage(9, 3, 12)


def test_native_streams_of_other_providers_translate_through_their_adapter() -> None:
    adapter = OllamaAdapter(clock=lambda: CLOCK, ids=ids())
    chat = translate(messages_body(stream=True), "ollama").request
    inner = adapter.chat_stream(deployment("ollama", "llama3.2", "http://o"), chat, include_usage=True)
    native = ndjson(
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "length", "prompt_eval_count": 4, "eval_count": 1},
    )  # fmt: skip
    out = run(MessagesStream(inner, model="llama3.2", fallback_id="msg_f"), native)
    texts = [p["delta"]["text"] for name, p in out if name == "content_block_delta"]
    assert texts == ["Hi"]
    assert out[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert out[-2][1]["usage"]["input_tokens"] == 4
    assert out[-2][1]["usage"]["output_tokens"] == 1


# -- passthrough ---------------------------------------------------------------------------------------


def test_relay_passes_events_unchanged_and_reads_usage_with_cache_figures() -> None:
    native = anthropic_sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-up",
                "usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                          "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    )  # fmt: skip
    relay = MessagesRelay()
    out = b"".join(relay.feed(native[:50]) + relay.feed(native[50:]) + relay.close())
    assert out == native
    assert relay.done
    assert relay.upstream_model == "claude-up"
    assert relay.usage == Usage(125, 7, 132, cached_tokens=100, cache_write_tokens=20)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"model":"alias","max_tokens":5}', b'{"model":"real-1","max_tokens":5}'),
        (b'{ "max_tokens" : 5 ,\n "model" :  "alias" }', b'{ "max_tokens" : 5 ,\n "model" :  "real-1" }'),
        # a nested "model" (a tool's schema, a message text) is not the request's model
        (
            b'{"tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}],'
            b'"messages":[{"role":"user","content":"model"}],"model":"alias"}',
            b'{"tools":[{"input_schema":{"properties":{"model":{"type":"string"}}}}],'
            b'"messages":[{"role":"user","content":"model"}],"model":"real-1"}',
        ),
        (
            b'{"system":"say \\"model\\": x","model":"a\\u006cias"}',
            b'{"system":"say \\"model\\": x","model":"real-1"}',
        ),
    ],
)
def test_model_is_rewritten_in_place(raw: bytes, expected: bytes) -> None:
    assert rewrite_model(raw, "real-1") == expected


def test_client_headers_keep_one_version_and_every_beta() -> None:
    headers = [
        (b"anthropic-version", b"2023-06-01"),
        (b"Anthropic-Version", b"2023-06-01"),
        (b"anthropic-beta", b"a-1"),
        (b"anthropic-beta", b"b-2"),
        (b"x-api-key", b"client-key"),
    ]
    assert client_headers(headers) == {"anthropic-version": "2023-06-01", "anthropic-beta": "a-1,b-2"}
    assert client_headers([]) == {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    "raw",
    [
        # the top-level key spelt with an escape, a nested "model" key spelt plainly
        b'{"mod\\u0065l":"alias","tools":[{"input_schema":{"properties":{"model":{}}}}]}',
        # the key given twice: JSON parsers keep the last
        b'{"model":"alias","max_tokens":5,"model":"alias"}',
    ],
)
def test_a_model_that_cannot_be_rewritten_in_place_is_rewritten_whole(raw: bytes) -> None:
    assert orjson.loads(raw)["model"] == "alias"
    rewritten = rewrite_model(raw, "real-1")
    assert orjson.loads(rewritten)["model"] == "real-1"
    assert rewritten.count(b'"alias"') == 0
