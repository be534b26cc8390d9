"""OpenAI-format requests shared by the per-provider golden tests, and helpers to run a translator."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from asgi_aigw.models import ChatCompletionRequest
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
