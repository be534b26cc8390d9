"""A complete chat completion as a Messages answer (``{"type": "message", "content": [...]}``)."""

from __future__ import annotations

from typing import Any

import orjson

from ...kernel.context import Usage
from ...kernel.errors import UpstreamError
from ...providers.base import TranslatedResponse

#: OpenAI finish reasons as Anthropic stop reasons (``stop`` cannot tell a stop sequence from the
#: natural end: OpenAI does not say which, so it is ``end_turn``).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish: Any) -> str:
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def message_id(native: Any, fallback: str) -> str:
    """A Messages id (``msg_...``) keeping the provider's id for tracing (``chatcmpl-`` taken off)."""
    if not isinstance(native, str) or not native:
        return fallback
    native = native.removeprefix("chatcmpl-")
    return native if native.startswith("msg_") else f"msg_{native}"


def tool_input(arguments: Any, name: str) -> dict[str, Any]:
    """A tool call's JSON-encoded arguments as the object Anthropic's ``input`` is."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"The upstream called the tool '{name}' with arguments that are not JSON."
        ) from None
    if not isinstance(value, dict):
        raise UpstreamError(f"The upstream called the tool '{name}' with arguments that are not an object.")
    return value


def usage_object(usage: Usage | None) -> dict[str, Any]:
    return (usage or Usage()).to_anthropic()


def message_answer(translated: TranslatedResponse, model: str, fallback_id: str) -> TranslatedResponse:
    """The Messages answer for an OpenAI ``chat.completion`` (the body an adapter made)."""
    try:
        data = orjson.loads(translated.body)
    except orjson.JSONDecodeError:
        raise UpstreamError("The upstream answered with a chat completion that is not valid JSON.") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("The upstream answered with a chat completion without a choice.")
    choice = choices[0]
    found = choice.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not content:
        content.append({"type": "text", "text": refusal})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        name = str(function.get("name") or "")
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": name,
                "input": tool_input(function.get("arguments"), name),
            }
        )
    reason = stop_reason(choice.get("finish_reason"))
    if isinstance(refusal, str) and refusal:
        reason = "refusal"
    payload = {
        "id": message_id(data.get("id"), fallback_id),
        "type": "message",
        "role": "assistant",
        "model": translated.model or model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": usage_object(translated.usage),
    }
    return TranslatedResponse(orjson.dumps(payload), translated.usage, translated.model)
