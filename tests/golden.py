"""OpenAI-format requests shared by the per-provider golden tests (and the translation benchmark),
encoders of the providers' native streams, helpers to run a translator, and the OpenAI answers and
chunks the translators should write."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from asgi_aigw.kernel.models import ChatCompletionRequest
from asgi_aigw.kernel.sse import encode_data, encode_event
from asgi_aigw.providers import Deployment, StreamTranslator

CLOCK = 1_700_000_000.0
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
SCHEMA = LOOKUP["function"]["parameters"]  # type: ignore[index]

#: Text with a system prompt.
TEXT: dict[str, Any] = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello there"},
    ],
    "max_tokens": 256,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
}

#: A tool offered, called, and its result sent back.
TOOL_ROUND_TRIP: dict[str, Any] = {
    "model": "alias",
    "messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Find cats"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"query": "cats"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "3 cats found"},
    ],
    "tools": [LOOKUP],
    "tool_choice": "auto",
}

#: An image part, inline (data URL) and by URL.
IMAGE: dict[str, Any] = {
    "model": "alias",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        }
    ],
}
IMAGE_URL = "https://example.com/cat.png"


def request(data: dict[str, Any], **changes: Any) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    body = {**data, **changes}
    return ChatCompletionRequest.model_validate(body), body


def deployment(provider: str, model: str, base_url: str, api_key: str | None = None) -> Deployment:
    return Deployment(
        id=f"{provider}/{model}", provider=provider, model=model, base_url=base_url, api_key=api_key
    )


def ids() -> Any:
    """A deterministic id factory: ``prefix`` + a counter."""
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}{next(counter)}"


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    """Anthropic's stream: each event's name is its data's ``type``."""
    return b"".join(encode_event(event["type"], orjson.dumps(event)) for event in events)


def gemini_sse(*responses: dict[str, Any]) -> bytes:
    """Gemini's ``alt=sse`` stream: one response per event, lines ended by CRLF as Google sends them."""
    return b"".join(b"data: " + orjson.dumps(response) + b"\r\n\r\n" for response in responses)


def openai_sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(encode_data(orjson.dumps(chunk)) for chunk in chunks) + b"data: [DONE]\n\n"


def ndjson(*lines: dict[str, Any]) -> bytes:
    """Ollama's stream: one JSON object a line."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def run_stream(translator: StreamTranslator, native: bytes, split: int | None = None) -> list[Any]:
    """Feed ``native`` in pieces of ``split`` bytes (whole when None); the OpenAI events, decoded."""
    pieces = [native] if split is None else [native[i : i + split] for i in range(0, len(native), split)]
    raw: list[bytes] = []
    for piece in pieces:
        raw.extend(translator.feed(piece))
    raw.extend(translator.close())
    out: list[Any] = []
    for event in raw:
        assert event.startswith(b"data: "), event
        assert event.endswith(b"\n\n"), event
        data = event[6:-2]
        out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


def chunk(id: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(CLOCK),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def usage_chunk(id: str, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(CLOCK),
        "model": model,
        "choices": [],
        "usage": usage,
    }


def completion(id: str, model: str, choice: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` a translated JSON answer should be."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(CLOCK),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def text_choice(content: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "logprobs": None,
        "finish_reason": finish,
    }


def lookup_choice(call_id: str, content: str | None = None) -> dict[str, Any]:
    """The choice of an answer that calls ``lookup`` with ``{"query": "cats"}`` (TOOL_ROUND_TRIP's tool,
    as each provider's example calls it)."""
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"query":"cats"}'},
    }
    return {
        "index": 0,
        "message": {"role": "assistant", "content": content, "tool_calls": [call]},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def lookup_delta(call_id: str, arguments: str) -> dict[str, Any]:
    """The delta of a stream's chunk that starts a call of ``lookup``."""
    call = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": "lookup", "arguments": arguments},
    }
    return {"tool_calls": [call]}


def call_answered(question: str, call: Any, output: str) -> list[dict[str, Any]]:
    """A Responses ``input``: the question, the model's function ``call`` (an output item the SDK
    returned) sent back as it came, and the function's ``output``."""
    echoed = {
        "type": "function_call",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
    }
    return [
        {"role": "user", "content": question},
        echoed,
        {"type": "function_call_output", "call_id": call.call_id, "output": output},
    ]
