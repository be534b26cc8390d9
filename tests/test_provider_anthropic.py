"""Golden tests: OpenAI format ⇄ Anthropic Messages API, as Anthropic documents it."""

from __future__ import annotations

import orjson
import pytest

from asgi_aigw.kernel.errors import GatewayError, InvalidRequest, UpstreamUnavailable
from asgi_aigw.providers.anthropic import AnthropicAdapter

from .golden import (
    CLOCK,
    IMAGE,
    IMAGE_URL,
    PNG,
    SCHEMA,
    TEXT,
    TOOL_ROUND_TRIP,
    anthropic_sse,
    chunk,
    completion,
    deployment,
    ids,
    lookup_choice,
    lookup_delta,
    request,
    run_stream,
    text_choice,
    usage_chunk,
)

KEY = "fake-anthropic-key-for-tests"
DEP = deployment("anthropic", "claude-sonnet-4-5", "https://api.anthropic.com", KEY)


def adapter() -> AnthropicAdapter:
    return AnthropicAdapter(clock=lambda: CLOCK, ids=ids())


@pytest.mark.parametrize("stream", [False, True])
def test_text_with_system_prompt(stream: bool) -> None:
    req, body = request(TEXT, stream=stream)
    upstream = adapter().chat_request(DEP, req, body, stream=stream)
    assert upstream.method == "POST"
    assert upstream.url == "https://api.anthropic.com/v1/messages"
    assert upstream.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": KEY,
    }
    expected = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Hello there"}],
        # temperature and top_p together are refused by current Claude models: temperature wins
        "temperature": 0.2,
        "stop_sequences": ["END"],
    }
    if stream:
        expected["stream"] = True
    assert orjson.loads(upstream.content) == expected


def test_sampling_parameters_anthropic_has_no_name_for_are_left_out() -> None:
    req, body = request(TEXT, temperature=None, top_k=40, seed=7, presence_penalty=0.5)
    payload = adapter().native_chat(DEP, req, body, stream=False)
    assert {k: payload[k] for k in ("top_p", "top_k", "stop_sequences")} == {
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
    }
    assert not {"seed", "presence_penalty", "n", "candidateCount"} & set(payload)


def test_max_tokens_defaults_and_versioned_base_urls() -> None:
    req, body = request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    payload = adapter().native_chat(DEP, req, body, stream=False)
    assert payload["max_tokens"] == 4096  # required upstream: the documented default fills it in
    assert (
        AnthropicAdapter(default_max_tokens=1024).native_chat(DEP, req, body, stream=False)["max_tokens"]
        == 1024
    )
    req, body = request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9}
    )
    assert adapter().native_chat(DEP, req, body, stream=False)["max_tokens"] == 9
    proxied = deployment("anthropic", "c", "http://proxy.test/anthropic/v1", KEY)
    assert (
        adapter().chat_request(proxied, req, body, stream=False).url
        == "http://proxy.test/anthropic/v1/messages"
    )


def test_tool_call_round_trip_request() -> None:
    req, body = request(TOOL_ROUND_TRIP, parallel_tool_calls=False, user="u-42")
    payload = orjson.loads(adapter().chat_request(DEP, req, body, stream=False).content)
    assert payload == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "Use tools.",
        "messages": [
            {"role": "user", "content": "Find cats"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"query": "cats"}}
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "3 cats found"}],
            },
        ],
        "tools": [{"name": "lookup", "description": "Look something up.", "input_schema": SCHEMA}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-42"},
    }


def test_parallel_tool_results_travel_in_one_user_turn() -> None:
    messages = [
        {"role": "user", "content": "two lookups"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"query": "x"}'},
                },
                {
                    "id": "b",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"query": "y"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "X"},
        {"role": "tool", "tool_call_id": "b", "content": "Y"},
    ]
    req, body = request(
        {
            "model": "m",
            "messages": messages,
            "tools": [TOOL_ROUND_TRIP["tools"][0]],
            "tool_choice": "required",
        }
    )
    payload = adapter().native_chat(DEP, req, body, stream=False)
    assert payload["messages"][1]["content"][0] == {"type": "text", "text": "Looking."}
    assert payload["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "X"},
            {"type": "tool_result", "tool_use_id": "b", "content": "Y"},
        ],
    }
    assert payload["tool_choice"] == {"type": "any"}


def test_image_parts() -> None:
    req, body = request(IMAGE)
    payload = adapter().native_chat(DEP, req, body, stream=False)
    assert payload["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        }
    ]
    by_url = {
        **IMAGE,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE_URL}}]}],
    }
    req, body = request(by_url)
    payload = adapter().native_chat(DEP, req, body, stream=False)
    assert payload["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": IMAGE_URL}}
    ]


def test_unsupported_parts_are_a_400() -> None:
    audio = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
    }
    req, body = request(audio)
    with pytest.raises(InvalidRequest, match="input_audio"):
        adapter().native_chat(DEP, req, body, stream=False)


TEXT_ANSWER = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hi! My name is Claude."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 503,
    },
}


def test_text_answer_translates_back_with_cache_usage() -> None:
    req, _ = request(TEXT)
    translated = adapter().chat_response(DEP, req, orjson.dumps(TEXT_ANSWER))
    assert orjson.loads(translated.body) == completion(
        # OpenAI's id prefix; Anthropic's own id kept for tracing
        "chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "claude-sonnet-4-5-20250929",
        text_choice("Hi! My name is Claude."),
        # OpenAI's prompt_tokens include cached input; Anthropic's input_tokens do not
        {
            "prompt_tokens": 3195,
            "completion_tokens": 503,
            "total_tokens": 3698,
            "prompt_tokens_details": {"cached_tokens": 1000},
        },
    )
    assert translated.usage is not None
    assert (translated.usage.prompt_tokens, translated.usage.cached_tokens) == (3195, 1000)
    # cache writes are kept apart: the budget prices them above plain input
    assert translated.usage.cache_write_tokens == 100
    assert translated.model == "claude-sonnet-4-5-20250929"


@pytest.mark.parametrize(
    ("reason", "finish"), [("max_tokens", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")]
)
def test_stop_reasons(reason: str, finish: str) -> None:
    native = {**TEXT_ANSWER, "stop_reason": reason}
    req, _ = request(TEXT)
    body = orjson.loads(adapter().chat_response(DEP, req, orjson.dumps(native)).body)
    assert body["choices"][0]["finish_reason"] == finish


def test_tool_use_answer_translates_back() -> None:
    native = {
        "id": "msg_01Aq9w938a90dw8q",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "I'll look that up."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "lookup",
                "input": {"query": "cats"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 89},
    }
    req, _ = request(TOOL_ROUND_TRIP)
    body = orjson.loads(adapter().chat_response(DEP, req, orjson.dumps(native)).body)
    assert body["choices"] == [lookup_choice("toolu_01A09q90qw90lq917835lq9", "I'll look that up.")]
    assert body["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}


def block_start(index: int, block: dict[str, object]) -> dict[str, object]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> dict[str, object]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def json_delta(index: int, partial: str) -> dict[str, object]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, object]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int) -> dict[str, object]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


MSG_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5-20250929",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1},
    },
}
PING = {"type": "ping"}
MSG_STOP = {"type": "message_stop"}
TEXT_STREAM = anthropic_sse(
    MSG_START,
    block_start(0, {"type": "text", "text": ""}),
    PING,
    text_delta(0, "Hello"),
    text_delta(0, "!"),
    block_stop(0),
    message_delta("end_turn", 15),
    MSG_STOP,
)
STREAM_ID = "chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
STREAM_MODEL = "claude-sonnet-4-5-20250929"


def test_a_streams_cache_writes_are_kept_apart_in_its_usage() -> None:
    start = {
        **MSG_START,
        "message": {
            **MSG_START["message"],  # type: ignore[dict-item]
            "usage": {"input_tokens": 25, "cache_creation_input_tokens": 40, "output_tokens": 1},
        },
    }
    stream = anthropic_sse(
        start,
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Hi"),
        block_stop(0),
        message_delta("end_turn", 15),
        MSG_STOP,
    )
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=True)
    run_stream(translator, stream, None)
    assert translator.usage is not None
    assert (translator.usage.prompt_tokens, translator.usage.cache_write_tokens) == (65, 40)


@pytest.mark.parametrize("split", [None, 1, 7, 64])
def test_text_stream_translates_event_by_event(split: int | None) -> None:
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=True)
    events = run_stream(translator, TEXT_STREAM, split)
    assert events == [
        chunk(STREAM_ID, STREAM_MODEL, {"role": "assistant", "content": ""}),
        chunk(STREAM_ID, STREAM_MODEL, {"content": "Hello"}),
        chunk(STREAM_ID, STREAM_MODEL, {"content": "!"}),
        chunk(STREAM_ID, STREAM_MODEL, {}, "stop"),
        usage_chunk(
            STREAM_ID,
            STREAM_MODEL,
            {
                "prompt_tokens": 30,
                "completion_tokens": 15,
                "total_tokens": 45,
                "prompt_tokens_details": {"cached_tokens": 5},
            },
        ),
        "[DONE]",
    ]
    assert translator.done
    assert translator.usage is not None
    assert translator.usage.completion_tokens == 15


def test_nothing_is_written_before_the_first_content() -> None:
    """message_start and ping produce no chunk, so a failure right after them can still be retried."""
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=False)
    assert translator.feed(anthropic_sse(MSG_START, PING)) == []
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamUnavailable, match="overloaded_error: Overloaded") as info:
        translator.feed(anthropic_sse(overloaded))
    assert info.value.status == 503


def test_tool_use_stream() -> None:
    call_id = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    native = anthropic_sse(
        MSG_START,
        block_start(0, {"type": "text", "text": ""}),
        text_delta(0, "Okay"),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": call_id, "name": "lookup", "input": {}}),
        json_delta(1, ""),
        json_delta(1, '{"query": "c'),
        json_delta(1, 'ats"}'),
        block_stop(1),
        message_delta("tool_use", 89),
        MSG_STOP,
    )
    req, _ = request(TOOL_ROUND_TRIP, stream=True)
    events = run_stream(adapter().chat_stream(DEP, req, include_usage=False), native, 13)

    def arguments(fragment: str) -> dict[str, object]:
        return chunk(
            STREAM_ID, STREAM_MODEL, {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}
        )

    assert events == [
        chunk(STREAM_ID, STREAM_MODEL, {"role": "assistant", "content": ""}),
        chunk(STREAM_ID, STREAM_MODEL, {"content": "Okay"}),
        chunk(STREAM_ID, STREAM_MODEL, lookup_delta(call_id, "")),
        arguments('{"query": "c'),
        arguments('ats"}'),
        chunk(STREAM_ID, STREAM_MODEL, {}, "tool_calls"),
        "[DONE]",
    ]


def test_a_stream_cut_short_is_not_done() -> None:
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=False)
    run_stream(translator, TEXT_STREAM[: TEXT_STREAM.index(b"event: content_block_stop")])
    assert not translator.done


@pytest.mark.parametrize(
    ("status", "kind", "expected_status", "code"),
    [
        (529, "overloaded_error", 503, "upstream_unavailable"),
        (429, "rate_limit_error", 429, "rate_limit_exceeded"),
        (400, "invalid_request_error", 400, "upstream_client_error"),
        (500, "api_error", 502, "bad_gateway"),
    ],
)
def test_errors_are_openai_shaped(status: int, kind: str, expected_status: int, code: str) -> None:
    content = orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": "Something happened"}, "request_id": "req_1"}
    )
    error = adapter().error(status, content, {"retry-after": "3"})
    assert isinstance(error, GatewayError)
    assert error.status == expected_status
    assert error.code == code
    assert f"{kind}: Something happened" in error.message
    body = error.to_dict()["error"]
    assert set(body) == {"message", "type", "code", "param"}
    if status in (429, 529):
        assert ("retry-after", "3") in error.headers


def test_anthropic_has_no_embeddings() -> None:
    from asgi_aigw.kernel.models import EmbeddingRequest

    with pytest.raises(InvalidRequest, match="no embeddings API"):
        adapter().embeddings_request(DEP, EmbeddingRequest(model="m", input="x"), {})
