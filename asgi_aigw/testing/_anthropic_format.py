"""The fake's Anthropic wire format: ``POST /v1/messages``, JSON and SSE, and
``POST /v1/messages/count_tokens`` (docs.anthropic.com, "Messages" and "Count Message tokens")."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.types import Receive, Send
from ._anthropic_cache import ttl_problem
from ._anthropic_output import output_config_problem, structured_answer

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


#: The Messages API's request fields (docs.anthropic.com, "Messages"); any other is refused, as the real
#: API does: ``400 invalid_request_error "<field>: Extra inputs are not permitted"``.
_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "output_config",
    }
)


#: Prompt caching takes at most four breakpoints per request (docs.anthropic.com, "Prompt caching").
_MAX_CACHE_BREAKPOINTS = 4


def _cache_breakpoints(body: dict[str, Any]) -> int:
    blocks: list[Any] = list(body.get("tools") or [])
    if isinstance(body.get("system"), list):
        blocks.extend(body["system"])
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            blocks.extend(message["content"])
    return sum(1 for b in blocks if isinstance(b, dict) and "cache_control" in b)


#: The fields ``count_tokens`` takes (no ``max_tokens``, no sampling, no ``stream``).
_COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"})
#: The least ``thinking.budget_tokens`` accepts (docs.anthropic.com, "Extended thinking").
MIN_THINKING_BUDGET = 1024
#: Block types whose request form has no ``cache_control`` field (the SDK's ``ThinkingBlockParam``
#: and ``RedactedThinkingBlockParam``): the API refuses the field there as an extra input.
_NO_CACHE_CONTROL = frozenset({"thinking", "redacted_thinking"})


def header_problem(headers: dict[str, str]) -> str | None:
    """The real API refuses a request without its version header."""
    return None if headers.get("anthropic-version") else "anthropic-version: header is required"


def _thinking_problem(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
        return (
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
        )
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and budget >= max_tokens:
        return "`max_tokens` must be greater than `thinking.budget_tokens`."
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return (
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our "
            "documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking"
            "#important-considerations-when-using-extended-thinking"
        )
    if "top_k" in body:
        return "`top_k` is not supported when thinking is enabled."
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and not 0.95 <= top_p <= 1:
        return "`top_p` must be between 0.95 and 1 when thinking is enabled."
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return _unsigned_turn(body.get("messages"))


def _unsigned_turn(messages: Any) -> str | None:
    """With thinking on, the assistant turn whose tool calls the last message answers must start with
    its (signed) thinking block."""
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1].get("content")
    answering = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    )
    turns = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
    if not answering or not turns:
        return None
    content = messages[turns[-1]].get("content")
    first = content[0] if isinstance(content, list) and content else None
    first = first if isinstance(first, dict) else {"type": "text"}
    kind = first.get("type")
    if kind == "redacted_thinking":
        return None
    if kind == "thinking":
        # a real signature cannot be checked here (it is Anthropic's); one must be there
        if isinstance(first.get("signature"), str) and first["signature"]:
            return None
        return f"messages.{turns[-1]}.content.0.thinking.signature: Field required"
    return (
        f"messages.{turns[-1]}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        f"`{kind}`. When `thinking` is enabled, a final `assistant` message must start with a thinking "
        "block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
        "include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. "
        "Please consult our documentation at "
        "https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking"
    )


#: The signature of the fake's thinking blocks (real ones are opaque base64).
SIGNATURE = "RmFrZVNpZ25hdHVyZS1ub3QtcmVhbA=="


def thinking_enabled(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _blocks_problem(body: dict[str, Any]) -> str | None:
    """Per block: ``cache_control`` where the block type has no such field or the text is empty, and
    tool results answering no ``tool_use`` of the assistant turn just before."""
    previous_calls: set[str] = set()
    for m, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        calls: set[str] = set()
        for b, block in enumerate(blocks):
            kind = block.get("type")
            at = f"messages.{m}.content.{b}"
            if "cache_control" in block:
                if kind in _NO_CACHE_CONTROL:
                    return f"{at}.{kind}.cache_control: Extra inputs are not permitted"
                if kind == "text" and not block.get("text"):
                    return f"{at}.text: cache_control cannot be set for empty text blocks"
            if kind == "tool_use" and isinstance(block.get("id"), str):
                calls.add(block["id"])
            if kind == "tool_result" and block.get("tool_use_id") not in previous_calls:
                return (
                    f"{at}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                    "`tool_use` block in the previous message."
                )
        previous_calls = calls if isinstance(message, dict) and message.get("role") == "assistant" else set()
    return None


def request_problem(body: dict[str, Any], *, count: bool = False) -> str | None:
    """The real API's 400 message for a Messages body (``count``: a ``count_tokens`` body), or ``None``."""
    if not body.get("model"):
        return "model: Field required"
    if not count and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages: Field required"
    for field in body:
        if field not in (_COUNT_FIELDS if count else _FIELDS):
            return f"{field}: Extra inputs are not permitted"
    if (problem := _thinking_problem(body)) is not None:
        return problem
    if (problem := _blocks_problem(body)) is not None:
        return problem
    if (problem := output_config_problem(body)) is not None:
        return problem
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
        return "temperature: Input should be less than or equal to 1"
    if "temperature" in body and "top_p" in body:
        # current Claude models take one of the two (docs.anthropic.com, "Migrating to Claude 4.5")
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    if (marked := _cache_breakpoints(body)) > _MAX_CACHE_BREAKPOINTS:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marked}."
    if marked and (problem := ttl_problem(body)) is not None:
        return problem
    if body.get("service_tier", "auto") not in ("auto", "standard_only"):
        return "service_tier: Input should be 'auto' or 'standard_only'"
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and set(metadata) - {"user_id"}:
        extra = sorted(set(metadata) - {"user_id"})[0]
        return f"metadata.{extra}: Extra inputs are not permitted"
    return None


def error_payload(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """``(role, text)`` pairs as the OpenAI format counts them: system first, tool results as ``tool``."""
    out: list[tuple[str, str]] = []
    system = body.get("system")
    if system:
        out.append(("system", _text(system)))
    for message in body["messages"]:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):
            out.append((role, content))
            continue
        blocks = [b for b in content or [] if isinstance(b, dict)]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        out.extend(("tool", _text(r.get("content"))) for r in results)
        texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
        if texts or not results:
            out.append((role, "\n".join(texts)))
    return out


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def messages(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
) -> None:
    body = request.json if isinstance(request.json, dict) else None
    problem = header_problem(request.headers)
    if problem is None:
        problem = "The request body is not valid JSON." if body is None else request_problem(body)
    if await fake.refuse(send, behaviour, error_payload, problem) or body is None:
        return
    model = str(body["model"])
    tools: list[str] = []
    choice = body.get("tool_choice")
    if body.get("tools") and not (isinstance(choice, dict) and choice.get("type") == "none"):
        tools = [str(t["name"]) for t in body["tools"] if isinstance(t, dict) and "name" in t]
    if behaviour.answer is None and (structured := structured_answer(body)) is not None:
        behaviour = dataclasses.replace(behaviour, answer=structured)
    messages_ = conversation(body)
    cap = body.get("max_tokens")
    # thinking comes first and counts in output_tokens: max_tokens bounds thinking and answer together
    thought, thought_pieces = fake.thinking(messages_) if thinking_enabled(body) else ("", [])
    if isinstance(cap, int) and thought:
        cap = max(cap - len(thought_pieces), 1)
    turn = fake.plan_turn(messages_, tools, behaviour, cap)
    message_id = fake.new_id("msg_")
    cached = fake.prompt_cache.use(body, turn.prompt_tokens)
    usage = {
        "input_tokens": turn.prompt_tokens - cached.read - cached.written,
        "cache_creation_input_tokens": cached.written,
        "cache_read_input_tokens": cached.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cached.write_5m,
            "ephemeral_1h_input_tokens": cached.write_1h,
        },
        "output_tokens": turn.completion_tokens + len(thought_pieces),
    }
    tool_use: dict[str, Any] | None = None
    if turn.tool_call is not None:
        tool_use = {
            "type": "tool_use",
            "id": fake.new_id("toolu_"),
            "name": turn.tool_call["name"],
            "input": turn.tool_call["arguments"],
        }
    stop_reason = (
        "refusal"
        if behaviour.blocked
        else "tool_use"
        if tool_use
        else "max_tokens"
        if turn.truncated
        else "end_turn"
    )
    thinking_block = {"type": "thinking", "thinking": thought, "signature": SIGNATURE} if thought else None

    if not body.get("stream"):
        if behaviour.malformed:
            await fake.send_raw(
                send, 200, b'{"id": "' + message_id.encode() + b'", "content": [', b"application/json"
            )
            return
        content = (
            [] if behaviour.blocked else ([tool_use] if tool_use else [{"type": "text", "text": turn.text}])
        )
        if thinking_block is not None and not behaviour.blocked:
            content.insert(0, thinking_block)
        payload = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        await fake.send_json(send, 200, payload, [(b"request-id", f"req_{message_id[4:]}".encode())])
        return

    start = {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        },
    }
    # the thinking block (index 0) streams before the answer's block, with its signature last
    index = 1 if thought else 0
    block = {**tool_use, "input": {}} if tool_use else {"type": "text", "text": ""}
    first = {"type": "thinking", "thinking": "", "signature": ""} if thought else block
    events = [
        _event("message_start", start),
        _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": first}),
        _event("ping", {"type": "ping"}),
    ]
    middle: list[dict[str, Any]] = []
    if thought:
        middle.extend({"type": "thinking_delta", "thinking": piece} for piece in thought_pieces)
        middle.append({"type": "signature_delta", "signature": SIGNATURE})
    if tool_use:
        arguments = orjson.dumps(tool_use["input"]).decode()
        half = len(arguments) // 2
        parts = (arguments[:half], arguments[half:])
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in parts]
    elif behaviour.blocked:
        deltas = []
    else:
        deltas = [{"type": "text_delta", "text": piece} for piece in turn.pieces]
    content_events = [
        _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        for delta in middle
    ]
    if thought:
        content_events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        content_events.append(
            _event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": block})
        )
    content_events.extend(
        _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        for delta in deltas
    )
    events.extend(content_events)
    if behaviour.malformed:
        events.insert(3, b"event: content_block_delta\ndata: {this is not json\n\n")
    if behaviour.stream_error_after is not None:
        events = events[: 3 + behaviour.stream_error_after]
        events.append(_event("error", error_payload(529, "Overloaded")))
    else:
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        events.append(_event("message_stop", {"type": "message_stop"}))
    await fake.stream(
        send,
        receive,
        behaviour,
        b"text/event-stream; charset=utf-8",
        events,
        content_events=len(content_events),
        head=3,
    )


async def count_tokens(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, send: Send
) -> None:
    """``{"input_tokens": N}``: the input tokens a ``/v1/messages`` call with this body reports."""
    body = request.json if isinstance(request.json, dict) else None
    problem = header_problem(request.headers)
    if problem is None:
        problem = "The request body is not valid JSON." if body is None else request_problem(body, count=True)
    if await fake.refuse(send, behaviour, error_payload, problem) or body is None:
        return
    turn = fake.plan_turn(conversation(body), [], behaviour)
    await fake.send_json(send, 200, {"input_tokens": turn.prompt_tokens})
