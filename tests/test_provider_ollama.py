"""Golden tests: OpenAI format ⇄ Ollama's native API (/api/chat NDJSON, /api/embed)."""

from __future__ import annotations

import orjson
import pytest

from asgi_aigw.kernel.errors import GatewayError, InvalidRequest, UpstreamError
from asgi_aigw.kernel.models import EmbeddingRequest
from asgi_aigw.providers.ollama import OllamaAdapter

from .golden import (
    CLOCK,
    IMAGE,
    IMAGE_URL,
    LOOKUP,
    PNG,
    TEXT,
    TOOL_ROUND_TRIP,
    chunk,
    completion,
    deployment,
    ids,
    lookup_choice,
    lookup_delta,
    ndjson,
    request,
    run_stream,
    text_choice,
    usage_chunk,
)

DEP = deployment("ollama", "llama3.2", "http://localhost:11434")


def adapter() -> OllamaAdapter:
    return OllamaAdapter(clock=lambda: CLOCK, ids=ids())


@pytest.mark.parametrize("stream", [False, True])
def test_text_with_system_prompt(stream: bool) -> None:
    req, body = request(TEXT, stream=stream, seed=7)
    upstream = adapter().chat_request(DEP, req, body, stream=stream)
    assert upstream.url == "http://localhost:11434/api/chat"
    assert upstream.headers == {"content-type": "application/json"}
    assert orjson.loads(upstream.content) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello there"},
        ],
        "options": {"temperature": 0.2, "top_p": 0.9, "num_predict": 256, "stop": ["END"], "seed": 7},
        # Ollama streams unless told otherwise, so the choice is always explicit
        "stream": stream,
    }


def test_every_sampling_parameter_has_its_option_name() -> None:
    req, body = request(TEXT, top_k=40, seed=7, presence_penalty=0.5, frequency_penalty=-0.5, n=1)
    assert adapter().native_chat(DEP, req, body, stream=False)["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "num_predict": 256,
        "stop": ["END"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }


def test_tool_call_round_trip_request() -> None:
    req, body = request(TOOL_ROUND_TRIP)
    assert orjson.loads(adapter().chat_request(DEP, req, body, stream=False).content) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "Find cats"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "lookup", "arguments": {"query": "cats"}}}],
            },
            {"role": "tool", "content": "3 cats found", "tool_name": "lookup"},
        ],
        "tools": [LOOKUP],
        "stream": False,
    }


def test_image_parts_and_formats() -> None:
    req, body = request(IMAGE, response_format={"type": "json_object"})
    payload = adapter().native_chat(DEP, req, body, stream=False)
    assert payload["messages"] == [{"role": "user", "content": "What is in this image?", "images": [PNG]}]
    assert payload["format"] == "json"
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    req, body = request(
        TEXT, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    assert adapter().native_chat(DEP, req, body, stream=False)["format"] == schema
    by_url = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE_URL}}]}],
    }
    req, body = request(by_url)
    with pytest.raises(InvalidRequest, match="base64 data, not URLs"):
        adapter().native_chat(DEP, req, body, stream=False)


def test_answer_translates_back_with_eval_counts_as_usage() -> None:
    native = {
        "model": "llama3.2",
        "created_at": "2023-12-12T14:13:43.416799Z",
        "message": {"role": "assistant", "content": "Hello! How are you today?"},
        "done_reason": "stop",
        "done": True,
        "total_duration": 5191566416,
        "load_duration": 2154458,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000,
        "eval_count": 298,
        "eval_duration": 4799921000,
    }
    req, _ = request(TEXT)
    translated = adapter().chat_response(DEP, req, orjson.dumps(native))
    assert orjson.loads(translated.body) == completion(
        "chatcmpl-1",
        "llama3.2",
        text_choice("Hello! How are you today?"),
        {"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324},
    )
    native["done_reason"] = "length"
    body = orjson.loads(adapter().chat_response(DEP, req, orjson.dumps(native)).body)
    assert body["choices"][0]["finish_reason"] == "length"


#: An answer's message calling the ``lookup`` tool, as Ollama writes it (arguments as an object).
LOOKUP_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [{"function": {"name": "lookup", "arguments": {"query": "cats"}}}],
}


def test_tool_call_answer_translates_back() -> None:
    native = {
        "model": "llama3.2",
        "created_at": "2024-07-22T20:33:28.123648Z",
        "message": LOOKUP_CALL,
        "done_reason": "stop",
        "done": True,
        "prompt_eval_count": 122,
        "eval_count": 33,
    }
    req, _ = request(TOOL_ROUND_TRIP)
    body = orjson.loads(adapter().chat_response(DEP, req, orjson.dumps(native)).body)
    assert body["choices"] == [lookup_choice("call_1")]
    assert body["usage"] == {"prompt_tokens": 122, "completion_tokens": 33, "total_tokens": 155}


def part(content: str) -> dict[str, object]:
    return {
        "model": "llama3.2",
        "created_at": "2023-08-04T08:52:19.385406455-07:00",
        "message": {"role": "assistant", "content": content},
        "done": False,
    }


FINAL = {
    "model": "llama3.2",
    "created_at": "2023-08-04T19:22:45.499127Z",
    "message": {"role": "assistant", "content": ""},
    "done_reason": "stop",
    "done": True,
    "total_duration": 4883583458,
    "prompt_eval_count": 26,
    "eval_count": 2,
}


@pytest.mark.parametrize("split", [None, 1, 11])
def test_ndjson_stream_translates_line_by_line(split: int | None) -> None:
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=True)
    assert run_stream(translator, ndjson(part("The"), part(" sky"), FINAL), split) == [
        chunk("chatcmpl-1", "llama3.2", {"role": "assistant", "content": ""}),
        chunk("chatcmpl-1", "llama3.2", {"content": "The"}),
        chunk("chatcmpl-1", "llama3.2", {"content": " sky"}),
        chunk("chatcmpl-1", "llama3.2", {}, "stop"),
        usage_chunk(
            "chatcmpl-1", "llama3.2", {"prompt_tokens": 26, "completion_tokens": 2, "total_tokens": 28}
        ),
        "[DONE]",
    ]
    assert translator.done


def test_tool_call_stream() -> None:
    calls = {"model": "llama3.2", "created_at": "x", "message": LOOKUP_CALL, "done": False}
    req, _ = request(TOOL_ROUND_TRIP, stream=True)
    assert run_stream(adapter().chat_stream(DEP, req, include_usage=False), ndjson(calls, FINAL)) == [
        chunk("chatcmpl-1", "llama3.2", {"role": "assistant", "content": ""}),
        chunk("chatcmpl-1", "llama3.2", lookup_delta("call_2", '{"query":"cats"}')),
        chunk("chatcmpl-1", "llama3.2", {}, "tool_calls"),
        "[DONE]",
    ]


def test_stream_errors() -> None:
    req, _ = request(TEXT, stream=True)
    translator = adapter().chat_stream(DEP, req, include_usage=False)
    with pytest.raises(UpstreamError, match="ollama failed while answering: out of memory"):
        translator.feed(ndjson(part("The"), {"error": "out of memory"}))
    cut = adapter().chat_stream(DEP, req, include_usage=False)
    run_stream(cut, ndjson(part("The")))
    assert not cut.done


@pytest.mark.parametrize(("status", "expected"), [(404, 404), (400, 400), (500, 502), (503, 503)])
def test_errors_are_openai_shaped(status: int, expected: int) -> None:
    error = adapter().error(status, b'{"error": "model \\"nope\\" not found, try pulling it first"}', {})
    assert isinstance(error, GatewayError)
    assert error.status == expected
    assert 'model "nope" not found' in error.message


def test_embeddings() -> None:
    dep = deployment("ollama", "all-minilm", "http://localhost:11434")
    req = EmbeddingRequest(model="e", input=["Why is the sky blue?", "Why is the grass green?"], dimensions=2)
    upstream = adapter().embeddings_request(dep, req, {})
    assert upstream.url == "http://localhost:11434/api/embed"
    assert orjson.loads(upstream.content) == {
        "model": "all-minilm",
        "input": ["Why is the sky blue?", "Why is the grass green?"],
        "dimensions": 2,
    }
    native = {
        "model": "all-minilm",
        "embeddings": [[0.01, -0.5], [0.25, 0.5]],
        "total_duration": 14143917,
        "prompt_eval_count": 8,
    }
    translated = adapter().embeddings_response(
        dep, EmbeddingRequest(model="e", input=["a", "b"], encoding_format="float"), orjson.dumps(native)
    )
    assert orjson.loads(translated.body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.01, -0.5]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 0.5]},
        ],
        "model": "all-minilm",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    assert translated.usage is not None
    assert translated.usage.prompt_tokens == 8
