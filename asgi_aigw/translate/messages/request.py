"""A Messages request as a Chat Completions request, for providers that do not speak Messages.

Mapping (docs.anthropic.com "Messages" to platform.openai.com "Chat Completions"):

- ``system`` (a string or text blocks) becomes the first message, role ``system``;
- ``text`` blocks become text parts; ``image`` blocks (``base64`` or ``url`` source) become ``image_url``
  parts (a data URL for base64);
- an assistant's ``tool_use`` blocks become its ``tool_calls`` (ids kept as they are, so a ``toolu_...``
  id comes back in the tool result); a user's ``tool_result`` blocks become ``tool`` messages, sent
  before the rest of that user turn; ``is_error`` results are prefixed ``Error:`` so the model still
  sees that the tool failed;
- ``tools`` become functions, ``tool_choice`` ``auto``/``any``/``tool``/``none`` become ``auto``/
  ``required``/the named function/``none``, ``disable_parallel_tool_use`` becomes
  ``parallel_tool_calls: false``;
- ``stop_sequences`` becomes ``stop``, ``metadata.user_id`` becomes ``user``; ``max_tokens``,
  ``temperature``, ``top_p``, ``top_k`` and ``stream`` keep their names.

Left out and reported dropped (no effect on the answer): ``cache_control`` (a caching hint), and
``thinking`` blocks of earlier assistant turns (Anthropic itself strips those from the context).
Refused with a 400 naming the field: ``thinking`` turned on, ``document`` blocks, server tools, an image
inside a tool result, and any field or block type without an equivalent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from pydantic import ValidationError

from ...kernel.errors import InvalidRequest, clip
from ...kernel.models import ChatCompletionRequest, ContentBlock, MessagesRequest, validation_error_message
from ..base import ChatTranslation

#: Reported in ``x-aigw-dropped-params`` when a block or tool carried a prompt-caching marker.
DROPPED_CACHE_CONTROL = "cache_control"
#: Reported when earlier assistant turns carried thinking blocks, which were left out.
DROPPED_THINKING_BLOCKS = "thinking_blocks"

#: Providers without ``top_k`` in their chat API (OpenAI refuses unknown request fields).
_NO_TOP_K = frozenset({"openai", "azure"})
#: Thinking modes that ask for nothing.
_THINKING_OFF = frozenset({"disabled"})
#: Block fields that are no part of what the model reads.
_BLOCK_HINTS = frozenset({"cache_control"})


class _Dropped:
    """The names of what was left out, each once, in order."""

    __slots__ = ("names",)

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)

    def hints(self, block: ContentBlock | Any) -> None:
        if getattr(block, "cache_control", None) is not None:
            self.add(DROPPED_CACHE_CONTROL)


def _refuse(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="untranslatable_param")


def _no_extra(model: Any, where: str, provider: str) -> None:
    """Refuse fields the model does not declare: they have no translation (the field is named)."""
    extra = model.model_extra or {}
    for name, value in extra.items():
        if value is not None:
            raise _refuse(
                f"{where}{name} has no equivalent at {provider}: this gateway cannot translate it. "
                f"Leave it out, or route this model to an Anthropic deployment.",
                f"{where}{name}",
            )


def _image_part(block: ContentBlock, where: str) -> dict[str, Any]:
    source = block.source or {}
    kind = source.get("type")
    if kind == "base64" and isinstance(source.get("data"), str):
        media = source.get("media_type") if isinstance(source.get("media_type"), str) else "image/png"
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{source['data']}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _refuse(
        f"{where}.source: an image source of type {clip(repr(kind))} cannot be translated; send a "
        "base64 or url source.",
        f"{where}.source",
    )


def _check_block(block: ContentBlock, where: str, provider: str) -> None:
    extra = {k for k, v in (block.model_extra or {}).items() if v is not None}
    if extra:
        name = sorted(extra)[0]
        raise _refuse(
            f"{where}.{name} has no equivalent at {provider}: this gateway cannot translate it.",
            f"{where}.{name}",
        )


def _blocks(
    blocks: Iterable[ContentBlock], where: str, provider: str, dropped: _Dropped
) -> Iterator[tuple[str, ContentBlock]]:
    """Each block with where it is (``{where}[i]``), checked for fields without an equivalent and
    its hints reported as dropped."""
    for index, block in enumerate(blocks):
        at = f"{where}[{index}]"
        _check_block(block, at, provider)
        dropped.hints(block)
        yield at, block


def _unsupported(block: ContentBlock, where: str, provider: str) -> InvalidRequest:
    return _refuse(
        f"{where}: content blocks of type {clip(repr(block.type))} cannot be sent to {provider} through "
        "this gateway; route this model to an Anthropic deployment, or send text and images.",
        f"{where}.type",
    )


def _tool_result_text(block: ContentBlock, where: str, provider: str) -> str:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts: list[str] = []
        for index, inner in enumerate(content):
            inner_where = f"{where}.content[{index}]"
            if inner.type != "text":
                raise _refuse(
                    f"{inner_where}: a tool result holding a {clip(repr(inner.type))} block cannot be "
                    f"sent to {provider}; the chat format takes text tool results only.",
                    f"{inner_where}.type",
                )
            texts.append(inner.text or "")
        text = "\n".join(texts)
    return f"Error: {text}" if block.is_error else text


def _user_turn(
    blocks: list[ContentBlock], where: str, provider: str, dropped: _Dropped
) -> list[dict[str, Any]]:
    """Tool results first (``tool`` messages, as the chat format needs them right after the call),
    then a user message with the rest, if any."""
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for at, block in _blocks(blocks, f"{where}.content", provider, dropped):
        if block.type == "text":
            parts.append({"type": "text", "text": block.text or ""})
        elif block.type == "image":
            parts.append(_image_part(block, at))
        elif block.type == "tool_result":
            tools.append(
                {
                    "role": "tool",
                    "tool_call_id": block.tool_use_id or "",
                    "content": _tool_result_text(block, at, provider),
                }
            )
        else:
            raise _unsupported(block, at, provider)
    out = tools
    if parts:
        if all(p["type"] == "text" for p in parts) and len(parts) == 1:
            out.append({"role": "user", "content": parts[0]["text"]})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _assistant_turn(
    blocks: list[ContentBlock], where: str, provider: str, dropped: _Dropped
) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for at, block in _blocks(blocks, f"{where}.content", provider, dropped):
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use":
            calls.append(
                {
                    "id": block.id or "",
                    "type": "function",
                    "function": {
                        "name": block.name or "",
                        "arguments": orjson.dumps(block.input or {}).decode(),
                    },
                }
            )
        elif block.type in ("thinking", "redacted_thinking"):
            # Anthropic strips earlier turns' thinking from the context itself: leaving it out changes
            # nothing the model reads, and other providers have no field for it
            dropped.add(DROPPED_THINKING_BLOCKS)
        else:
            raise _unsupported(block, at, provider)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system(request: MessagesRequest, provider: str, dropped: _Dropped) -> dict[str, Any] | None:
    system = request.system
    if system is None:
        return None
    if isinstance(system, str):
        return {"role": "system", "content": system}
    texts: list[str] = []
    for at, block in _blocks(system, "system", provider, dropped):
        if block.type != "text":
            raise _unsupported(block, at, provider)
        texts.append(block.text or "")
    return {"role": "system", "content": "\n\n".join(texts)}


def _tools(request: MessagesRequest, provider: str, dropped: _Dropped) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, tool in enumerate(request.tools or ()):
        at = f"tools[{index}]"
        if tool.type not in (None, "custom"):
            raise _refuse(
                f"{at}: the server tool {clip(repr(tool.type))} runs at Anthropic only; it cannot be "
                f"offered to {provider}. Route this model to an Anthropic deployment, or define a "
                "client tool with an input_schema.",
                f"{at}.type",
            )
        _no_extra(tool, f"{at}.", provider)
        dropped.hints(tool)
        function: dict[str, Any] = {
            "name": tool.name,
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        }
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(request: MessagesRequest, body: dict[str, Any]) -> None:
    choice = request.tool_choice
    if choice is None:
        return
    if choice.type == "auto":
        body["tool_choice"] = "auto"
    elif choice.type == "any":
        body["tool_choice"] = "required"
    elif choice.type == "none":
        body["tool_choice"] = "none"
    else:
        if not choice.name:
            raise _refuse("tool_choice.name is required when tool_choice.type is 'tool'.", "tool_choice.name")
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    if choice.disable_parallel_tool_use and choice.type != "none":
        body["parallel_tool_calls"] = False


def _output_config(request: MessagesRequest, body: dict[str, Any], provider: str) -> None:
    """Structured outputs as ``response_format`` json_schema. Not ``strict``: OpenAI's strict mode also
    demands every property be required, which Anthropic's schemas need not say."""
    config = request.output_config
    if config is None:
        return
    _no_extra(config, "output_config.", provider)
    if config.format is not None:
        spec = {"name": "output", "schema": config.format.schema_}
        body["response_format"] = {"type": "json_schema", "json_schema": spec}


def chat_request(request: MessagesRequest, provider: str) -> ChatTranslation:
    """The chat completion request for ``request`` (sent to ``provider``), or a 400 naming the field
    that has no translation."""
    _no_extra(request, "", provider)
    if request.thinking is not None and request.thinking.type not in _THINKING_OFF:
        raise _refuse(
            f"thinking cannot be turned on for a model served by {provider}: extended thinking is "
            "Anthropic's, and other providers have no equivalent this gateway could promise. Leave "
            "thinking out (or set it to disabled), or route this model to an Anthropic deployment.",
            "thinking",
        )
    if request.top_k is not None and provider in _NO_TOP_K:
        raise _refuse(f"top_k has no equivalent at {provider}; leave it out for this model.", "top_k")
    dropped = _Dropped()
    messages: list[dict[str, Any]] = []
    if (system := _system(request, provider, dropped)) is not None:
        messages.append(system)
    for index, message in enumerate(request.messages):
        where = f"messages[{index}]"
        content = message.content
        if message.role == "user":
            if isinstance(content, str):
                messages.append({"role": "user", "content": content})
            else:
                messages.extend(_user_turn(content, where, provider, dropped))
        elif isinstance(content, str):
            messages.append({"role": "assistant", "content": content})
        else:
            messages.append(_assistant_turn(content, where, provider, dropped))
    body: dict[str, Any] = {"model": request.model, "messages": messages, "max_tokens": request.max_tokens}
    if request.stream:
        body["stream"] = True
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop_sequences:
        body["stop"] = list(request.stop_sequences)
    if tools := _tools(request, provider, dropped):
        body["tools"] = tools
    _tool_choice(request, body)
    if request.metadata is not None:
        _no_extra(request.metadata, "metadata.", provider)
        if request.metadata.user_id:
            body["user"] = request.metadata.user_id
    _output_config(request, body, provider)
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        problem, param = validation_error_message(exc, "translated chat request")
        raise InvalidRequest(
            f"This request has no valid translation for {provider}: {problem}", param=param
        ) from None
    return ChatTranslation(body, chat, dropped.names)
