"""Every string of an Anthropic Messages request (``/v1/messages``, ``/v1/messages/count_tokens``) a
client wrote: what RedactMiddleware scans on those routes.

The rule is the chat walk's (:mod:`asgi_aigw.redact.walk`): scan everything, skip a short list. Not
scanned, because they are ids, names, enum values or binary data the API checks or verifies:

- ``model``, ``max_tokens`` and the sampling numbers, ``stream``, ``tool_choice``, the ``container``
  setting, ``context_management``;
- in content blocks: ``type``, ``id``, ``tool_use_id``, tool ``name``, ``cache_control``, a thinking
  block's ``signature``, ``redacted_thinking`` data, a source's ``media_type`` and base64 ``data``,
  ``file_id``, a web search result's ``encrypted_content``;
- tools' ``name`` and ``type`` and their input schemas' structural keywords (as for chat);
- MCP servers' ``name`` and ``authorization_token`` (a secret, not text), and their tool lists (names).

Scanned: ``system`` (a string or text blocks), message content (a string or blocks), text blocks (the
text blocks of one content list as one text, as the model reads them), ``tool_result`` content (a
string or blocks, nested), every key and string of ``tool_use`` input, documents with a text source
and the blocks of a content source, document titles and context, image and document URLs, search
results, citations, thinking text, tools' descriptions and schema text keywords, ``metadata``,
``stop_sequences``, the ``service_tier``, ``thinking``, ``inference_geo`` and ``speed`` settings (enum
words: no valid value is PII, but one that is must not reach the provider), and any field this module
does not know.

A thinking block's text is scanned but its placeholder-shaped strings are *signed*: the gateway wrote
them into an earlier answer and the model signed that text, so they are not treated as a client's
forgery (see docs/redaction.md, "Thinking").
"""

from __future__ import annotations

from typing import Any

from .config import RedactConfig
from .fields import TextField
from .walk import Walk

#: The roles of the Messages API.
MESSAGES_ROLES: tuple[str, ...] = ("user", "assistant")

#: Request fields whose values are names, numbers, enum values or settings.
_STRUCTURAL = frozenset(
    {
        "model",
        "max_tokens",
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "tool_choice",
        "container",
        "context_management",
        "cache_control",
        "diagnostics",
    }
)
#: Settings whose values are enum words and numbers: scanned (no valid value is PII; see walk.py).
_SETTINGS = frozenset({"service_tier", "thinking", "inference_geo", "speed"})
#: Request fields the API defines: their names are not scanned.
_KNOWN = (
    _STRUCTURAL
    | _SETTINGS
    | {
        "messages",
        "system",
        "tools",
        "metadata",
        "stop_sequences",
        "mcp_servers",
        "output_config",
        "output_format",
    }
)
#: Keys of content blocks (and their sources) that are ids, enum values or signatures.
_BLOCK_STRUCTURAL = frozenset(
    {
        "type",
        "id",
        "tool_use_id",
        "name",
        "server_name",
        "cache_control",
        "signature",
        "media_type",
        "file_id",
        "encrypted_content",
        "encrypted_index",
        "is_error",
        "caller",
    }
)
#: Keys of content blocks the API defines: their names are not scanned.
_BLOCK_KNOWN = _BLOCK_STRUCTURAL | {
    "text",
    "thinking",
    "data",
    "source",
    "content",
    "input",
    "title",
    "context",
    "citations",
    "url",
}
#: Block types whose ``input`` is a tool call's arguments.
_TOOL_CALLS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
#: Tool definition keys that are names, enum values or settings.
_TOOL_STRUCTURAL = frozenset(
    {"name", "type", "cache_control", "strict", "defer_loading", "allowed_callers", "eager_input_streaming"}
)
_TOOL_KNOWN = _TOOL_STRUCTURAL | {"description", "input_schema", "input_examples"}
#: MCP server keys that are names or secrets.
_MCP_STRUCTURAL = frozenset({"type", "name", "authorization_token", "tool_configuration"})


class MessagesWalk(Walk):
    """The strings found in one Messages request body, in body order."""

    __slots__ = ("signed",)

    def __init__(self, config: RedactConfig) -> None:
        super().__init__(config)
        #: Texts of thinking blocks that carry a signature (their placeholders are the gateway's own).
        self.signed: list[str] = []

    def messages(self, data: dict[str, Any]) -> MessagesWalk:
        for key, value, _ in self._fields(data, "", _KNOWN, _STRUCTURAL):
            if key == "messages" and isinstance(value, list):
                for index, message in enumerate(value):
                    self._turn(value, index, message)
            elif key == "system" and isinstance(value, list):
                self._blocks(value, "system")
            elif key == "tools" and isinstance(value, list):
                for index in range(len(value)):
                    self._tool_definition(
                        value,
                        index,
                        f"tools[{index}]",
                        structural=_TOOL_STRUCTURAL,
                        known=_TOOL_KNOWN,
                        schemas=("input_schema",),
                    )
            elif key == "mcp_servers" and isinstance(value, list):
                for index in range(len(value)):
                    self._some(value, index, f"mcp_servers[{index}]", _MCP_STRUCTURAL)
            elif key in ("output_config", "output_format") and isinstance(value, dict):
                self._output(value, key)
            else:
                self._any(data, key, key)
        return self

    # -- messages and blocks ------------------------------------------------------------------------

    def _turn(self, messages: list[Any], index: int, message: Any) -> None:
        location = f"messages[{index}]"
        if not self._scanned_message(messages, index, location, MESSAGES_ROLES):
            return
        for key, value, where in self._fields(message, location, ("role", "content"), ("role",)):
            if key == "content" and isinstance(value, list):
                self._blocks(value, where)
            else:
                self._any(message, key, where)

    def _blocks(self, blocks: list[Any], location: str) -> None:
        """A content list; its text blocks are scanned as one text, as the model reads them."""
        texts: list[TextField] = []
        for index, block in enumerate(blocks):
            where = f"{location}[{index}]"
            if not isinstance(block, dict):
                self._any(blocks, index, where)
                continue
            # a type that is not a string (a list, an object) names no known block: walked as unknown
            kind = block.get("type") if isinstance(block.get("type"), str) else None
            for key, value, at in self._fields(block, where, _BLOCK_KNOWN, _BLOCK_STRUCTURAL):
                if key == "text" and kind == "text" and isinstance(value, str):
                    texts.append(TextField(block, key, at, value))
                elif key == "thinking" and kind == "thinking" and isinstance(value, str):
                    if isinstance(block.get("signature"), str):
                        self.signed.append(value)
                    self._any(block, key, at)
                elif key == "data" and kind == "redacted_thinking":
                    continue  # encrypted by the provider: not text
                elif key == "source" and isinstance(value, dict):
                    self._source(value, at)
                elif key == "content" and isinstance(value, list):
                    self._blocks(value, at)
                elif key == "input" and kind in _TOOL_CALLS:
                    if self.config.scan_tool_arguments:
                        self._any(block, key, at)
                else:
                    self._any(block, key, at)
        self._texts(texts, location)

    def _source(self, source: dict[str, Any], location: str) -> None:
        """An image or document source: base64 data is not text, a text source's data is."""
        kind = source.get("type")
        for key, value, at in self._fields(source, location, _BLOCK_KNOWN, _BLOCK_STRUCTURAL):
            if key == "data" and kind != "text":
                continue  # base64 (or any other encoding of bytes)
            if key == "url" and isinstance(value, str) and value.startswith("data:"):
                continue
            if key == "content" and isinstance(value, list):
                self._blocks(value, at)
            else:
                self._any(source, key, at)

    # -- tools and settings -------------------------------------------------------------------------

    def _output(self, output: dict[str, Any], location: str) -> None:
        """``output_config`` / ``output_format``: a JSON schema (walked as a schema) and settings."""
        for key, value in output.items():
            at = f"{location}.{key}"
            if key == "schema" and isinstance(value, dict):
                self._schema(value, at)
            elif key == "format" and isinstance(value, dict):
                self._output(value, at)
            # other keys (``type``, ``effort``) are enum values

    def _some(self, container: list[Any], index: int, location: str, structural: frozenset[str]) -> None:
        """An object whose ``structural`` keys are skipped and every other string scanned."""
        item = container[index]
        if not isinstance(item, dict):
            self._any(container, index, location)
            return
        for key in item:
            if key not in structural:
                self._any(item, key, f"{location}.{key}")
