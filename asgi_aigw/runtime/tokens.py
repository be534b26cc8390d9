"""Token counting for budgets: exact for OpenAI models, a documented over-estimate for the others.

- OpenAI models use tiktoken with the encoding of their family (``o200k_base``: gpt-4o, gpt-4.1, gpt-4.5,
  gpt-5, o1/o3/o4, gpt-oss; ``cl100k_base``: gpt-4, gpt-3.5, text-embedding-*) and OpenAI's
  per-message accounting as published in the OpenAI cookbook ("How to count tokens with tiktoken"):
  3 tokens per message, +1 for a ``name``, 3 to prime the reply, and the cookbook's formula for tool
  definitions. Counts match the API's ``prompt_tokens`` on the cookbook's examples.
- Anthropic, Gemini and Ollama models have no shipped (or public) tokenizer. Their text is counted
  with ``o200k_base`` and multiplied by ``runtime.tokens.safety_factor`` (per-family overrides in
  ``family_factors``), plus the family's own framing overhead. docs/offline.md gives the error measured
  against published counts and the Llama 3 tokenizer.

Anthropic Messages requests (``/v1/messages``) are counted by :func:`count_messages_tokens` with the same
encodings and factors, block by block.

Encodings are loaded lazily, once per process, from local files (see :mod:`.assets`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ..kernel.optional import require
from .assets import load_bpe_file
from .config import RuntimeConfig

if TYPE_CHECKING:
    import tiktoken

    from ..kernel.models.chat import ChatCompletionRequest

Family = Literal["openai", "anthropic", "gemini", "ollama", "other"]
EncodingName = Literal["cl100k_base", "o200k_base"]

# -- which encoding for which model -----------------------------------------------------------------

_O200K = re.compile(r"^(ft:)?(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o\d|omni-)")
_CL100K = re.compile(r"^(ft:)?(gpt-4|gpt-3\.5|gpt-35|text-embedding-|davinci-002|babbage-002)")
#: ``provider/`` prefixes (LiteLLM style) that name the family outright.
_PREFIX_FAMILY: dict[str, Family] = {
    "openai": "openai",
    "azure": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "google": "gemini",
    "vertex_ai": "gemini",
    "ollama": "ollama",
    "ollama_chat": "ollama",
}
_LOCAL_MODEL_HINTS = (
    "llama", "mistral", "mixtral", "qwen", "phi", "deepseek", "codellama", "granite", "smollm",
    "tinyllama", "starcoder", "command-r", "olmo", "nemotron", "vicuna", "yi:", "falcon",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """How a model's tokens are counted."""

    family: Family
    encoding: EncodingName
    #: True when the count is OpenAI's own accounting; False for an approximation.
    exact: bool


def model_info(model: str | None, config: RuntimeConfig | None = None) -> ModelInfo:
    """The family and encoding for ``model`` (``None`` or unknown: approximated with o200k_base)."""
    settings = (config or runtime_config()).tokens
    name = (model or "").strip().lower()
    for pattern, encoding in settings.model_encodings.items():
        key = pattern.lower()
        if name == key or (key.endswith("*") and name.startswith(key[:-1])):
            return ModelInfo("openai", encoding, True)
    family: Family | None = None
    if "/" in name:
        prefix, rest = name.split("/", 1)
        if prefix in _PREFIX_FAMILY:
            family, name = _PREFIX_FAMILY[prefix], rest
    if family in (None, "openai"):
        if _O200K.match(name):
            return ModelInfo("openai", "o200k_base", True)
        if _CL100K.match(name):
            return ModelInfo("openai", "cl100k_base", True)
    if family is None or family == "openai":
        if "claude" in name:
            family = "anthropic"
        elif name.startswith(("gemini", "gemma")):
            family = "gemini"
        elif any(hint in name for hint in _LOCAL_MODEL_HINTS):
            family = "ollama"
        else:
            family = "other"
    return ModelInfo(family, "o200k_base", False)


def encoding_for_model(model: str | None, config: RuntimeConfig | None = None) -> EncodingName:
    """The tiktoken encoding name used for ``model`` (o200k_base for approximated families)."""
    return model_info(model, config).encoding


# -- encodings: loaded once per process -----------------------------------------------------------

# tiktoken_ext.openai_public builds these with a download; we build the same Encoding from a local,
# sha256-verified file. The regexes and special tokens are copied from there (tiktoken 0.14).
_PATTERNS: dict[str, str] = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL_TOKENS: dict[str, dict[str, int]] = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}

_encodings: dict[str, tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    import base64

    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _drop_python_ranks(encoding: tiktoken.Encoding) -> None:
    """Free the Python dict of ranks the ``Encoding`` keeps beside its Rust core (about 27 MB for
    o200k_base, per worker): encoding and decoding use only the core; tiktoken reads the dict only to
    pickle an encoding, which the gateway never does."""
    encoding._mergeable_ranks = {}


def get_encoding(name: EncodingName, config: RuntimeConfig | None = None) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` ``name``, loaded from verified local files on first use.

    Files are pinned by sha256, so whichever source served them the encoding is the same: it is cached
    by name for the life of the process."""
    encoding = _encodings.get(name)
    if encoding is not None:
        return encoding
    with _encodings_lock:
        encoding = _encodings.get(name)
        if encoding is None:
            tiktoken = require("tiktoken", "tokens")
            bpe = load_bpe_file(name, config or runtime_config())
            if bpe is None:  # nothing local; downloads allowed: tiktoken's own download + hash check
                encoding = tiktoken.get_encoding(name)
            else:
                encoding = tiktoken.Encoding(
                    name=name,
                    pat_str=_PATTERNS[name],
                    mergeable_ranks=_parse_bpe(bpe.data),
                    special_tokens=_SPECIAL_TOKENS[name],
                )
            _drop_python_ranks(encoding)
            _encodings[name] = encoding
    return encoding


# -- process-wide runtime configuration -----------------------------------------------------------

_runtime_config: RuntimeConfig | None = None


def configure(config: RuntimeConfig) -> None:
    """Set the runtime configuration used when a call passes none (``build_app`` calls this)."""
    global _runtime_config
    _runtime_config = config


def runtime_config() -> RuntimeConfig:
    """The configuration set by :func:`configure`, else the defaults (plus ``$AIGW_ASSET_DIR``)."""
    global _runtime_config
    if _runtime_config is None:
        _runtime_config = RuntimeConfig()
    return _runtime_config


# -- counting ---------------------------------------------------------------------------------------

#: OpenAI's accounting (cookbook): tokens around every message, per ``name``, and to prime the reply.
_OPENAI_FRAMING = (3, 1, 3)
#: The framing of the approximated families, per message and for the reply, measured on published
#: counts: Claude's count API gives 14 for an 8-token system + user exchange, Gemini's countTokens adds
#: 1 token to a one-turn text, Llama 3's chat template (Ollama) spends 5 per message and 5 for BOS +
#: the assistant header.
_FAMILY_FRAMING: dict[Family, tuple[int, int]] = {
    "anthropic": (3, 0),
    "gemini": (1, 0),
    "ollama": (5, 5),
    "other": (3, 3),
}
#: Anthropic injects a tool-use system prompt when tools are offered: 346 tokens (tool_choice auto or
#: none), 313 (any or a named tool), per Anthropic's tool-use documentation for Claude 3.7 / 4 models.
_ANTHROPIC_TOOL_PROMPT = {"auto": 346, "none": 346, "any": 313, "tool": 313}
#: The cookbook's constants for tool definitions: (per function, properties start, per property,
#: enum start, per enum item, end of all functions).
_TOOL_CONSTANTS = {"o200k_base": (7, 3, 3, -3, 3, 12), "cl100k_base": (10, 3, 3, -3, 3, 12)}
#: What an image part costs when its size is unknown: OpenAI's formula for a 768x768 image at "high"
#: detail (85 + 4 tiles x 170), the most a square image costs after resizing; "low" is a flat 85.
IMAGE_TOKENS_HIGH = 765
IMAGE_TOKENS_LOW = 85
#: Around each assistant tool call (no published figure; the call is rendered as name + JSON arguments).
_TOOL_CALL_OVERHEAD = 3


def _as_dict(request: ChatCompletionRequest | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(request, Mapping):
        return request
    return request.model_dump(mode="python", exclude_none=True)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


class _Counter:
    """Counts with one encoding; ``text`` accumulates raw text tokens, ``fixed`` framing tokens."""

    __slots__ = ("encoding", "fixed", "text")

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self.text = 0
        self.fixed = 0

    def add(self, value: Any) -> None:
        if value is None:
            return
        string = value if isinstance(value, str) else _json(value)
        if string:
            self.text += len(self.encoding.encode_ordinary(string))

    def parts(self, content: Any) -> Iterator[Mapping[str, Any]]:
        """The parts (blocks) of a list ``content``, for the caller to count by kind; anything else in
        it, or a ``content`` that is no list (a string), is counted here as it is."""
        if not isinstance(content, list):
            self.add(content)
            return
        for part in content:
            if isinstance(part, Mapping):
                yield part
            else:
                self.add(part)

    def content(self, content: Any) -> None:
        for part in self.parts(content):
            kind = part.get("type")
            if kind == "text":
                self.add(part.get("text"))
            elif kind == "refusal":
                self.add(part.get("refusal"))
            elif kind == "image_url":
                image = part.get("image_url")
                detail = image.get("detail") if isinstance(image, Mapping) else None
                self.fixed += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
            else:  # audio, files, unknown parts: their JSON, an over-estimate
                self.add({k: v for k, v in part.items() if k != "type"})

    def tools(self, tools: Any, encoding_name: str) -> None:
        """The cookbook's formula for function definitions (``num_tokens_for_tools``)."""
        if not isinstance(tools, list) or not tools:
            return
        func_init, prop_init, prop_key, enum_init, enum_item, func_end = _TOOL_CONSTANTS[encoding_name]
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(function, Mapping):
                self.add(tool)
                continue
            self.fixed += func_init
            description = str(function.get("description") or "").removesuffix(".")
            self.add(f"{function.get('name', '')}:{description}")
            parameters = function.get("parameters")
            properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
            if isinstance(properties, Mapping) and properties:
                self.fixed += prop_init
                for key, schema in properties.items():
                    self.fixed += prop_key
                    if not isinstance(schema, Mapping):
                        self.add(f"{key}:{_json(schema)}")
                        continue
                    enum = schema.get("enum")
                    if isinstance(enum, list):
                        self.fixed += enum_init
                        for item in enum:
                            self.fixed += enum_item
                            self.add(item)
                    kind = schema.get("type", "")
                    kind = kind if isinstance(kind, str) else _json(kind)
                    desc = str(schema.get("description") or "").removesuffix(".")
                    self.add(f"{key}:{kind}:{desc}")
                    # nested schemas (items, properties, anyOf...) are not in the formula: count their JSON
                    rest = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
                    if rest:
                        self.add(rest)
        self.fixed += func_end


def count_text_tokens(text: str, model: str | None = None, *, config: RuntimeConfig | None = None) -> int:
    """Tokens in ``text`` for ``model`` (exact for OpenAI models, else o200k_base x safety factor)."""
    info = model_info(model, config)
    encoding = get_encoding(info.encoding, config)
    count = len(encoding.encode_ordinary(text)) if text else 0
    if info.exact:
        return count
    return math.ceil(count * _factor(info.family, config))


def count_chat_tokens(
    request: ChatCompletionRequest | Mapping[str, Any],
    model: str | None = None,
    *,
    config: RuntimeConfig | None = None,
) -> int:
    """Prompt tokens of a chat completion request (the model is the request's unless given).

    Counts role, name, every content part (text; images at their worst-case size; other parts as JSON),
    assistant tool calls, and the ``tools`` definitions. Never raises on odd shapes: anything unknown is
    counted as its JSON text."""
    data = _as_dict(request)
    if model is None:
        value = data.get("model")
        model = value if isinstance(value, str) else None
    info = model_info(model, config)
    counter = _Counter(get_encoding(info.encoding, config))
    if info.exact:
        per_message, per_name, reply = _OPENAI_FRAMING
    else:
        per_message, reply = _FAMILY_FRAMING[info.family]
        per_name = 1
    messages = data.get("messages")
    for message in messages if isinstance(messages, list) else ():
        counter.fixed += per_message
        if not isinstance(message, Mapping):
            counter.add(message)
            continue
        for key, value in message.items():
            if key == "content":
                counter.content(value)
            elif key == "role":
                if info.exact:  # the role is a token of OpenAI's framing; others frame roles for free
                    counter.add(value)
            elif key == "name":
                counter.add(value)
                counter.fixed += per_name
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:
                    function = call.get("function") if isinstance(call, Mapping) else None
                    if isinstance(function, Mapping):
                        counter.fixed += _TOOL_CALL_OVERHEAD
                        counter.add(function.get("name"))
                        counter.add(function.get("arguments"))
                    else:
                        counter.add(call)
            elif key == "function_call" and isinstance(value, Mapping):
                counter.fixed += _TOOL_CALL_OVERHEAD
                counter.add(value.get("name"))
                counter.add(value.get("arguments"))
            elif key in ("refusal", "audio"):
                counter.add(value)
            # tool_call_id and unknown metadata are not rendered into the prompt
    counter.fixed += reply
    tools = data.get("tools")
    counter.tools(tools, info.encoding)
    if isinstance(data.get("functions"), list):  # the legacy ``functions`` parameter
        counter.tools([{"function": f} for f in data["functions"]], info.encoding)
    if info.exact:
        return counter.text + counter.fixed
    total = math.ceil(counter.text * _factor(info.family, config)) + counter.fixed
    if info.family == "anthropic" and isinstance(tools, list) and tools:
        total += _ANTHROPIC_TOOL_PROMPT.get(_tool_choice(data.get("tool_choice")), 346)
    return total


#: Fields of a Messages content block that are metadata, not prompt text (a cache breakpoint, ids).
_BLOCK_METADATA = frozenset({"type", "cache_control", "citations", "id", "tool_use_id", "is_error"})


def _messages_blocks(counter: _Counter, content: Any) -> None:
    """A Messages ``content`` (or ``system``): a string, or blocks counted by what they put in the prompt."""
    for block in counter.parts(content):
        kind = block.get("type")
        if kind == "text":
            counter.add(block.get("text"))
        elif kind == "image":
            # no size is known before decoding: the same worst case as a chat image part
            counter.fixed += IMAGE_TOKENS_HIGH
        elif kind in ("tool_use", "server_tool_use"):
            counter.fixed += _TOOL_CALL_OVERHEAD
            counter.add(block.get("name"))
            counter.add(block.get("input"))
        elif kind == "tool_result":
            _messages_blocks(counter, block.get("content"))
        elif kind == "document":
            source = block.get("source")
            source_kind = source.get("type") if isinstance(source, Mapping) else None
            if source_kind == "text" and isinstance(source, Mapping):
                counter.add(source.get("data"))
            elif source_kind == "content" and isinstance(source, Mapping):
                _messages_blocks(counter, source.get("content"))
            else:  # a PDF (base64 or URL): its JSON, an over-estimate
                counter.add(source)
            counter.add(block.get("title"))
            counter.add(block.get("context"))
        elif kind == "thinking":
            counter.add(block.get("thinking"))
        elif kind == "redacted_thinking":
            counter.add(block.get("data"))
        else:  # search results, server tool results, unknown blocks: their JSON, an over-estimate
            counter.add({k: v for k, v in block.items() if k not in _BLOCK_METADATA})


def count_messages_tokens(
    request: Mapping[str, Any], model: str | None = None, *, config: RuntimeConfig | None = None
) -> int:
    """Prompt tokens of an Anthropic Messages request (``POST /v1/messages``), the model the request's
    unless given.

    Counts the system prompt (a string or text blocks), every message's content blocks (text, tool calls'
    name and input, tool results, documents with text sources, thinking; images at the worst case chat
    counts them), and the tools' names, descriptions and input schemas with Anthropic's tool-use system
    prompt. ``cache_control`` marks are metadata and cost nothing: a cached prompt is as long as an
    uncached one (the provider prices it lower; the usage it reports says how much was read or written).
    Never raises on odd shapes: anything unknown is counted as its JSON text."""
    if model is None:
        value = request.get("model")
        model = value if isinstance(value, str) else None
    info = model_info(model, config)
    counter = _Counter(get_encoding(info.encoding, config))
    per_message, reply = _OPENAI_FRAMING[0], _OPENAI_FRAMING[2]
    if not info.exact:
        per_message, reply = _FAMILY_FRAMING[info.family]
    system = request.get("system")
    if system:
        counter.fixed += per_message
        _messages_blocks(counter, system)
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else ():
        counter.fixed += per_message
        if isinstance(message, Mapping):
            _messages_blocks(counter, message.get("content"))
        else:
            counter.add(message)
    counter.fixed += reply
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, Mapping):
            counter.add(tool)
            continue
        counter.add(tool.get("name"))
        counter.add(tool.get("description"))
        # a server tool (web search, bash...) has a type and no schema: its JSON stands for it
        schema = tool.get("input_schema")
        counter.add(schema if schema is not None else {k: v for k, v in tool.items() if k != "cache_control"})
    total = counter.text + counter.fixed
    if not info.exact:
        total = math.ceil(counter.text * _factor(info.family, config)) + counter.fixed
    if isinstance(tools, list) and tools:
        total += _ANTHROPIC_TOOL_PROMPT.get(_tool_choice(request.get("tool_choice")), 346)
    return total


def _tool_choice(choice: Any) -> str:
    if isinstance(choice, str):
        return {"required": "any"}.get(choice, choice)
    if isinstance(choice, Mapping):
        # Anthropic's ``{"type": "auto" | "any" | "tool" | "none"}``; OpenAI's names a function
        kind = choice.get("type")
        return kind if isinstance(kind, str) and kind in _ANTHROPIC_TOOL_PROMPT else "tool"
    return "auto"


def _factor(family: Family, config: RuntimeConfig | None) -> float:
    settings = (config or runtime_config()).tokens
    return settings.family_factors.get(family, settings.safety_factor)


# -- the Responses API ------------------------------------------------------------------------------

#: Responses content part types and the chat part each is counted as.
_RESPONSES_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
#: Item fields that identify an item for OpenAI's store, not prompt text.
_ITEM_METADATA = frozenset({"type", "id", "status", "call_id", "phase"})


def _responses_part(part: Any) -> Any:
    """One Responses content part as the chat part it is counted as."""
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if isinstance(kind, str) and kind in _RESPONSES_TEXT_PARTS:
        return {"type": "text", "text": part.get("text")}
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.get("refusal")}
    if kind == "input_image":
        # by URL or file id alike, the size is unknown: the worst case, or the flat low-detail price
        return {"type": "image_url", "image_url": {"detail": part.get("detail")}}
    return part  # files, audio, unknown parts: their JSON, an over-estimate


def _responses_item(item: Any) -> dict[str, Any]:
    """One Responses input item as the chat message it is counted as."""
    if isinstance(item, str):
        return {"role": "user", "content": item}
    if not isinstance(item, Mapping):
        return {"role": "user", "content": _json(item)}
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, list):
            content = [_responses_part(part) for part in content]
        return {"role": item.get("role"), "content": content}
    if kind == "function_call":
        function = {"name": item.get("name"), "arguments": item.get("arguments")}
        return {"role": "assistant", "tool_calls": [{"type": "function", "function": function}]}
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        if isinstance(output, list):
            output = [_responses_part(part) for part in output]
        return {"role": "tool", "content": output}
    # reasoning, built-in tool calls and their outputs, item references: their JSON, an over-estimate
    return {"role": "user", "content": _json({k: v for k, v in item.items() if k not in _ITEM_METADATA})}


def _responses_tool(tool: Any) -> Any:
    if isinstance(tool, Mapping) and tool.get("type") == "function":
        fields = ("name", "description", "parameters")
        return {"type": "function", "function": {k: tool[k] for k in fields if k in tool}}
    return tool  # built-in tools (web search, file search...): their JSON


def count_responses_tokens(
    request: Mapping[str, Any], model: str | None = None, *, config: RuntimeConfig | None = None
) -> int:
    """Prompt tokens of an OpenAI Responses request (``POST /v1/responses``), the model the request's
    unless given.

    The request is counted as the chat request it amounts to: ``instructions`` as a system message,
    ``input`` (a string, or message, function call and function call output items) as messages, function
    tools by the cookbook's formula. Input the chat format has no place for (reasoning items, built-in
    tool calls, item references) and built-in tools are counted as their JSON text. Turns kept by
    OpenAI (``previous_response_id``, ``conversation``) are not in the request and so not counted: their
    cost shows in the usage the answer reports. Never raises on odd shapes."""
    if model is None:
        value = request.get("model")
        model = value if isinstance(value, str) else None
    messages: list[dict[str, Any]] = []
    instructions = request.get("instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    items = request.get("input")
    if isinstance(items, list):
        messages.extend(_responses_item(item) for item in items)
    elif items is not None:
        messages.append(_responses_item(items))
    chat: dict[str, Any] = {"messages": messages}
    tools = request.get("tools")
    if isinstance(tools, list) and tools:
        chat["tools"] = [_responses_tool(tool) for tool in tools]
        chat["tool_choice"] = request.get("tool_choice")
    return count_chat_tokens(chat, model, config=config)
