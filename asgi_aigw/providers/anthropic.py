"""Anthropic Messages API (``POST /v1/messages``) to and from the OpenAI format.

Wire format as documented by Anthropic (docs.anthropic.com, "Messages" and "Streaming Messages"):

- request: ``system`` is a top-level field (there is no system role), ``max_tokens`` is required,
  content is a list of blocks (``text``, ``image`` with a ``base64`` or ``url`` source, ``tool_use``,
  ``tool_result``), tools are ``{name, description, input_schema}``;
- extended thinking: ``thinking: {type: enabled, budget_tokens}`` (at least 1024, below ``max_tokens``,
  which bounds thinking and text together), with no ``temperature`` other than 1, no ``top_k``, ``top_p``
  only from 0.95 to 1 and no forced tool use; answers carry ``thinking`` blocks (text and ``signature``),
  streams ``thinking_delta`` and ``signature_delta``;
- answer: ``content`` blocks, ``stop_reason`` (``end_turn``, ``max_tokens``, ``stop_sequence``,
  ``tool_use``, ``pause_turn``, ``refusal``) and ``usage`` (``input_tokens``, ``output_tokens``,
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``);
- stream: SSE events ``message_start``, ``content_block_start``, ``content_block_delta``
  (``text_delta``, ``input_json_delta``), ``content_block_stop``, ``message_delta`` (stop reason, the
  cumulative ``output_tokens``), ``message_stop``, ``ping`` and ``error``;
- errors: ``{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}``,
  529 when Anthropic is overloaded.
"""

from __future__ import annotations

from typing import Any

from ..kernel.context import Usage
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError, clip
from ..kernel.models import ChatCompletionRequest, ChatMessage, ContentPart, EmbeddingRequest
from ..kernel.sse import SSEDecoder
from . import _reasoning as r
from . import _translate as t
from ._anthropic_schema import anthropic_schema
from .base import Deployment, TranslatedResponse, UpstreamRequest
from .errors import error_from_status

#: The API version this adapter speaks (sent as ``anthropic-version``).
ANTHROPIC_VERSION = "2023-06-01"
#: ``max_tokens`` is required by Anthropic; used when the client sets neither ``max_tokens`` nor
#: ``max_completion_tokens``.
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": t.CONTENT_FILTER,
}

#: The OpenAI sampling parameters the Messages API takes (``max_tokens`` is set apart: it is required).
_SAMPLING: dict[t.SamplingParameter, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop": "stop_sequences",
}
#: OpenAI's ``service_tier`` values with an Anthropic equivalent: ``auto`` (priority capacity when the
#: organisation has it) and ``default`` (standard capacity only); ``flex``, ``scale`` and ``priority``
#: have none and are dropped with the header.
_SERVICE_TIERS = {"auto": "auto", "default": "standard_only"}
#: Anthropic's temperature range is 0-1 (OpenAI's is 0-2).
MAX_TEMPERATURE = 1.0


def _checked(request: ChatCompletionRequest) -> None:
    """Refuse what the Messages API cannot do, before anything is sent (or billed)."""
    if request.temperature is not None and request.temperature > MAX_TEMPERATURE:
        # rescaling would change what the client asked for; a 400 lets it choose
        raise InvalidRequest(
            f"temperature {request.temperature} is above Anthropic's maximum of 1; send a value "
            "between 0 and 1 for this model.",
            param="temperature",
        )
    tier = (request.model_extra or {}).get("service_tier")
    if tier is not None and not isinstance(tier, str):
        # OpenAI refuses it too; and a list or an object is no key of the tier table
        raise InvalidRequest(
            f"service_tier must be a string such as 'auto' or 'default', not {clip(repr(tier))}.",
            param="service_tier",
        )
    if (request.n or 1) > 1:
        raise InvalidRequest(
            "Anthropic returns one choice per request: send n = 1 (or leave it out) and make several "
            "requests for several answers.",
            param="n",
        )
    response_format = request.response_format
    kind = response_format.get("type") if response_format else None
    if kind not in (None, "text", "json_schema"):
        raise InvalidRequest(
            f"response_format {clip(repr(kind))} cannot be sent to Anthropic: its structured outputs "
            "take a schema, and it has no schema-less JSON mode. Send response_format json_schema "
            "with the JSON Schema the answer must follow.",
            param="response_format",
        )


def _output_config(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """``response_format`` json_schema as Anthropic's ``output_config`` (structured outputs)."""
    response_format = request.response_format
    if not response_format or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "response_format json_schema needs json_schema.schema, a JSON Schema object.",
            param="response_format",
        )
    return {"format": {"type": "json_schema", "schema": anthropic_schema(schema, param="response_format")}}


def _sampling(request: ChatCompletionRequest, body: dict[str, Any], *, thinking: bool) -> dict[str, Any]:
    params = t.sampling(request, body, _SAMPLING)
    if thinking:
        # extended thinking refuses these (docs.anthropic.com, "Extended thinking"): they are sampling
        # hints, so they are dropped with the header rather than the request refused
        for name in _thinking_refuses(params):
            params.pop(name)
    if "temperature" in params:
        # current Claude models refuse temperature with top_p: temperature wins (reported as dropped)
        params.pop("top_p", None)
    return params


#: The ``top_p`` range extended thinking accepts.
_THINKING_TOP_P = (0.95, 1.0)


def _thinking_refuses(params: dict[str, Any]) -> list[str]:
    """The sampling fields (native names, which are OpenAI's too) extended thinking refuses."""
    refused = [name for name in ("top_k",) if name in params]
    if params.get("temperature", 1) != 1:
        refused.append("temperature")
    low, high = _THINKING_TOP_P
    if "top_p" in params and not low <= params["top_p"] <= high:
        refused.append("top_p")
    return refused


def _thinking_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    """The ``thinking_blocks`` a client sent back with an assistant turn (LiteLLM's field for
    Anthropic's signed thinking blocks), in the block shape the Messages API takes."""
    blocks: list[dict[str, Any]] = []
    for block in (message.model_extra or {}).get("thinking_blocks") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking" and isinstance(block.get("signature"), str):
            text = str(block.get("thinking") or "")
            blocks.append({"type": "thinking", "thinking": text, "signature": block["signature"]})
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
    return blocks


def _unsigned_tool_turn(request: ChatCompletionRequest) -> bool:
    """Whether the request answers tool calls whose assistant turn came without its thinking blocks.

    With thinking on, Anthropic requires the assistant turn of the tool calls being answered to start
    with the signed thinking block it produced; the Chat Completions format has no place for it (only
    ``thinking_blocks``, which few clients send back), so such a turn is sent without thinking.
    """
    messages = request.messages
    if not messages or messages[-1].role not in ("tool", "function"):
        return False
    turn = next((m for m in reversed(messages) if m.role == "assistant"), None)
    return turn is not None and not _thinking_blocks(turn)


def _thinking(
    request: ChatCompletionRequest, effort: r.Effort | None, default_max_tokens: int
) -> tuple[dict[str, Any] | None, int]:
    """``(thinking, max_tokens)``: Anthropic's thinking configuration for ``effort`` (``None``: none),
    and the ``max_tokens`` to send, which bounds thinking and answer together."""
    cap = request.output_limit
    if effort is None or effort == "none" or _unsigned_tool_turn(request):
        return None, cap or default_max_tokens
    if request.tool_choice == "required" or isinstance(request.tool_choice, dict):
        raise InvalidRequest(
            "Anthropic cannot force a tool call while thinking: send tool_choice auto (or none) with "
            "reasoning_effort, or leave reasoning_effort out.",
            param="tool_choice",
        )
    budget = r.ANTHROPIC_BUDGET[effort]
    if cap is None:
        # no cap from the client (nor from a budget layer): room for the thinking and a usual answer
        return {"type": "enabled", "budget_tokens": budget}, budget + default_max_tokens
    # a cap the client (or the budget layer) set is kept: it is what was reserved and may be spent;
    # thinking takes at most half of it so the answer keeps the other half
    budget = min(budget, cap // 2)
    if budget < r.ANTHROPIC_MIN_BUDGET:
        raise InvalidRequest(
            f"reasoning_effort {effort!r} needs an output cap of at least {2 * r.ANTHROPIC_MIN_BUDGET} "
            f"tokens for Anthropic (thinking takes at least {r.ANTHROPIC_MIN_BUDGET} tokens of the cap, "
            f"the answer the rest); the cap is {cap}. Raise max_tokens (or max_completion_tokens), or "
            "leave reasoning_effort out.",
            param="max_tokens",
        )
    return {"type": "enabled", "budget_tokens": budget}, cap


#: Anthropic's error types and the status each comes with (docs.anthropic.com "Errors"); used for
#: ``error`` events inside a stream, which carry no HTTP status of their own.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _image_block(url: str) -> dict[str, Any]:
    inline = t.parse_data_url(url)
    if inline is not None:
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _cache_control(part: ContentPart) -> Any:
    """A part's Anthropic prompt-caching marker (``{"type": "ephemeral"}``), if the client set one."""
    return (part.model_extra or {}).get("cache_control")


def _blocks(parts: list[ContentPart]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if part.type == "text":
            block = {"type": "text", "text": part.text or ""}
        elif part.type == "image_url" and part.image_url is not None:
            block = _image_block(part.image_url.url)
        else:
            raise InvalidRequest(
                f"Content parts of type '{part.type}' cannot be sent to Anthropic through this gateway; "
                "use text and image_url parts.",
                param="messages",
            )
        # the cache breakpoint stays on its block: dropping it would bill the prefix at full price
        if (marker := _cache_control(part)) is not None:
            block["cache_control"] = marker
        blocks.append(block)
    return blocks


def _system(messages: list[ChatMessage]) -> str | list[dict[str, Any]] | None:
    """The top-level ``system``: one string, or text blocks when a part carries a cache breakpoint."""
    if not messages:
        return None
    marked = any(
        isinstance(m.content, list) and any(_cache_control(p) is not None for p in m.content)
        for m in messages
    )
    if not marked:
        return "\n\n".join(m.text() for m in messages)
    blocks: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message.content, list):
            blocks.extend(_blocks([p for p in message.content if p.type == "text"]))
        else:
            blocks.append({"type": "text", "text": message.text()})
    return blocks


def _messages(
    request: ChatCompletionRequest, *, thinking: bool = False
) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    system: list[ChatMessage] = []
    out: list[dict[str, Any]] = []
    # an open user message holding tool results, so parallel results travel in one turn as required
    results: list[dict[str, Any]] | None = None
    for message in request.messages:
        role = message.role
        if role in ("system", "developer"):
            system.append(message)
            continue
        if role == "tool" or role == "function":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.text(),
            }
            if results is None:
                results = [block]
                out.append({"role": "user", "content": results})
            else:
                results.append(block)
            continue
        results = None
        if role == "assistant":
            if message.tool_calls:
                # signed thinking blocks go first, as Anthropic requires of a tool-calling turn
                blocks: list[dict[str, Any]] = _thinking_blocks(message) if thinking else []
                text = message.text()
                if text:
                    blocks.append({"type": "text", "text": text})
                for call in message.tool_calls:
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": call.id,
                            "name": call.function.name,
                            "input": t.tool_arguments(call.function.arguments, call.function.name),
                        }
                    )
                out.append({"role": "assistant", "content": blocks})
            else:
                out.append({"role": "assistant", "content": message.text()})
            continue
        content = message.content
        out.append(
            {"role": "user", "content": content if isinstance(content, str) else _blocks(content or [])}
        )
    return _system(system), out


def _tool_choice(request: ChatCompletionRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    result: dict[str, Any] | None
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        result = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest(
            f"tool_choice {clip(repr(choice))} cannot be sent to Anthropic.", param="tool_choice"
        )
    if request.parallel_tool_calls is False:
        result = {**(result or {"type": "auto"}), "disable_parallel_tool_use": True}
    return result


def _error_from_event(data: dict[str, Any]) -> GatewayError:
    error = data.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = ERROR_STATUS.get(kind or "", 500)
    return error_from_status("anthropic", status, t.upstream_error_message(data, "type"))


class AnthropicStreamTranslator(t.NativeStreamTranslator):
    """Anthropic stream events in, OpenAI chunks out, one native event at a time."""

    __slots__ = ("_blocks", "_figures", "_tools")

    not_json = "anthropic sent a stream event that is not valid JSON."

    def __init__(self, out: t.ChunkStream) -> None:
        super().__init__(out, SSEDecoder())
        #: content block index → tool call position, for the blocks that are tool calls
        self._blocks: dict[int, int] = {}
        self._tools = 0
        #: Anthropic's usage figures so far (message_start's, updated by each cumulative message_delta)
        self._figures: dict[str, Any] = {}

    def _event(self, data: Any, out: list[bytes]) -> None:
        if not isinstance(data, dict):
            return
        # every event's data repeats its type (the ``event:`` line is the same name)
        kind = data.get("type")
        stream = self._out
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                stream.text(out, delta.get("text") or "")
            elif delta_type == "input_json_delta":
                position = self._blocks.get(data.get("index", -1))
                if position is not None:
                    stream.tool_call_arguments(out, position, delta.get("partial_json") or "")
            elif delta_type == "thinking_delta":
                stream.reasoning(out, delta.get("thinking") or "")
            # a signature_delta signs the thinking block: the Chat Completions chunk has no place for it
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = self._tools
                self._tools += 1
                self._blocks[data.get("index", -1)] = position
                stream.tool_call_start(
                    out, position, str(block.get("id") or ""), str(block.get("name") or "")
                )
            elif block.get("type") == "text":
                stream.text(out, block.get("text") or "")
            elif block.get("type") == "thinking":
                stream.reasoning(out, block.get("thinking") or "")
        elif kind == "message_start":
            message = data.get("message") or {}
            stream.identify(message.get("id"), message.get("model"))
            usage = message.get("usage")
            self._figures = (
                {k: v for k, v in usage.items() if v is not None} if isinstance(usage, dict) else {}
            )
            stream.usage = Usage.from_anthropic(usage)
        elif kind == "message_delta":
            # output_tokens here is cumulative; input figures may be repeated or absent
            usage = data.get("usage")
            if isinstance(usage, dict):
                # figures absent here (input and cache figures, often) keep message_start's values
                self._figures.update({k: v for k, v in usage.items() if v is not None})
                stream.usage = Usage.from_anthropic(self._figures)
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                stream.finish(out, _STOP_REASONS.get(reason, "stop"))
        elif kind == "message_stop":
            stream.end(out)
        elif kind == "error":
            raise _error_from_event(data)
        # ping and unknown event types are skipped, as Anthropic asks clients to do


class AnthropicAdapter(t.NativeAdapter):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    requires_api_key = True
    key_header = "x-api-key"
    key_prefix = ""
    fixed_headers = {**t.JSON_HEADERS, "anthropic-version": ANTHROPIC_VERSION}
    # n is read to be refused (400) when it asks for what Anthropic cannot do
    reads = frozenset(
        {
            "temperature",
            "top_p",
            "stop",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "user",
            "n",
            "response_format",
            "service_tier",
            "reasoning_effort",
        }
    )

    def __init__(
        self,
        *,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        clock: t.Clock = t.default_clock,
        ids: t.IdFactory = t.random_id,
    ) -> None:
        super().__init__(clock=clock, ids=ids)
        self.default_max_tokens = default_max_tokens

    def _dropped_values(self, request: ChatCompletionRequest) -> list[str]:
        effort = r.effort(request.model_extra)
        asked = effort is not None and effort != "none"
        unsigned = asked and _unsigned_tool_turn(request)
        # sent without thinking when the tool turn lacks its signed block (see _unsigned_tool_turn)
        dropped = ["reasoning_effort"] if unsigned else []
        if asked and not unsigned:
            dropped.extend(_thinking_refuses(t.sampling(request, request.model_extra or {}, _SAMPLING)))
        if "temperature" not in dropped and request.temperature is not None and request.top_p is not None:
            dropped.append("top_p")
        tier = (request.model_extra or {}).get("service_tier")
        if tier is not None and (not isinstance(tier, str) or tier not in _SERVICE_TIERS):
            dropped.append("service_tier")
        return dropped

    def native_chat(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        """The Messages API request body for ``request``."""
        _checked(request)
        thinking, max_tokens = _thinking(request, r.effort(body), self.default_max_tokens)
        system, messages = _messages(request, thinking=thinking is not None)
        payload: dict[str, Any] = {"model": deployment.model, "max_tokens": max_tokens}
        if system is not None:
            payload["system"] = system
        payload["messages"] = messages
        if thinking is not None:
            payload["thinking"] = thinking
        payload.update(_sampling(request, body, thinking=thinking is not None))
        if request.tools:
            payload["tools"] = [
                {
                    "name": tool.function.name,
                    **({"description": tool.function.description} if tool.function.description else {}),
                    "input_schema": tool.function.parameters or {"type": "object", "properties": {}},
                }
                for tool in request.tools
            ]
        if (tool_choice := _tool_choice(request)) is not None:
            payload["tool_choice"] = tool_choice
        if request.user:
            payload["metadata"] = {"user_id": request.user}
        if (tier := _SERVICE_TIERS.get(str(body.get("service_tier")))) is not None:
            payload["service_tier"] = tier
        if (output_config := _output_config(request)) is not None:
            payload["output_config"] = output_config
        if stream:
            payload["stream"] = True
        return payload

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        payload = self.native_chat(deployment, request, body, stream=stream)
        url = f"{t.versioned(deployment.base_url, 'v1')}/messages"
        return self._post(url, deployment, payload)

    def chat_response(
        self, deployment: Deployment, request: ChatCompletionRequest, content: bytes
    ) -> TranslatedResponse:
        data = t.loads_object(content, "a message")
        if data.get("type") == "error":
            raise _error_from_event(data)
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise UpstreamError("anthropic answered with JSON that is not a message.")
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
            elif block.get("type") == "thinking":
                # redacted_thinking blocks hold encrypted data, nothing a client can read
                thoughts.append(str(block.get("thinking") or ""))
            elif block.get("type") == "tool_use":
                calls.append(
                    t.tool_call(str(block.get("id")), str(block.get("name")), block.get("input") or {})
                )
        finish = _STOP_REASONS.get(data.get("stop_reason") or "", "stop")
        choices = [t.choice(0, "".join(texts), calls or None, finish, "".join(thoughts))]
        model = t.text_or(data.get("model"), deployment.model)
        return self._answer(data.get("id"), model, choices, Usage.from_anthropic(data.get("usage")))

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> AnthropicStreamTranslator:
        return AnthropicStreamTranslator(self._chunks(deployment, include_usage=include_usage))

    def embeddings_request(
        self, deployment: Deployment, request: EmbeddingRequest, body: dict[str, Any]
    ) -> UpstreamRequest:
        raise InvalidRequest(
            "Anthropic has no embeddings API; route this model to openai, gemini or ollama.",
            code="unsupported_route",
            param="model",
        )

    def embeddings_response(
        self, deployment: Deployment, request: EmbeddingRequest, content: bytes
    ) -> TranslatedResponse:  # pragma: no cover - embeddings_request always refuses
        raise InvalidRequest("Anthropic has no embeddings API.")

    def error(self, status: int, content: bytes, headers: dict[str, str]) -> GatewayError:
        message = t.upstream_error_message(t.error_body(content), "type")
        return error_from_status(self.name, status, message, headers=headers)
