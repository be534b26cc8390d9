"""Every string of an OpenAI Responses request (``POST /v1/responses``) a client wrote: what
RedactMiddleware scans on that route.

The rule is the chat walk's (:mod:`asgi_aigw.redact.walk`): scan everything, skip a short list. Not
scanned, because they are ids, names, enum values, settings or binary data the API checks:

- ``model``, ``tool_choice``, ``store``, ``stream`` and ``stream_options``, ``background`` and its
  options, ``previous_response_id``, ``conversation``, ``context_management``, ``prompt_cache_options``,
  ``moderation``, ``image``, ``access_programs``, and the numbers;
- in input items: ``type``, ``id``, ``call_id``, ``role`` (checked: an unknown role is refused),
  ``status``, ``phase``, a function's ``name`` and ``namespace``, ``caller``, a reasoning item's
  ``encrypted_content``; in content parts ``type``, ``detail``, ``file_id``, an image's ``data:`` URL
  and a file's ``file_data`` when it is a ``data:`` URL or base64 (other text there is scanned);
- tools' ``name``, ``type`` and settings, their schemas' structural keywords (as for chat), an MCP
  tool's ``server_label`` and ``authorization`` (a secret, not text);
- ``text.format``'s ``type`` and ``name``; a stored ``prompt``'s ``id`` and
  ``version``.

Scanned: ``instructions``; ``input`` as a string, or its items: message content (a string, or its
parts; the text parts of one message as one text, as the model reads them), image and file URLs,
file names, refusals; every key and string of a function call's ``arguments`` (JSON source, decoded as
chat's tool-call arguments are); function call outputs (a string or parts); reasoning summaries and
content; tools' descriptions and schema text keywords; ``text.format``'s description and schema text;
``metadata``, ``user``, ``safety_identifier``, ``prompt_cache_key``, a stored prompt's variables, the
settings ``reasoning``, ``service_tier``, ``include``, ``truncation``, ``prompt_cache_retention`` and
``text.verbosity`` (enum words: no valid value is PII, but one that is must not reach the provider), and
any field or item type this module does not know (its strings, and its field names).
"""

from __future__ import annotations

from typing import Any

from .fields import TextField
from .walk import Walk, _is_blob

#: The roles of a Responses message item.
RESPONSES_ROLES: tuple[str, ...] = ("user", "assistant", "system", "developer")

#: Request fields whose values are names, ids, enum values or settings.
_STRUCTURAL = frozenset(
    {
        "model",
        "tool_choice",
        "store",
        "stream",
        "stream_options",
        "background",
        "background_options",
        "previous_response_id",
        "conversation",
        "context_management",
        "prompt_cache_options",
        "moderation",
        "image",
        "access_programs",
        "max_output_tokens",
        "max_tool_calls",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "top_logprobs",
    }
)
#: Request fields the API defines (``ResponseCreateParams``): their names are not scanned.
#: Settings whose values are enum words: scanned (no valid value is PII; see walk.py).
_SETTINGS = frozenset({"reasoning", "service_tier", "include", "truncation", "prompt_cache_retention"})
_KNOWN = (
    _STRUCTURAL
    | _SETTINGS
    | {
        "input",
        "instructions",
        "tools",
        "text",
        "prompt",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
    }
)
#: Keys of input items that are ids, names, enum values or provider-encrypted data.
_ITEM_STRUCTURAL = frozenset(
    {
        "type",
        "id",
        "call_id",
        "role",
        "status",
        "phase",
        "name",
        "namespace",
        "caller",
        "encrypted_content",
        "execution",
        "server_label",
        "approval_request_id",
    }
)
#: Keys of input items the API defines: their names are not scanned.
_ITEM_KNOWN = _ITEM_STRUCTURAL | {"content", "arguments", "output", "summary", "input", "action", "result"}
#: Keys of content parts that are enum values, ids or cache settings.
_PART_STRUCTURAL = frozenset({"type", "detail", "file_id", "prompt_cache_breakpoint"})
_PART_KNOWN = _PART_STRUCTURAL | {"text", "image_url", "file_url", "file_data", "filename", "refusal"}
#: Content part types whose ``text`` the model reads as the message's text.
_TEXT_PARTS = frozenset({"input_text", "output_text"})
#: Tool definition keys that are names, enum values, settings or secrets.
_TOOL_STRUCTURAL = frozenset(
    {
        "type",
        "name",
        "strict",
        "defer_loading",
        "allowed_callers",
        "server_label",
        "authorization",
        "connector_id",
        "require_approval",
        "allowed_tools",
        "vector_store_ids",
        "container",
    }
)
_TOOL_KNOWN = _TOOL_STRUCTURAL | {"description", "parameters", "output_schema"}
#: Item types that are the model's own turn (scanned when ``assistant`` is a scanned role).
_ASSISTANT_ITEMS = frozenset({"function_call", "reasoning"})


class ResponsesWalk(Walk):
    """The strings found in one Responses request body, in body order."""

    __slots__ = ()

    def responses(self, data: dict[str, Any]) -> ResponsesWalk:
        for key, value, _ in self._fields(data, "", _KNOWN, _STRUCTURAL):
            if key == "input" and isinstance(value, list):
                for index, item in enumerate(value):
                    self._item(value, index, item)
            elif key == "tools" and isinstance(value, list):
                for index in range(len(value)):
                    self._tool_definition(
                        value,
                        index,
                        f"tools[{index}]",
                        structural=_TOOL_STRUCTURAL,
                        known=_TOOL_KNOWN,
                        schemas=("parameters", "output_schema"),
                    )
            elif key == "text" and isinstance(value, dict):
                self._text_config(value)
            elif key == "prompt" and isinstance(value, dict):
                for name in value:
                    if name not in ("id", "version"):
                        self._any(value, name, f"prompt.{name}")
            else:
                self._any(data, key, key)  # instructions, input as a string, metadata, user, ...
        return self

    # -- input items --------------------------------------------------------------------------------

    def _item(self, items: list[Any], index: int, item: Any) -> None:
        location = f"input[{index}]"
        if not isinstance(item, dict):
            self._any(items, index, location)  # the provider refuses it; still never unscanned
            return
        kind = item.get("type") if isinstance(item.get("type"), str) else None
        if kind is None:  # an easy input message, or an item reference (``{"id": ...}`` alone)
            kind = "message" if "role" in item or "content" in item else "item_reference"
        if kind == "message":
            role = item.get("role")
            self._check_role(role, location, RESPONSES_ROLES)
        elif kind in _ASSISTANT_ITEMS:
            role = "assistant"
        elif kind == "function_call_output":
            role = "tool"
        else:
            role = None  # an item type this module does not walk specially: always scanned
        if role is not None and role not in self.config.roles:
            return  # the operator chose not to scan this role (documented)
        for key, value, where in self._fields(item, location, _ITEM_KNOWN, _ITEM_STRUCTURAL):
            if key in ("content", "output") and isinstance(value, list) and kind != "reasoning":
                self._parts(value, where)
            elif key == "arguments" and isinstance(value, str):
                if self.config.scan_tool_arguments:
                    self._arguments(item, where, value)
            elif key in ("summary", "content") and kind == "reasoning" and isinstance(value, list):
                self._summary(value, where)
            else:
                self._any(item, key, where)

    def _summary(self, entries: list[Any], location: str) -> None:
        """A reasoning item's summary or content: ``{"type": ..., "text": ...}`` entries."""
        for number, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self._any(entries, number, f"{location}[{number}]")
                continue
            for key in entry:
                if key != "type":
                    if key != "text":
                        self._key(entry, key, f"{location}[{number}].{key}")
                    self._any(entry, key, f"{location}[{number}].{key}")

    def _parts(self, parts: list[Any], location: str) -> None:
        """A message's content (or a function call output's) as parts: the text parts as one text."""
        texts: list[TextField] = []
        for index, part in enumerate(parts):
            where = f"{location}[{index}]"
            if not isinstance(part, dict):
                self._any(parts, index, where)
                continue
            kind = part.get("type") if isinstance(part.get("type"), str) else None
            for key, value, at in self._fields(part, where, _PART_KNOWN, _PART_STRUCTURAL):
                if key == "text" and kind in _TEXT_PARTS and isinstance(value, str):
                    texts.append(TextField(part, key, at, value))
                elif key == "image_url" and isinstance(value, str) and value.startswith("data:"):
                    continue  # inline base64: not text
                elif key == "file_data" and isinstance(value, str) and _is_file_data(value):
                    continue  # a data: URL or base64: anything else is scanned as text
                else:
                    self._any(part, key, at)  # file names, URLs, refusals, annotations, ...
        self._texts(texts, location)

    # -- tools and settings -------------------------------------------------------------------------

    def _text_config(self, text: dict[str, Any]) -> None:
        """``text``: ``format`` (a JSON schema's description and text keywords) and ``verbosity``."""
        for key, value in text.items():
            at = f"text.{key}"
            if key not in ("format", "verbosity"):
                self._key(text, key, at)
            if key == "format" and isinstance(value, dict):
                for name, setting in value.items():
                    where = f"{at}.{name}"
                    if name in ("type", "name", "strict"):
                        continue
                    if name == "schema" and isinstance(setting, dict):
                        self._schema(setting, where)
                    else:
                        if name != "description":
                            self._key(value, name, where)
                        self._any(value, name, where)
            else:
                self._any(text, key, at)


def _is_file_data(value: str) -> bool:
    """Whether a file's ``file_data`` is inline binary (a ``data:`` URL, as the API takes it, or bare
    base64); anything else is text someone put there, and scanned."""
    return value.startswith("data:") or _is_blob(value)
