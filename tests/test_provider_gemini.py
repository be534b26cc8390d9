"""Golden tests: OpenAI format ⇄ Gemini API (generateContent, streamGenerateContent, embedContent)."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from asgi_aigw.kernel.errors import GatewayError, InvalidRequest
from asgi_aigw.kernel.models import EmbeddingRequest
from asgi_aigw.providers._translate import ContentFiltered
from asgi_aigw.providers.gemini import GeminiAdapter

from .golden import (
    CLOCK,
    IMAGE,
    IMAGE_URL,
    PNG,
    SCHEMA,
    TEXT,
    TOOL_ROUND_TRIP,
    chunk,
    completion,
    deployment,
    gemini_sse,
    ids,
    lookup_choice,
    lookup_delta,
    request,
    run_stream,
    text_choice,
    usage_chunk,
)

KEY = "test-gemini-key-0123456789"
DEP = deployment("gemini", "gemini-2.5-flash", "https://generativelanguage.googleapis.com", KEY)
BASE = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"


def adapter() -> GeminiAdapter:
    return GeminiAdapter(clock=lambda: CLOCK, ids=ids())


@pytest.mark.parametrize("stream", [False, True])
def test_text_with_system_prompt(stream: bool) -> None:
    req, body = request(TEXT, stream=stream)
    upstream = adapter().chat_request(DEP, req, body, stream=stream)
    assert upstream.url == (f"{BASE}:streamGenerateContent?alt=sse" if stream else f"{BASE}:generateContent")
    # the key travels in a header, never in the URL
    assert upstream.headers == {"content-type": "application/json", "x-goog-api-key": KEY}
    assert KEY not in upstream.url
    assert orjson.loads(upstream.content) == {
        "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
        },
    }


def test_every_sampling_parameter_has_its_generation_config_name() -> None:
    req, body = request(
        TEXT,
        n=2,
        top_k=40,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        max_tokens=None,
        max_completion_tokens=99,
        response_format={"type": "json_object"},
    )
    assert adapter().native_chat(DEP, req, body)["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "topK": 40,
        "candidateCount": 2,
        "maxOutputTokens": 99,
        "stopSequences": ["END"],
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "seed": 7,
        "responseMimeType": "application/json",
    }


def test_tool_call_round_trip_request() -> None:
    req, body = request(TOOL_ROUND_TRIP)
    assert orjson.loads(adapter().chat_request(DEP, req, body, stream=False).content) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Find cats"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"query": "cats"}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "lookup", "response": {"output": "3 cats found"}}}],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Use tools."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "lookup", "description": "Look something up.", "parameters": SCHEMA}
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "lookup"}},
            {"mode": "ANY", "allowedFunctionNames": ["lookup"]},
        ),
    ],
)
def test_tool_choice(choice: object, config: dict[str, object]) -> None:
    req, body = request(TOOL_ROUND_TRIP, tool_choice=choice)
    assert adapter().native_chat(DEP, req, body)["toolConfig"] == {"functionCallingConfig": config}


def test_image_parts() -> None:
    req, body = request(IMAGE)
    assert adapter().native_chat(DEP, req, body)["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is in this image?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            ],
        }
    ]
    by_url = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE_URL}}]}],
    }
    req, body = request(by_url)
    assert adapter().native_chat(DEP, req, body)["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/png", "fileUri": IMAGE_URL}}
    ]


def test_tool_result_without_a_matching_call_is_a_400() -> None:
    req, body = request(
        {"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}
    )
    with pytest.raises(InvalidRequest, match="function's name"):
        adapter().native_chat(DEP, req, body)


ANSWER = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Hello! How can I help?"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 8,
        "candidatesTokenCount": 6,
        "thoughtsTokenCount": 20,
        "cachedContentTokenCount": 4,
        "totalTokenCount": 34,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mAitaLmkHPPlz7IPvtfUqQ4",
}


def test_text_answer_translates_back_with_usage() -> None:
    req, _ = request(TEXT)
    translated = adapter().chat_response(DEP, req, orjson.dumps(ANSWER))
    assert orjson.loads(translated.body) == completion(
        "chatcmpl-mAitaLmkHPPlz7IPvtfUqQ4",
        "gemini-2.5-flash",
        text_choice("Hello! How can I help?"),
        # thinking tokens count as completion tokens, as OpenAI counts reasoning tokens, and are
        # named apart in completion_tokens_details
        {
            "prompt_tokens": 8,
            "completion_tokens": 26,
            "total_tokens": 34,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 20},
        },
    )


def response(
    parts: list[dict[str, object]],
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    response_id: str | None = "resp-1",
) -> dict[str, object]:
    """A GenerateContentResponse with one candidate (a whole answer, or one event of a stream)."""
    candidate: dict[str, object] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, object] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
    if response_id:
        out["responseId"] = response_id
    if usage:
        out["usageMetadata"] = usage
    return out


def piece(text: str, finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, object]:
    return response([{"text": text}], finish, usage)


LOOKUP_CALL = {"functionCall": {"name": "lookup", "args": {"query": "cats"}}}
CALL_USAGE = {"promptTokenCount": 30, "candidatesTokenCount": 5, "totalTokenCount": 35}


def test_function_call_answer_translates_back() -> None:
    native = response([LOOKUP_CALL], "STOP", CALL_USAGE, response_id=None)
    req, _ = request(TOOL_ROUND_TRIP)
    body = orjson.loads(adapter().chat_response(DEP, req, orjson.dumps(native)).body)
    assert body["id"] == "chatcmpl-2"  # no responseId: the gateway made one (call_1 was the call's id)
    assert body["choices"] == [lookup_choice("call_1")]
    assert body["usage"] == {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}


@pytest.mark.parametrize(
    ("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("OTHER", "stop")]
)
def test_finish_reasons(reason: str, finish: str) -> None:
    native = {
        "candidates": [{"content": {"parts": [{"text": "partial"}], "role": "model"}, "finishReason": reason}]
    }
    req, _ = request(TEXT)
    body = orjson.loads(adapter().chat_response(DEP, req, orjson.dumps(native)).body)
    assert body["choices"][0]["finish_reason"] == finish


def test_safety_blocks_are_clear_errors() -> None:
    req, _ = request(TEXT)
    prompt_blocked = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 8},
    }
    with pytest.raises(ContentFiltered, match=r"blocked the prompt \(blockReason: SAFETY\)") as info:
        adapter().chat_response(DEP, req, orjson.dumps(prompt_blocked))
    assert (info.value.status, info.value.code) == (400, "content_filter")
    answer_blocked = {"candidates": [{"finishReason": "PROHIBITED_CONTENT", "index": 0}]}
    with pytest.raises(ContentFiltered, match="withheld the answer"):
        adapter().chat_response(DEP, req, orjson.dumps(answer_blocked))


@pytest.mark.parametrize("split", [None, 1, 9])
def test_text_stream_translates_event_by_event(split: int | None) -> None:
    native = gemini_sse(
        piece("Hello", usage={"promptTokenCount": 8, "totalTokenCount": 8}),
        piece(" world", "STOP", {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10}),
    )
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=True)
    assert run_stream(translator, native, split) == [
        chunk("chatcmpl-resp-1", "gemini-2.5-flash", {"role": "assistant", "content": ""}),
        chunk("chatcmpl-resp-1", "gemini-2.5-flash", {"content": "Hello"}),
        chunk("chatcmpl-resp-1", "gemini-2.5-flash", {"content": " world"}),
        chunk("chatcmpl-resp-1", "gemini-2.5-flash", {}, "stop"),
        usage_chunk(
            "chatcmpl-resp-1",
            "gemini-2.5-flash",
            {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
        ),
        "[DONE]",
    ]
    assert translator.done


def test_function_call_stream() -> None:
    native = gemini_sse(response([LOOKUP_CALL], "STOP", CALL_USAGE, response_id="resp-2"))
    req, _ = request(TOOL_ROUND_TRIP, stream=True)
    assert run_stream(adapter().chat_stream(DEP, req, include_usage=False), native) == [
        chunk("chatcmpl-resp-2", "gemini-2.5-flash", {"role": "assistant", "content": ""}),
        chunk("chatcmpl-resp-2", "gemini-2.5-flash", lookup_delta("call_2", '{"query":"cats"}')),
        chunk("chatcmpl-resp-2", "gemini-2.5-flash", {}, "tool_calls"),
        "[DONE]",
    ]


def test_stream_without_a_finish_reason_is_not_done() -> None:
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=False)
    run_stream(translator, gemini_sse(piece("Hello")))
    assert not translator.done


def test_stream_errors_and_blocks_raise() -> None:
    req, _ = request(TEXT, stream=True)
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(GatewayError, match="UNAVAILABLE: The model is overloaded") as info:
        adapter().chat_stream(DEP, req, include_usage=False).feed(gemini_sse(error))
    assert info.value.status == 503
    with pytest.raises(ContentFiltered, match="blockReason: SAFETY"):
        adapter().chat_stream(DEP, req, include_usage=False).feed(
            gemini_sse({"promptFeedback": {"blockReason": "SAFETY"}})
        )


@pytest.mark.parametrize(
    ("status", "name", "expected_status", "code"),
    [
        (429, "RESOURCE_EXHAUSTED", 429, "rate_limit_exceeded"),
        (400, "INVALID_ARGUMENT", 400, "upstream_client_error"),
        (403, "PERMISSION_DENIED", 403, "upstream_client_error"),
        (500, "INTERNAL", 502, "bad_gateway"),
        (503, "UNAVAILABLE", 503, "upstream_unavailable"),
    ],
)
def test_errors_are_openai_shaped(status: int, name: str, expected_status: int, code: str) -> None:
    content = orjson.dumps(
        {"error": {"code": status, "message": "Quota exceeded for metric", "status": name}}
    )
    error = adapter().error(status, content, {"retry-after": "12"})
    assert (error.status, error.code) == (expected_status, code)
    assert f"{name}: Quota exceeded for metric" in error.message
    if status == 429:
        assert error.type == "rate_limit_error"
        assert ("retry-after", "12") in error.headers


def test_embeddings_single_and_batch() -> None:
    dep = deployment("gemini", "text-embedding-004", "https://generativelanguage.googleapis.com", KEY)
    one = EmbeddingRequest(model="e", input="hello", dimensions=8)
    upstream = adapter().embeddings_request(dep, one, {})
    assert (
        upstream.url
        == "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent"
    )
    assert upstream.headers["x-goog-api-key"] == KEY
    assert orjson.loads(upstream.content) == {
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 8,
    }
    many = EmbeddingRequest(model="e", input=["a", "b"])
    upstream = adapter().embeddings_request(dep, many, {})
    assert upstream.url.endswith("/models/text-embedding-004:batchEmbedContents")
    assert orjson.loads(upstream.content) == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}},
        ]
    }
    translated = adapter().embeddings_response(
        dep, many, orjson.dumps({"embeddings": [{"values": [0.5, 1.0]}, {"values": [0.25, 0.0]}]})
    )
    assert orjson.loads(translated.body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, 1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]},
        ],
        "model": "text-embedding-004",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    as_base64 = EmbeddingRequest(model="e", input="x", encoding_format="base64")
    body = orjson.loads(
        adapter()
        .embeddings_response(dep, as_base64, orjson.dumps({"embedding": {"values": [0.5, -1.0]}}))
        .body
    )
    assert struct.unpack("<2f", base64.b64decode(body["data"][0]["embedding"])) == (0.5, -1.0)
