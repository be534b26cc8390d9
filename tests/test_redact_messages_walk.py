"""What redaction scans in an Anthropic Messages body: every client-written string, never a structural
one. No analyzer needed: this is the Messages walker's own contract."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.redact import RedactConfig
from asgi_aigw.redact.fields import TextGroup
from asgi_aigw.redact.walk_messages import MessagesWalk

#: Strings the walker must never report: structural values.
STRUCTURAL = "STRUCT"
#: Long enough to be inline binary data, as a real image is.
BASE64 = "STRUCT" + "iVBORw0KGgoAAAANSUhEUgAA" * 40


def full_messages() -> dict[str, Any]:
    """A Messages request using every field that carries client text, each holding ``text-<field>``,
    and every structural field holding ``STRUCT...``."""
    return {
        "model": "STRUCT-model",
        "max_tokens": 100,
        "system": [
            {
                "type": "text",
                "text": "text-system-1 ",
                "cache_control": {"type": "ephemeral", "ttl": "STRUCT"},
            },
            {"type": "text", "text": "text-system-2"},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "text-block", "citations": [{"cited_text": "text-cited"}]},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "STRUCT/png", "data": BASE64},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.org/text-img.png"}},
                    {"type": "image", "source": {"type": "file", "file_id": "STRUCT-file"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "STRUCT/plain", "data": "text-doc-data"},
                        "title": "text-doc-title",
                        "context": "text-doc-context",
                        "citations": {"enabled": True},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "STRUCT/pdf",
                            "data": "STRUCTJVBERi0xLjQ=",
                        },
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "content",
                            "content": [{"type": "text", "text": "text-doc-block"}],
                        },
                    },
                    {"type": "document", "source": {"type": "content", "content": "text-doc-string"}},
                    {
                        "type": "search_result",
                        "source": "https://example.org/text-search-source",
                        "title": "text-search-title",
                        "content": [{"type": "text", "text": "text-search-content"}],
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "text-thinking", "signature": "STRUCT-signature"},
                    {"type": "redacted_thinking", "data": "STRUCT-redacted"},
                    {
                        "type": "tool_use",
                        "id": "STRUCT-toolu",
                        "name": "STRUCT_tool",
                        "input": {"to": "text-input", "nested": [{"deep": "text-input-deep"}]},
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "STRUCT-toolu", "content": "text-result-string"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "STRUCT-toolu2",
                        "is_error": False,
                        "content": [
                            {"type": "text", "text": "text-result-block"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "STRUCT/png", "data": BASE64},
                            },
                        ],
                    },
                ],
            },
            {"role": "user", "content": "text-plain-content"},
        ],
        "tools": [
            {
                "name": "STRUCT_tool",
                "description": "text-tool-description",
                "input_schema": {
                    "type": "object",
                    "properties": {"STRUCT_prop": {"type": "string", "description": "text-prop-description"}},
                    "required": ["STRUCT_prop"],
                },
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "web_search_20250305",
                "name": "STRUCT_search",
                "user_location": {"type": "approximate", "city": "text-city"},
            },
        ],
        "tool_choice": {"type": "tool", "name": "STRUCT_tool"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "text-user-id"},
        "stop_sequences": ["text-stop"],
        "service_tier": "text-tier",  # a setting: scanned (no valid value is PII)
        "stream": True,
        "temperature": 0.5,
        "mcp_servers": [
            {
                "type": "url",
                "url": "https://example.org/text-mcp",
                "name": "STRUCT-mcp",
                "authorization_token": "STRUCT-token",
            }
        ],
    }


#: Field names of the Messages API, so random bodies reach every branch of the walk.
KEYS = [
    "type",
    "text",
    "thinking",
    "signature",
    "data",
    "source",
    "content",
    "input",
    "name",
    "id",
    "tool_use_id",
    "media_type",
    "url",
    "title",
    "citations",
    "system",
    "tools",
    "input_schema",
    "properties",
    "description",
    "metadata",
    "mcp_servers",
    "output_config",
    "format",
    "schema",
    "messages",
    "role",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "redacted_thinking",
]


def texts(walk: MessagesWalk) -> list[str]:
    out: list[str] = []
    for field in walk.fields:
        if isinstance(field, TextGroup):
            out.extend(part.text for part in field.parts)
        else:
            out.append(field.text)
    return out


def test_every_client_string_is_scanned_and_no_structural_one() -> None:
    walk = MessagesWalk(RedactConfig()).messages(full_messages())
    found = texts(walk)
    assert not [text for text in found if STRUCTURAL in text], "a structural value was scanned"
    expected = {
        "text-system-1 ",
        "text-system-2",
        "text-block",
        "text-cited",
        "https://example.org/text-img.png",
        "text-doc-data",
        "text-doc-title",
        "text-doc-context",
        "text-doc-block",
        "text-doc-string",
        "https://example.org/text-search-source",
        "text-search-title",
        "text-search-content",
        "text-thinking",
        "text-input",
        "text-input-deep",
        "text-result-string",
        "text-result-block",
        "text-plain-content",
        "text-tool-description",
        "text-prop-description",
        "text-city",
        "text-user-id",
        "text-stop",
        "text-tier",
        "https://example.org/text-mcp",
    }
    assert expected <= set(found), f"not scanned: {sorted(expected - set(found))}"


def test_text_blocks_of_one_content_list_are_scanned_as_one_text() -> None:
    walk = MessagesWalk(RedactConfig()).messages(full_messages())
    groups = {field.location: field.text for field in walk.fields if isinstance(field, TextGroup)}
    assert groups == {"system": "text-system-1 text-system-2"}


def test_signed_thinking_is_recorded_and_unsigned_is_not() -> None:
    body = full_messages()
    body["messages"][1]["content"].append({"type": "thinking", "thinking": "text-unsigned"})
    walk = MessagesWalk(RedactConfig()).messages(body)
    assert walk.signed == ["text-thinking"]
    assert "text-unsigned" in texts(walk)  # scanned all the same


def test_unknown_fields_are_scanned_with_their_names() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "extra_key": "text-x"}]}],
        "vendor_field": {"inner_key": "text-vendor"},
    }
    found = texts(MessagesWalk(RedactConfig()).messages(body))
    assert {"vendor_field", "inner_key", "text-vendor", "extra_key", "text-x"} <= set(found)


def test_tool_input_is_left_alone_when_tool_arguments_are_not_scanned() -> None:
    walk = MessagesWalk(RedactConfig(scan_tool_arguments=False)).messages(full_messages())
    assert "text-input" not in texts(walk)


@pytest.mark.parametrize("role", ["system", "User", "tool", None, 3])
def test_a_role_the_messages_api_does_not_define_is_refused(role: Any) -> None:
    message: dict[str, Any] = {"content": "hi"}
    if role is not None:
        message["role"] = role
    with pytest.raises(InvalidRequest) as caught:
        MessagesWalk(RedactConfig()).messages({"model": "m", "messages": [message]})
    assert caught.value.param == "messages[0].role"
    assert "user, assistant" in caught.value.message


def test_roles_left_out_of_the_scan_are_not_scanned() -> None:
    body = {"messages": [{"role": "assistant", "content": "text-a"}, {"role": "user", "content": "text-u"}]}
    assert texts(MessagesWalk(RedactConfig(roles=["user"])).messages(body)) == ["text-u"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5), role=st.sampled_from(["user", "assistant"])
)
def test_any_json_in_any_field_is_walked_without_error(body: dict[str, Any], role: str) -> None:
    """Whatever shape each field takes (a list where a string belongs, a block without a type...), the
    walk reports strings and never fails: only an unknown role is refused."""
    turns = [{"role": role, "content": body.get(key)} for key in ("content", "messages", "system")]
    body = {**body, "messages": turns}
    walk = MessagesWalk(RedactConfig()).messages(body)
    for field in walk.fields:
        assert isinstance(field.text, str)
