"""Which strings of a request the model will read, where they are, and how to rewrite them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .config import Action, RedactConfig
from .placeholders import PlaceholderMap, json_escape
from .scanner import Finding

#: When findings overlap, the stricter action wins the merged span.
_SEVERITY: dict[str, int] = {"allow": 0, "pseudonymize": 1, "mask": 2, "block": 3}


@dataclass(slots=True)
class TextField:
    """One string of the request body: the object holding it, its key, and a readable location."""

    container: dict[str, Any] | list[Any]
    key: Any
    location: str
    text: str
    #: The string is JSON source (tool-call arguments): replacements must be JSON-escaped.
    json_source: bool = False

    def set(self, value: str) -> None:
        self.container[self.key] = value


@dataclass(slots=True)
class Replacement:
    start: int
    end: int
    entity_type: str
    action: Action


def chat_fields(data: dict[str, Any], config: RedactConfig) -> list[TextField]:
    """The texts of a chat completion request that are scanned (roles and tool arguments per config)."""
    fields: list[TextField] = []
    messages = data.get("messages")
    if not isinstance(messages, list):
        return fields
    roles = set(config.roles)
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        # a role of the wrong type (a list, say) is not hashable: skip it, the router refuses it (400)
        if not isinstance(role, str) or role not in roles:
            continue
        content = message.get("content")
        if isinstance(content, str):
            fields.append(TextField(message, "content", f"messages[{i}].content", content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    fields.append(TextField(part, "text", f"messages[{i}].content[{j}].text", part["text"]))
        if not config.scan_tool_arguments:
            continue
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    location = f"messages[{i}].tool_calls[{j}].function.arguments"
                    fields.append(TextField(function, "arguments", location, function["arguments"], True))
        legacy = message.get("function_call")
        if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
            location = f"messages[{i}].function_call.arguments"
            fields.append(TextField(legacy, "arguments", location, legacy["arguments"], True))
    return fields


def embeddings_fields(data: dict[str, Any]) -> list[TextField]:
    """The texts of an embeddings request (token-id inputs are left alone)."""
    value = data.get("input")
    if isinstance(value, str):
        return [TextField(data, "input", "input", value)]
    if isinstance(value, list):
        return [
            TextField(value, i, f"input[{i}]", item) for i, item in enumerate(value) if isinstance(item, str)
        ]
    return []


def plan(findings: Iterable[Finding], config: RedactConfig) -> list[Replacement]:
    """Non-overlapping replacements in text order. Overlapping findings merge into one span covering
    them all (so no part of either leaks), typed by the strictest action, then the best score."""
    spans: list[tuple[Replacement, float]] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        action = config.action_for(finding.entity_type)
        if action == "allow":
            continue
        current = Replacement(finding.start, finding.end, finding.entity_type, action)
        if spans and finding.start < spans[-1][0].end:
            last, score = spans[-1]
            winner_is_new = (_SEVERITY[action], finding.score) > (_SEVERITY[last.action], score)
            last.end = max(last.end, finding.end)
            if winner_is_new:
                last.entity_type, last.action = finding.entity_type, action
                spans[-1] = (last, finding.score)
            continue
        spans.append((current, finding.score))
    return [span for span, _ in spans]


def rewrite(
    field: TextField, replacements: list[Replacement], mapping: PlaceholderMap, config: RedactConfig
) -> str:
    """The field's text with each replacement applied (placeholders for pseudonymize, the mask text
    for mask; block never gets here)."""
    out: list[str] = []
    position = 0
    text = field.text
    for item in replacements:
        out.append(text[position : item.start])
        if item.action == "pseudonymize":
            out.append(mapping.placeholder(item.entity_type, text[item.start : item.end]))
        else:
            masked = config.mask_format.format(entity_type=item.entity_type)
            out.append(json_escape(masked) if field.json_source else masked)
        position = item.end
    out.append(text[position:])
    return "".join(out)
