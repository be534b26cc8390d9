"""Every string a client sent, except the structural ones: what RedactMiddleware scans.

The rule is "scan everything, skip a short list" rather than "scan a list": a field this module does
not know (a new OpenAI parameter, a provider extension, ``metadata``) is client text and is scanned,
values and keys. Not scanned, because they are names or enum values the API checks, not text:

- ``model``, message ``role`` (checked: an unknown role is refused), ids (``tool_call_id``,
  ``tool_calls[].id``, ``file_id``, ``audio.id``), tool and function names, ``type`` fields,
  ``tool_choice``, ``audio`` (voice and format), ``logit_bias`` (token ids), ``encoding_format``,
  image ``detail``, audio ``format``;
- in JSON schemas (tool parameters, ``response_format``), keys and keywords such as ``type``,
  ``format``, ``pattern``, ``$ref`` and ``required``: their text keywords (``description``,
  ``title``, ``enum``, ``const``, ``default``, ``examples``, ``$comment``) are scanned;
- inline binary data (``data:`` URLs, ``input_audio.data``, ``file.file_data``, and any string of at
  least :data:`BLOB_LENGTH` characters that is base64 with no space): base64 is not text;
- numbers, booleans and null.

Settings whose values are enum words (``reasoning_effort``, ``service_tier``, ``modalities``,
``verbosity``, ``prompt_cache_retention``) are scanned although the API checks them: no valid value
holds PII, and a value that does would reach the provider (and the log) before being refused.

Tool-call ``arguments`` are JSON source: they are decoded, their keys and string values scanned as
text, and encoded again, so escapes (``\\u0040``) hide nothing. The text parts of one message are
also scanned joined, as the model reads them, so a value split across parts is found.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from typing import Any

import orjson

from ..kernel.errors import InvalidRequest, clip
from .config import RedactConfig
from .fields import JSONSource, Scanned, TextField, TextGroup

#: The roles of the Chat Completions API (case-sensitive, as OpenAI checks them).
VALID_ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool", "function")

#: Request fields whose values are names or enum values.
_CHAT_STRUCTURAL = frozenset({"model", "tool_choice", "function_call", "audio", "logit_bias"})
#: Settings whose values are enum words: scanned all the same, as no valid value is PII, so a value
#: that is (the API would refuse it, but only once it has it) never reaches the provider or the log.
CHAT_SETTINGS = frozenset(
    {"reasoning_effort", "service_tier", "modalities", "verbosity", "prompt_cache_retention"}
)
#: Request fields the API defines: their names are not scanned (their values are, unless structural).
_CHAT_KNOWN = (
    _CHAT_STRUCTURAL
    | CHAT_SETTINGS
    | {
        "messages",
        "tools",
        "functions",
        "response_format",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "user",
        "metadata",
        "store",
        "prediction",
        "web_search_options",
        "prompt_cache_key",
        "safety_identifier",
    }
)
_EMBEDDINGS_STRUCTURAL = frozenset({"model", "encoding_format"})
_EMBEDDINGS_KNOWN = _EMBEDDINGS_STRUCTURAL | {"input", "dimensions", "user"}
_MESSAGE_STRUCTURAL = frozenset({"role", "tool_call_id", "audio"})
#: (``annotations`` and ``reasoning_content`` come back in answers and are re-sent with the history)
_MESSAGE_KNOWN = _MESSAGE_STRUCTURAL | {
    "content",
    "name",
    "tool_calls",
    "function_call",
    "refusal",
    "annotations",
    "reasoning_content",
}
#: JSON-schema keywords whose values are text the model reads.
_SCHEMA_TEXT = frozenset({"description", "title", "enum", "const", "default", "examples", "$comment"})
#: JSON-schema keywords mapping names (structural) to sub-schemas.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


_JSON_TYPES = {dict: "object", list: "array", int: "number", float: "number", bool: "boolean"}


class Walk:
    """The strings found in one request body, in body order."""

    __slots__ = ("config", "fields", "sources")

    def __init__(self, config: RedactConfig) -> None:
        self.config = config
        self.fields: list[Scanned] = []
        #: Decoded tool-call arguments, encoded again once their strings are rewritten.
        self.sources: list[JSONSource] = []

    # -- requests ----------------------------------------------------------------------------------

    def chat(self, data: dict[str, Any]) -> Walk:
        for key, value, _ in self._fields(data, "", _CHAT_KNOWN, _CHAT_STRUCTURAL):
            if key == "messages" and isinstance(value, list):
                for index, message in enumerate(value):
                    self._message(value, index, message)
            elif key in ("tools", "functions") and isinstance(value, list):
                for index, tool in enumerate(value):
                    self._tool(value, index, tool, f"{key}[{index}]")
            elif key == "response_format" and isinstance(value, dict):
                self._response_format(value)
            else:
                self._any(data, key, key)
        return self

    def embeddings(self, data: dict[str, Any]) -> Walk:
        for key in data:
            if key not in _EMBEDDINGS_KNOWN:
                self._key(data, key, key)
            if key not in _EMBEDDINGS_STRUCTURAL:
                self._any(data, key, key)  # token-id input is numbers: nothing to scan
        return self

    # -- chat parts --------------------------------------------------------------------------------

    def _message(self, messages: list[Any], index: int, message: Any) -> None:
        location = f"messages[{index}]"
        if not self._scanned_message(messages, index, location, VALID_ROLES):
            return
        for key, value, where in self._fields(message, location, _MESSAGE_KNOWN, _MESSAGE_STRUCTURAL):
            if key == "content" and isinstance(value, list):
                self._parts(value, where)
            elif key == "tool_calls" and isinstance(value, list):
                if self.config.scan_tool_arguments:
                    for number, call in enumerate(value):
                        self._tool_call(value, number, call, f"{where}[{number}]")
            elif key == "function_call" and isinstance(value, dict):
                if self.config.scan_tool_arguments:
                    self._function(value, where, arguments=True)
            else:
                self._any(message, key, where)

    def _parts(self, parts: list[Any], location: str) -> None:
        texts: list[TextField] = []
        for index, part in enumerate(parts):
            where = f"{location}[{index}]"
            if not isinstance(part, dict):
                self._any(parts, index, where)
                continue
            for key, value in part.items():
                at = f"{where}.{key}"
                if key == "type":
                    continue
                if key == "text" and isinstance(value, str):
                    texts.append(TextField(part, key, at, value))
                elif key == "image_url" and isinstance(value, dict):
                    self._media(value, at, data_key="url", structural=("detail",))
                elif key == "input_audio" and isinstance(value, dict):
                    self._media(value, at, data_key="data", structural=("format",))
                elif key == "file" and isinstance(value, dict):
                    self._media(value, at, data_key="file_data", structural=("file_id",))
                else:
                    if key not in ("refusal", "image_url", "input_audio", "file"):
                        self._key(part, key, at)
                    self._any(part, key, at)
        self._texts(texts, location)

    def _media(
        self, media: dict[str, Any], location: str, *, data_key: str, structural: tuple[str, ...]
    ) -> None:
        for key, value in media.items():
            at = f"{location}.{key}"
            if key in structural:
                continue
            if key == data_key and isinstance(value, str) and (key != "url" or value.startswith("data:")):
                continue  # inline base64: not text
            self._any(media, key, at)

    def _tool_call(self, calls: list[Any], index: int, call: Any, location: str) -> None:
        if not isinstance(call, dict):
            self._any(calls, index, location)
            return
        for key, value in call.items():
            at = f"{location}.{key}"
            if key in ("id", "type"):
                continue
            if key == "function" and isinstance(value, dict):
                self._function(value, at, arguments=True)
            else:
                self._key(call, key, at)
                self._any(call, key, at)

    def _tool(self, tools: list[Any], index: int, tool: Any, location: str) -> None:
        if not isinstance(tool, dict):
            self._any(tools, index, location)
            return
        if "parameters" in tool or "name" in tool:  # a legacy ``functions`` entry
            self._function(tool, location, arguments=False)
            return
        for key, value in tool.items():
            at = f"{location}.{key}"
            if key == "type":
                continue
            if isinstance(value, dict):
                self._function(value, at, arguments=False)  # function, custom, ...: named the same
            else:
                self._any(tool, key, at)

    def _function(self, function: dict[str, Any], location: str, *, arguments: bool) -> None:
        """A function definition (name structural, schema walked) or call (arguments decoded)."""
        for key, value in function.items():
            at = f"{location}.{key}"
            if key == "name":
                continue
            if key == "arguments" and arguments and isinstance(value, str):
                self._arguments(function, at, value)
            elif key in ("parameters", "schema") and isinstance(value, dict):
                self._schema(value, at)
            else:
                if key not in ("description", "arguments", "strict"):
                    self._key(function, key, at)
                self._any(function, key, at)

    def _response_format(self, response_format: dict[str, Any]) -> None:
        for key, value in response_format.items():
            at = f"response_format.{key}"
            if key == "type":
                continue
            if isinstance(value, dict):
                self._function(value, at, arguments=False)  # json_schema: name, description, schema
            else:
                self._any(response_format, key, at)

    def _schema(self, schema: Any, location: str) -> None:
        if isinstance(schema, list):
            for index, item in enumerate(schema):
                self._schema(item, f"{location}[{index}]")
            return
        if not isinstance(schema, dict):
            return
        for key, value in schema.items():
            at = f"{location}.{key}"
            if key in _SCHEMA_TEXT:
                self._any(schema, key, at)
            elif key in _SCHEMA_MAPS and isinstance(value, dict):
                for name, sub in value.items():
                    self._schema(sub, f"{at}.{name}")
            elif isinstance(value, dict | list):
                self._schema(value, at)

    def _arguments(self, function: dict[str, Any], location: str, text: str) -> None:
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            # not JSON (a model may write anything): scanned as it is, replacements JSON-escaped
            self.fields.append(TextField(function, "arguments", location, text, json_source=True))
            return
        source = JSONSource(function, "arguments", {"value": decoded})
        start = len(self.fields)
        self._any(source.holder, "value", location)
        if len(self.fields) == start:
            return
        for scanned in self.fields[start:]:
            for part in scanned.parts if isinstance(scanned, TextGroup) else [scanned]:
                part.source = source
        self.sources.append(source)

    # -- shared by every dialect's walk ----------------------------------------------------------------

    def _fields(
        self, obj: dict[str, Any], location: str, known: Container[str], structural: Container[str]
    ) -> Iterator[tuple[str, Any, str]]:
        """The members of ``obj`` that are not ``structural``, as (key, value, location); the name of
        each member the API does not define (not in ``known``) is scanned too. ``location`` is empty
        for a request's own fields."""
        for key, value in obj.items():
            at = f"{location}.{key}" if location else key
            if key not in known:
                self._key(obj, key, at)
            if key in structural:
                continue
            yield key, value, at

    def _scanned_message(
        self, messages: list[Any], index: int, location: str, roles: tuple[str, ...]
    ) -> bool:
        """Whether the message at ``index`` is to be walked: it is an object (anything else is scanned
        whole: the provider refuses it, still it is never unscanned), its role one of ``roles`` (else
        refused), and the operator scans that role (documented)."""
        message = messages[index]
        if not isinstance(message, dict):
            self._any(messages, index, location)
            return False
        role = message.get("role")
        self._check_role(role, location, roles)
        return role in self.config.roles

    def _check_role(self, role: Any, location: str, roles: tuple[str, ...]) -> None:
        """Refuse a message whose role is not one of ``roles``: refused rather than skipped, as a message
        the scanner does not understand must not pass unscanned, and the provider would refuse the role
        anyway."""
        if isinstance(role, str) and role in roles:
            return
        if role is None:
            shown = "missing"
        elif isinstance(role, str):
            shown = clip(repr(role), 40)  # never echo a huge value back whole
        else:
            shown = f"a JSON {_JSON_TYPES.get(type(role), 'value')}"
        raise InvalidRequest(
            f"{location}.role is {shown}: a message's role must be one of {', '.join(roles)} (lower case).",
            param=f"{location}.role",
        )

    def _texts(self, texts: list[TextField], location: str) -> None:
        """The text parts of one content list, scanned as one text, as the model reads them."""
        if len(texts) == 1:
            self.fields.append(texts[0])
        elif texts:
            self.fields.append(TextGroup(location, texts))

    def _tool_definition(
        self,
        tools: list[Any],
        index: int,
        location: str,
        *,
        structural: frozenset[str],
        known: frozenset[str],
        schemas: tuple[str, ...],
    ) -> None:
        """A tool definition: ``structural`` keys skipped, names of ``known`` keys not scanned, the
        JSON schemas under ``schemas`` walked as schemas, every other string scanned."""
        tool = tools[index]
        if not isinstance(tool, dict):
            self._any(tools, index, location)
            return
        for key, value, at in self._fields(tool, location, known, structural):
            if key in schemas and isinstance(value, dict):
                self._schema(value, at)
            else:
                self._any(tool, key, at)  # descriptions, a custom tool's grammar, ...

    # -- anything else: every string and every key ----------------------------------------------------

    def _any(self, container: dict[str, Any] | list[Any], key: Any, location: str) -> None:
        value = container[key]
        if isinstance(value, str):
            if not _is_blob(value):
                self.fields.append(TextField(container, key, location, value))
        elif isinstance(value, dict):
            for name in list(value):
                at = f"{location}.{name}"
                self._key(value, name, at)
                self._any(value, name, at)
        elif isinstance(value, list):
            for index in range(len(value)):
                self._any(value, index, f"{location}[{index}]")

    def _key(self, container: dict[str, Any], key: Any, location: str) -> None:
        if isinstance(key, str):
            self.fields.append(TextField(container, key, f"{location} (key)", key, is_key=True))


#: Strings at least this long that are base64 (or a ``data:`` URL) are inline binary, not text.
BLOB_LENGTH = 512


def _is_blob(value: str) -> bool:
    """Inline binary data in a field this module does not know (an image in a provider's own
    content-part shape, say): no recogniser reads base64, and a multi-megabyte string is work (and
    NER's length limit) for nothing. C-speed checks only: this runs on the event loop."""
    if len(value) < BLOB_LENGTH:
        return False
    if value.startswith("data:"):
        return True
    if not value.isascii():
        return False
    core = value.rstrip("=").replace("+", "").replace("/", "").replace("-", "").replace("_", "")
    return core.isalnum()
