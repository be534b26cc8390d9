"""The fake's OpenAI wire format: Chat Completions (JSON and SSE), Embeddings, Models."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.types import Receive, Send

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest

_FINGERPRINT = "fp_fake0001"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


def is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 families), which refuse ``max_tokens``."""
    return re.match(r"(o\d|gpt-5)(\b|-|$)", model) is not None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _error_payload(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": "rate_limit_exceeded" if status == 429 else None,
        }
    }


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def chat(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
) -> None:
    body = request.json if isinstance(request.json, dict) else {}
    problem = (
        None
        if isinstance(body.get("messages"), list) and body.get("model")
        else "Invalid body: 'model' and 'messages' are required."
    )
    if problem is None and "max_tokens" in body and is_reasoning_model(str(body["model"])):
        problem = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    if await fake.refuse(send, behaviour, _error_payload, problem):
        return
    model = str(body["model"])
    messages = [
        (str(m.get("role")), _text(m.get("content"))) for m in body["messages"] if isinstance(m, dict)
    ]
    tools = []
    if body.get("tools") and body.get("tool_choice") != "none":
        tools = [t["function"]["name"] for t in body["tools"] if isinstance(t, dict) and "function" in t]
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    turn = fake.plan_turn(messages, tools, behaviour, cap)
    completion_id = fake.new_id("chatcmpl-")
    created = fake.now()
    tool_calls: list[dict[str, Any]] | None = None
    if turn.tool_call is not None:
        tool_calls = [
            {
                "id": fake.new_id("call_"),
                "type": "function",
                "function": {
                    "name": turn.tool_call["name"],
                    "arguments": orjson.dumps(turn.tool_call["arguments"]).decode(),
                },
            }
        ]
    finish = "tool_calls" if tool_calls else "length" if turn.truncated else "stop"

    if not body.get("stream"):
        if behaviour.malformed:
            await fake.send_raw(
                send, 200, b'{"id": "' + completion_id.encode() + b'", "choices": [', b"application/json"
            )
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool_calls else turn.text,
            "refusal": None,
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(turn.prompt_tokens, turn.completion_tokens),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        await fake.send_json(send, 200, payload, [(b"x-request-id", f"req_{completion_id[9:]}".encode())])
        return

    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    envelope = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        data: dict[str, Any] = {
            **envelope,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "" if not tool_calls else None, "refusal": None})]
    if tool_calls:
        call = tool_calls[0]
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        events.append(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]})
        )
        content_events = 2
    else:
        events.extend(chunk({"content": piece}) for piece in turn.pieces)
        content_events = len(turn.pieces)
    if behaviour.malformed:
        events.insert(2, b"data: {this is not json\n\n")
    events.append(chunk({}, finish))
    if include_usage:
        usage_chunk = {
            **envelope,
            "choices": [],
            "usage": _usage(turn.prompt_tokens, turn.completion_tokens),
        }
        events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    await fake.stream(
        send, receive, behaviour, b"text/event-stream; charset=utf-8", events, content_events=content_events
    )


async def embeddings(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, send: Send
) -> None:
    from ._fake_text import count_tokens, embedding_base64, embedding_size, fake_embedding

    body = request.json if isinstance(request.json, dict) else {}
    raw_input = body.get("input")
    well_formed = raw_input is not None and body.get("model")
    problem = None if well_formed else "Invalid body: 'model' and 'input' are required."
    if await fake.refuse(send, behaviour, _error_payload, problem, malformed=b'{"object": "list", "data": ['):
        return
    texts = [raw_input] if isinstance(raw_input, str) else [str(item) for item in raw_input or ()]
    dimensions = embedding_size(body.get("dimensions"))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = fake_embedding(text, dimensions)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_base64(vector) if as_base64 else vector,
            }
        )
    tokens = sum(count_tokens(t) for t in texts)
    payload = {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    await fake.send_json(send, 200, payload)


async def models(fake: FakeProvider, send: Send) -> None:
    created = 1_700_000_000
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "fake"}
        for name in (fake.default_model, "fake-embedding")
    ]
    await fake.send_json(send, 200, {"object": "list", "data": data})
