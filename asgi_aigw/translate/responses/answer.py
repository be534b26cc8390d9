"""A complete chat completion as a Responses ``response`` object.

The answer's text becomes a ``message`` output item (``msg_...``) with an ``output_text`` part (and a
``refusal`` part for a refusal); each tool call a ``function_call`` item (``fc_...``) whose ``call_id``
is the tool call's id as the provider sent it, so the client's ``function_call_output`` finds it again.
``finish_reason: length`` is ``status: incomplete`` with ``incomplete_details.reason:
max_output_tokens`` (``content_filter`` likewise); anything else is ``completed``. The response echoes
the request's settings as OpenAI's does, and says ``store: false``: the gateway keeps no responses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ...kernel.context import Usage
from ...kernel.errors import UpstreamError

IdFactory = Callable[[str], str]

#: Chat finish reasons that leave a response incomplete, and the reason Responses gives.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def random_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def response_id(native: Any, ids: IdFactory) -> str:
    """A Responses id (``resp_...``) keeping the provider's completion id for tracing."""
    if not isinstance(native, str) or not native:
        return ids("resp_")
    native = native.removeprefix("chatcmpl-")
    return native if native.startswith("resp_") else f"resp_{native}"


def usage_object(usage: Usage, reasoning_tokens: int | None = None) -> dict[str, Any]:
    """The Responses ``usage`` object for these figures (input includes cache reads and writes, output
    includes ``reasoning_tokens``, the usage's own unless given)."""
    if reasoning_tokens is None:
        reasoning_tokens = usage.reasoning_tokens
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def chat_usage(data: Any, known: Usage | None = None) -> dict[str, Any] | None:
    """The Responses ``usage`` of a chat answer's or usage chunk's ``usage`` (``known``, the adapter's
    reading, wins for the counts: it keeps cache writes, which the chat format has no field for)."""
    usage = known if known is not None else Usage.from_openai(data)
    if usage is None:
        return None
    reasoning = usage.reasoning_tokens
    if isinstance(data, dict):
        details = data.get("completion_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
            reasoning = details["reasoning_tokens"]
    return usage_object(usage, reasoning)


def envelope(
    request: Mapping[str, Any],
    *,
    id: str,
    created_at: float,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
) -> dict[str, Any]:
    """A ``response`` object: the answer's parts and the request's settings, as OpenAI echoes them."""
    text = request.get("text")
    reasoning = request.get("reasoning")
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": None,
        "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": None},
        "service_tier": request.get("service_tier"),
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": text if isinstance(text, dict) and text.get("format") else {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": [_tool(tool) for tool in request.get("tools") or ()],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _tool(tool: Any) -> Any:
    # OpenAI echoes function tools with ``strict`` set (true unless the request said otherwise)
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "parameters": None, "strict": True, **tool}
    return tool


def message_item(id: str, text: str | None, refusal: str | None, status: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": id, "type": "message", "status": status, "role": "assistant", "content": content}


def function_call_item(id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_answer(
    completion: Mapping[str, Any],
    request: Mapping[str, Any],
    *,
    usage: Usage | None = None,
    ids: IdFactory = random_id,
) -> dict[str, Any]:
    """The Responses answer to ``request`` (the client's Responses body) for a chat ``completion``.

    ``usage`` is the adapter's reading of the answer's usage when it has one (cache writes included).
    """
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise UpstreamError("The upstream answer has no message to translate.")
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    incomplete = INCOMPLETE.get(finish) if isinstance(finish, str) else None
    status = "incomplete" if incomplete else "completed"
    output: list[dict[str, Any]] = []
    content, refusal = message.get("content"), message.get("refusal")
    if content or refusal:
        text = content if isinstance(content, str) else None
        output.append(message_item(ids("msg_"), text, refusal if isinstance(refusal, str) else None, status))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id") if isinstance(call.get("id"), str) else ids("call_")
        output.append(
            function_call_item(
                ids("fc_"),
                call_id,
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
                "completed",
            )
        )
    created = completion.get("created")
    model = completion.get("model")
    return envelope(
        request,
        id=response_id(completion.get("id"), ids),
        created_at=created if isinstance(created, int | float) else 0,
        model=model if isinstance(model, str) else str(request.get("model") or ""),
        status=status,
        output=output,
        usage=chat_usage(completion.get("usage"), usage),
        incomplete=incomplete,
    )
