"""The fake's OpenAI Responses wire format: ``POST /v1/responses`` (JSON and typed SSE events).

Field and event names follow the ``openai`` SDK's ``types.responses``. The fake answers like its chat
endpoint (the echo, a call of the first function tool when tools are offered and a user message is
last, ``Tool said: ...`` after a function call output) and refuses, with OpenAI's error bodies, what the
real API refuses:

- a field ``ResponseCreateParams`` does not define: ``Unknown parameter: 'x'.``, code
  ``unknown_parameter`` (the message and code OpenAI sends, as quoted in public bug reports, e.g.
  github.com/langchain-ai/deepagentsjs/issues/550);
- ``max_output_tokens`` below 16: ``Invalid 'max_output_tokens': integer below minimum value. Expected
  a value >= 16, but got 1 instead.`` (github.com/earendil-works/pi/issues/6265);
- ``reasoning`` or ``text`` that is not an object: ``Invalid type for 'reasoning': expected an object,
  but got a string instead.``, code ``invalid_type`` (OpenAI's wording for a mistyped parameter);
- ``background: true`` without ``stream`` is answered as OpenAI answers it: the response ``queued``,
  with no output and no usage (generated later, for a ``GET`` the fake does not serve);
- a ``function_call_output`` whose ``call_id`` matches no ``function_call`` of the input, without
  ``previous_response_id``: ``No tool call found for function call output with call_id X.``, param
  ``input`` (github.com/continuedev/continue/issues/10092, github.com/vercel/ai/issues/8216).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.types import Receive, Send

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest, _Turn

#: ``ResponseCreateParamsBase``'s fields (openai 3.63) and ``stream``.
FIELDS = frozenset(
    {
        "access_programs",
        "background",
        "background_options",
        "context_management",
        "conversation",
        "image",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "moderation",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)
#: The smallest ``max_output_tokens`` the API takes.
MIN_OUTPUT_TOKENS = 16
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


def error_payload(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    if status == 429 and code is None:
        code = "rate_limit_exceeded"
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
    }


def problem(body: Any) -> dict[str, Any] | None:
    """The 400 body the real API answers ``body`` with, ``None`` when it takes it."""
    if not isinstance(body, dict):
        return error_payload(400, "Invalid body: expected a JSON object.")
    for name in body:
        if name not in FIELDS:
            return error_payload(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_payload(
            400, "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    for name in ("reasoning", "text"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            kind = type(value).__name__.replace("str", "string").replace("list", "array")
            return error_payload(
                400,
                f"Invalid type for '{name}': expected an object, but got a {kind} instead.",
                name,
                "invalid_type",
            )
    cap = body.get("max_output_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap < MIN_OUTPUT_TOKENS:
        return error_payload(
            400,
            "Invalid 'max_output_tokens': integer below minimum value. "
            f"Expected a value >= {MIN_OUTPUT_TOKENS}, but got {cap} instead.",
            "max_output_tokens",
            "integer_below_min_value",
        )
    items = body.get("input")
    if isinstance(items, list) and body.get("previous_response_id") is None:
        calls = {i.get("call_id") for i in items if isinstance(i, dict) and i.get("type") == "function_call"}
        outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        for item in outputs:
            if item.get("call_id") not in calls:
                message = f"No tool call found for function call output with call_id {item.get('call_id')}."
                return error_payload(400, message, "input")
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") in ("input_text", "output_text")
        )
    return ""


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The request as the fake's ``(role, text)`` messages."""
    messages: list[tuple[str, str]] = []
    if isinstance(body.get("instructions"), str):
        messages.append(("system", body["instructions"]))
    items = body.get("input")
    if isinstance(items, str):
        return [*messages, ("user", items)]
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            messages.append((str(item.get("role")), _text(item.get("content"))))
        elif kind == "function_call":
            messages.append(("assistant", ""))
        elif kind == "function_call_output":
            messages.append(("tool", _text(item.get("output"))))
    return messages


def usage(turn: _Turn) -> dict[str, Any]:
    return {
        "input_tokens": turn.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": turn.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": turn.prompt_tokens + turn.completion_tokens,
    }


def response(
    body: dict[str, Any], id: str, created: int, status: str, output: list[Any], turn: _Turn | None
) -> Any:
    text = body.get("text")
    return {
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "service_tier": "default",
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": text if isinstance(text, dict) and text.get("format") else {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [{"strict": True, **t} for t in body.get("tools") or () if isinstance(t, dict)],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage(turn) if turn is not None and status != "in_progress" else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


async def responses(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
) -> None:
    body = request.json
    refusal = problem(body)
    if refusal is not None:
        await fake.send_json(send, 400, refusal)
        return
    assert isinstance(body, dict)
    # a malformed stream is a bad event inside it (below), a malformed answer a cut JSON body
    malformed = None if body.get("stream") else b'{"id": "resp_'
    if await fake.refuse(send, behaviour, error_payload, malformed=malformed):
        return
    tools: list[str] = []
    if body.get("tools") and body.get("tool_choice") != "none":
        tools = [
            str(t.get("name")) for t in body["tools"] if isinstance(t, dict) and t.get("type") == "function"
        ]
    turn = fake.plan_turn(conversation(body), tools, behaviour, body.get("max_output_tokens"))
    response_id = fake.new_id("resp_")
    created = fake.now()
    status = "incomplete" if turn.truncated else "completed"
    if turn.tool_call is not None:
        item: dict[str, Any] = {
            "id": fake.new_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "call_id": fake.new_id("call_"),
            "name": turn.tool_call["name"],
            "arguments": orjson.dumps(turn.tool_call["arguments"]).decode(),
        }
    else:
        part = {"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}
        item = {
            "id": fake.new_id("msg_"),
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [part],
        }
    final = response(body, response_id, created, status, [item], turn)
    if body.get("background") is True and not body.get("stream"):
        # background mode: the response is queued and generated later (polled at GET
        # /v1/responses/{id}); what answers the POST has no output and no usage yet
        queued = {**response(body, response_id, created, "queued", [], None), "background": True}
        await fake.send_json(send, 200, queued)
        return
    if not body.get("stream"):
        await fake.send_json(send, 200, final, [(b"x-request-id", f"req_{response_id[5:]}".encode())])
        return
    await _stream(fake, body, behaviour, receive, send, final, turn)


async def _stream(
    fake: FakeProvider,
    body: dict[str, Any],
    behaviour: FakeBehaviour,
    receive: Receive,
    send: Send,
    final: dict[str, Any],
    turn: _Turn,
) -> None:
    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, **fields}

    item = final["output"][0]
    opening = {**item, "status": "in_progress"}
    where = {"item_id": item["id"], "output_index": 0}
    started = response(body, final["id"], final["created_at"], "in_progress", [], None)
    events = [event("response.created", response=started), event("response.in_progress", response=started)]
    if item["type"] == "function_call":
        opening["arguments"] = ""
        events.append(event("response.output_item.added", output_index=0, item=opening))
        arguments = item["arguments"]
        middle = len(arguments) // 2
        deltas = [arguments[:middle], arguments[middle:]]
        events.extend(event("response.function_call_arguments.delta", **where, delta=d) for d in deltas)
        tail = [event("response.function_call_arguments.done", **where, arguments=arguments)]
    else:
        opening["content"] = []
        part = item["content"][0]
        events.append(event("response.output_item.added", output_index=0, item=opening))
        empty = {**part, "text": ""}
        events.append(event("response.content_part.added", **where, content_index=0, part=empty))
        deltas = turn.pieces
        events.extend(
            event("response.output_text.delta", **where, content_index=0, delta=d, logprobs=[])
            for d in deltas
        )
        tail = [
            event("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]),
            event("response.content_part.done", **where, content_index=0, part=part),
        ]
    head = len(events) - len(deltas)
    if behaviour.stream_error_after is not None:
        events = events[: head + behaviour.stream_error_after]
        events.append(event("error", code="server_error", message=behaviour.error_message, param=None))
    else:
        events.extend(tail)
        events.append(event("response.output_item.done", output_index=0, item=item))
        events.append(event(f"response.{final['status']}", response=final))
    # numbered once the sequence is final, as the API numbers what it sends
    raw = [
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps({**e, "sequence_number": n}) + b"\n\n"
        for n, e in enumerate(events)
    ]
    if behaviour.malformed:
        raw.insert(head, b"event: response.output_text.delta\ndata: {this is not json\n\n")
    await fake.stream(
        send,
        receive,
        behaviour,
        b"text/event-stream; charset=utf-8",
        raw,
        content_events=len(deltas),
        head=head,
    )
