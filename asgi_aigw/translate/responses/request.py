"""A Responses request as a Chat Completions request, for providers reached through the chat adapters.

Mapping (the ``openai`` SDK's ``ResponseCreateParams`` to ``CompletionCreateParams``):

- ``instructions`` becomes the first message, role ``system``; ``input`` as a string becomes one
  ``user`` message; as items: ``message`` items keep their role (``input_text`` and ``output_text``
  parts become text, ``input_image`` with an ``image_url`` becomes an ``image_url`` part, ``refusal``
  parts an assistant's ``refusal``), ``function_call`` items become the ``tool_calls`` of an assistant
  message (consecutive calls, and the assistant text just before them, make one message; ``call_id``
  kept as the tool call's id), ``function_call_output`` items become ``tool`` messages;
- function ``tools`` become chat functions, ``tool_choice`` ``auto``/``none``/``required`` keep their
  names and ``{"type": "function", "name"}`` names the function;
- ``max_output_tokens`` becomes the chat cap field of the model (:func:`~asgi_aigw.kernel.caps.cap_field`);
- ``text.format`` becomes ``response_format`` (``json_schema``'s ``name``, ``schema``, ``description``,
  ``strict`` move under ``json_schema``), ``text.verbosity`` becomes ``verbosity``;
- ``reasoning.effort`` becomes ``reasoning_effort``;
- ``metadata``, ``temperature``, ``top_p``, ``user``, ``safety_identifier``, ``prompt_cache_key``,
  ``prompt_cache_retention``, ``service_tier`` and ``stream`` keep their names; a stream asks for
  usage (``stream_options``); ``parallel_tool_calls`` is sent with ``tools`` only (chat refuses it
  without them).

Refused with a 400 naming the field: ``previous_response_id`` and ``store: true`` (the gateway keeps no
responses yet, so there is nothing to continue from or to retrieve later; ``store: false`` is what
it does), ``conversation``, ``background``, ``prompt``, ``include``, ``truncation: "auto"``,
``max_tool_calls``, ``top_logprobs``, ``reasoning.summary``, tools other than functions, input items
other than messages and function calls (``reasoning``, ``item_reference``, built-in tool calls),
``input_file`` and ``input_audio`` parts, an image by ``file_id``, and any field without an equivalent.
Left out and reported dropped (no effect on the answer): ``stream_options.include_obfuscation``
(translated streams carry no obfuscation padding) and the ``phase`` label of assistant messages. Item
``id`` and ``status`` fields identify items for OpenAI's store and are not part of what the model reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ...kernel.caps import cap_field
from ...kernel.errors import InvalidRequest, clip
from ...kernel.models import ChatCompletionRequest, validation_error_message
from ..base import ChatTranslation

#: Reported in ``x-aigw-dropped-params`` when the stream options asked about obfuscation.
DROPPED_OBFUSCATION = "stream_options.include_obfuscation"
#: Reported when assistant messages were labelled ``commentary`` or ``final_answer`` (a hint to
#: OpenAI's own models; chat messages have no such label).
DROPPED_PHASE = "input.phase"

#: Fields that keep their name and value.
_SAME = (
    "metadata",
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
)
#: Fields handled by a translation below.
_TRANSLATED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "text",
        "reasoning",
        "stream",
        "stream_options",
        "store",
        *_SAME,
    }
)
#: Why a known Responses field cannot be translated.
_REFUSED = {
    "previous_response_id": (
        "'previous_response_id' is not supported: the gateway keeps no responses to continue from. "
        "Send the whole conversation in 'input' instead."
    ),
    "conversation": (
        "'conversation' is not supported: the gateway keeps no conversations. "
        "Send the whole conversation in 'input' instead."
    ),
    "background": "'background' is not supported: the gateway answers while the request is open.",
    "prompt": "'prompt' (a stored prompt template) is not supported: send 'instructions' and 'input'.",
    "include": "'include' is not supported: the extra output it asks for cannot be produced here.",
    "max_tool_calls": "'max_tool_calls' is not supported: chat completions have no such limit.",
    "top_logprobs": "'top_logprobs' is not supported through the gateway's translation.",
    "truncation": "'truncation: auto' is not supported: chat completions never truncate the input.",
}
_ROLES = frozenset({"user", "system", "developer", "assistant"})


def _refuse(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="untranslatable_param")


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def chat_request(data: Mapping[str, Any]) -> ChatTranslation:
    """Translate a Responses request body; :class:`InvalidRequest` naming the field when it cannot be."""
    for name, value in data.items():
        if name in _TRANSLATED:
            continue
        if name in _REFUSED:
            if value is None or (name == "truncation" and value == "disabled") or value in ([], False):
                continue  # the default: nothing asked for
            raise _refuse(_REFUSED[name], name)
        raise _refuse(
            f"Unsupported parameter: {clip(repr(name))} has no translation to a chat request.", name
        )

    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("Missing required parameter: 'model'.", "model")
    if data.get("store") is True:
        raise _refuse(
            "'store: true' is not supported: the gateway keeps no responses, so this one could not be "
            "retrieved or continued later. Send 'store: false'.",
            "store",
        )
    if data.get("store") not in (None, False):
        raise _invalid("Invalid type for 'store': expected a boolean.", "store")
    dropped: list[str] = []
    body: dict[str, Any] = {"model": model, "messages": _messages(data, dropped)}

    tools = data.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("Invalid type for 'tools': expected an array.", "tools")
        if tools:
            body["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
            if data.get("parallel_tool_calls") is not None:
                body["parallel_tool_calls"] = data["parallel_tool_calls"]
    if data.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(data["tool_choice"])
    cap = data.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise _invalid("Invalid 'max_output_tokens': expected a positive integer.", "max_output_tokens")
    if cap is not None:
        body[cap_field(model)] = cap
    _text(data.get("text"), body)
    _reasoning(data.get("reasoning"), body)
    for name in _SAME:
        if data.get(name) is not None:
            body[name] = data[name]
    if data.get("stream") is not None:
        body["stream"] = data["stream"]
        if data["stream"] is True:
            body["stream_options"] = {"include_usage": True}
    options = data.get("stream_options")
    if options is not None:
        if not isinstance(options, dict) or set(options) - {"include_obfuscation"}:
            raise _refuse("'stream_options' takes only 'include_obfuscation' here.", "stream_options")
        if options:
            dropped.append(DROPPED_OBFUSCATION)
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        # a value the chat format refuses (a temperature out of range): named as the chat field
        message, param = validation_error_message(exc, "request once translated to a chat request")
        raise InvalidRequest(message, param=param) from None
    return ChatTranslation(body, request, dropped)


# -- input ------------------------------------------------------------------------------------------


def _messages(data: Mapping[str, Any], dropped: list[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid("Invalid type for 'instructions': expected a string.", "instructions")
        messages.append({"role": "system", "content": instructions})
    items = data.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for index, item in enumerate(items):
            _item(item, f"input[{index}]", messages)
            if isinstance(item, dict) and item.get("phase") is not None and DROPPED_PHASE not in dropped:
                dropped.append(DROPPED_PHASE)
    elif items is None:
        raise _invalid("Missing required parameter: 'input'.", "input")
    else:
        raise _invalid("Invalid type for 'input': expected a string or an array of items.", "input")
    if not messages:
        raise _invalid("'input' is empty: send at least one message.", "input")
    return messages


def _item(item: Any, where: str, messages: list[dict[str, Any]]) -> None:
    if not isinstance(item, dict):
        raise _invalid(f"Invalid type for '{where}': expected an object.", where)
    # an easy input message may leave out its type
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        messages.append(_message(item, where))
    elif kind == "function_call":
        call = _function_call(item, where)
        last = messages[-1] if messages else None
        # consecutive calls, and the assistant text just before them, are one chat assistant turn
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _invalid(f"Missing required parameter: '{where}.call_id'.", f"{where}.call_id")
        messages.append({"role": "tool", "tool_call_id": call_id, "content": _output(item, where)})
    else:
        raise _refuse(
            f"Input items of type {clip(repr(kind))} are not supported through the gateway's "
            "translation: only messages, function calls and function call outputs are.",
            f"{where}.type",
        )
    _no_extra(item, where, _ITEM_FIELDS.get(str(kind), frozenset()))


_ITEM_FIELDS = {
    "message": frozenset({"type", "role", "content", "id", "status", "phase"}),
    "function_call": frozenset({"type", "call_id", "name", "arguments", "id", "status"}),
    "function_call_output": frozenset({"type", "call_id", "output", "id", "status"}),
}


def _no_extra(item: Mapping[str, Any], where: str, known: frozenset[str]) -> None:
    for name, value in item.items():
        if name not in known and value is not None:
            raise _refuse(f"'{where}.{clip(name)}' has no translation to a chat request.", f"{where}.{name}")


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise _invalid(
            f"Invalid value for '{where}.role': expected one of user, system, developer, assistant.",
            f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _invalid(
            f"Invalid type for '{where}.content': expected a string or an array.", f"{where}.content"
        )
    parts: list[dict[str, Any]] = []
    refusals: list[str] = []
    for index, part in enumerate(content):
        place = f"{where}.content[{index}]"
        if not isinstance(part, dict):
            raise _invalid(f"Invalid type for '{place}': expected an object.", place)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise _invalid(f"Invalid type for '{place}.text': expected a string.", f"{place}.text")
            parts.append({"type": "text", "text": text})
        elif kind == "refusal" and role == "assistant":
            refusals.append(str(part.get("refusal") or ""))
        elif kind == "input_image" and role != "assistant":
            parts.append(_image(part, place))
        else:
            raise _refuse(
                f"Content parts of type {clip(repr(kind))} are not supported through the gateway's "
                "translation here.",
                f"{place}.type",
            )
    if role == "assistant":
        # chat assistant content is text only: the parts joined, as the model wrote them
        message: dict[str, Any] = {"role": role, "content": "".join(p["text"] for p in parts) or None}
        if refusals:
            message["refusal"] = "".join(refusals)
        return message
    if all(part["type"] == "text" for part in parts) and role != "user":
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _image(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise _refuse(
            f"'{where}' must give 'image_url' (a URL or a data URL): images by 'file_id' are not "
            "supported through the gateway's translation.",
            f"{where}.file_id",
        )
    image: dict[str, Any] = {"url": url}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _function_call(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    for field in ("call_id", "name", "arguments"):
        if not isinstance(item.get(field), str):
            raise _invalid(f"Missing required parameter: '{where}.{field}'.", f"{where}.{field}")
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _output(item: Mapping[str, Any], where: str) -> str:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for index, part in enumerate(output):
            if (
                not isinstance(part, dict)
                or part.get("type") != "input_text"
                or not isinstance(part.get("text"), str)
            ):
                raise _refuse(
                    "Function call outputs other than text are not supported through the gateway's "
                    "translation.",
                    f"{where}.output[{index}]",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise _invalid(f"Missing required parameter: '{where}.output'.", f"{where}.output")


# -- tools, formats, reasoning ----------------------------------------------------------------------


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise _refuse(
            f"Tools of type {clip(repr(kind))} are not supported through the gateway's translation: "
            "only function tools are.",
            f"{where}.type",
        )
    _no_extra(tool, where, frozenset({"type", "name", "description", "parameters", "strict"}))
    if not isinstance(tool.get("name"), str):
        raise _invalid(f"Missing required parameter: '{where}.name'.", f"{where}.name")
    function = {
        k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None
    }
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _refuse(
        "'tool_choice' must be 'auto', 'none', 'required' or a function "
        '({"type": "function", "name": ...}) through the gateway\'s translation.',
        "tool_choice",
    )


def _text(text: Any, body: dict[str, Any]) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise _invalid("Invalid type for 'text': expected an object.", "text")
    _no_extra(text, "text", frozenset({"format", "verbosity"}))
    if text.get("verbosity") is not None:
        body["verbosity"] = text["verbosity"]
    fmt = text.get("format")
    if fmt is None:
        return
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        body["response_format"] = {"type": kind}
    elif kind == "json_schema":
        assert isinstance(fmt, dict)
        _no_extra(fmt, "text.format", frozenset({"type", "name", "schema", "description", "strict"}))
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise _invalid("'text.format' of type json_schema needs a 'name' and a 'schema'.", "text.format")
        schema = {k: fmt[k] for k in ("name", "schema", "description", "strict") if fmt.get(k) is not None}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise _refuse(f"'text.format' of type {clip(repr(kind))} has no translation.", "text.format.type")


def _reasoning(reasoning: Any, body: dict[str, Any]) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise _invalid("Invalid type for 'reasoning': expected an object.", "reasoning")
    for name, value in reasoning.items():
        if name == "effort":
            if value is not None:
                body["reasoning_effort"] = value
        elif value is not None:
            # summaries are Responses output items: a chat completion has no place for them
            raise _refuse(
                f"'reasoning.{clip(name)}' is not supported through the gateway's translation.",
                f"reasoning.{name}",
            )
