"""OpenAI Responses (``POST /v1/responses``), as the ``openai`` SDK's ``types.responses`` define it.

Errors are OpenAI's error object, but a stream's error is the Responses API's own ``error`` event
(``{"type": "error", "code", "message", "param", "sequence_number"}``); the output cap is
``max_output_tokens``; one answer per request. Usage is ``input_tokens`` (cache reads and writes
included, broken down in ``input_tokens_details``) and ``output_tokens`` (reasoning included), which a
stream reports once, in the ``response`` of its last event (``response.completed``,
``response.incomplete`` or ``response.failed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..caps import positive_cap
from ..context import Usage
from ..sse import encode_event

if TYPE_CHECKING:
    from ..errors import GatewayError

#: The events whose ``response`` carries the final usage.
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
#: The events whose ``delta`` is generated text.
_DELTA_EVENTS = frozenset(
    {"response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta"}
)


def usage_from_responses(data: Any) -> Usage | None:
    """Read a Responses ``usage`` object; ``None`` when absent or malformed.

    ``input_tokens`` already includes cache reads (``input_tokens_details.cached_tokens``) and writes
    (``cache_write_tokens``), as ``Usage.prompt_tokens`` does; ``output_tokens`` includes reasoning.
    """
    if not isinstance(data, dict):
        return None
    try:
        prompt = int(data.get("input_tokens") or 0)
        completion = int(data.get("output_tokens") or 0)
        total = int(data.get("total_tokens") or prompt + completion)
        details = data.get("input_tokens_details")
        cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
        written = int(details.get("cache_write_tokens") or 0) if isinstance(details, dict) else 0
        output = data.get("output_tokens_details")
        reasoning = int(output.get("reasoning_tokens") or 0) if isinstance(output, dict) else 0
    except (TypeError, ValueError):
        return None
    return Usage(prompt, completion, total, cached, cache_write_tokens=written, reasoning_tokens=reasoning)


def item_text(item: Any) -> str:
    """The generated text of one output item: text and refusal parts, a function call's name and
    arguments."""
    if not isinstance(item, dict):
        return ""
    kind = item.get("type")
    if kind == "message":
        parts: list[str] = []
        for part in item.get("content") or ():
            if not isinstance(part, dict):
                continue
            value = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
            if isinstance(value, str):
                parts.append(value)
        return "".join(parts)
    if kind == "function_call":
        name, arguments = item.get("name"), item.get("arguments")
        return (name if isinstance(name, str) else "") + (arguments if isinstance(arguments, str) else "")
    return ""


def error_payload(exc: GatewayError, sequence_number: int = 0) -> dict[str, Any]:
    """The Responses API's ``error`` stream event for ``exc``."""
    return {
        "type": "error",
        "code": exc.code,
        "message": exc.message,
        "param": exc.param,
        "sequence_number": sequence_number,
    }


class ResponsesStreamMeter:
    """Text from the delta events, the function call's name from ``output_item.added``, usage and
    model from the lifecycle events' ``response``; the last ``sequence_number`` seen, so an error event
    written after them can continue the numbering."""

    __slots__ = ("model", "sequence_number", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.model: str | None = None
        #: The ``sequence_number`` of the last event fed, ``None`` before any.
        self.sequence_number: int | None = None

    def feed(self, event: str | None, payload: Any) -> str:
        if not isinstance(payload, dict):
            return ""
        number = payload.get("sequence_number")
        if isinstance(number, int) and not isinstance(number, bool):
            self.sequence_number = number
        kind = payload.get("type")
        if kind in _DELTA_EVENTS:
            delta = payload.get("delta")
            return delta if isinstance(delta, str) else ""
        if kind == "response.output_item.added":
            item = payload.get("item")
            # the name arrives whole here; the arguments follow as deltas
            if isinstance(item, dict) and item.get("type") == "function_call":
                name = item.get("name")
                return name if isinstance(name, str) else ""
            return ""
        response = payload.get("response")
        if isinstance(response, dict):
            model = response.get("model")
            if isinstance(model, str) and model:
                self.model = model
            if kind in _FINAL_EVENTS:
                usage = usage_from_responses(response.get("usage"))
                if usage is not None:
                    self.usage = usage
        return ""

    def next_sequence_number(self) -> int:
        """The number an event written after those fed takes."""
        return 0 if self.sequence_number is None else self.sequence_number + 1


class ResponsesDialect:
    """``POST /v1/responses``: OpenAI's errors, ``max_output_tokens``, one answer."""

    name = "responses"
    # only the final event's response has usage (null in response.created and in_progress)
    usage_mark = b'"usage"'
    final_mark = b'"usage"'
    cap_required = False

    def error_body(self, exc: GatewayError) -> bytes:
        return exc.to_json()

    def error_event(self, exc: GatewayError, sequence_number: int = 0) -> bytes:
        # the documented ``error`` event, not the error object: the openai SDK yields it as a
        # ResponseErrorEvent; a layer that metered the stream passes meter.next_sequence_number()
        return encode_event("error", orjson.dumps(error_payload(exc, sequence_number)))

    def client_cap(self, data: Mapping[str, Any]) -> int | None:
        return positive_cap(data, "max_output_tokens")

    def cap_field(self, model: str | None) -> str:
        return "max_output_tokens"

    def choices(self, data: Mapping[str, Any]) -> int:
        return 1

    def usage(self, payload: Any) -> Usage | None:
        return usage_from_responses(payload.get("usage")) if isinstance(payload, dict) else None

    def answer_text(self, payload: Any) -> str:
        if not isinstance(payload, dict):
            return ""
        return "".join(item_text(item) for item in payload.get("output") or ())

    def stream_meter(self) -> ResponsesStreamMeter:
        return ResponsesStreamMeter()


RESPONSES = ResponsesDialect()
