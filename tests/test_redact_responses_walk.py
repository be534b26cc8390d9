"""What redaction scans in an OpenAI Responses body: every client-written string, never a structural
one. No analyzer needed: this is the Responses walker's own contract."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.redact import RedactConfig
from asgi_aigw.redact.fields import TextGroup
from asgi_aigw.redact.walk_responses import ResponsesWalk

#: Strings the walker must never report: structural values.
STRUCTURAL = "STRUCT"
#: Long enough to be inline binary data, as a real image is.
BASE64 = "STRUCT" + "iVBORw0KGgoAAAANSUhEUgAA" * 40


def full_request() -> dict[str, Any]:
    """A Responses request using every field that carries client text, each holding ``text-<field>``,
    and every structural field holding ``STRUCT...``."""
    return {
        "model": "STRUCT-model",
        "instructions": "text-instructions",
        "metadata": {"text-meta-key": "text-meta-value"},
        "user": "text-user",
        "safety_identifier": "text-safety",
        "prompt_cache_key": "text-cache-key",
        "prompt_cache_retention": "text-24h",
        "previous_response_id": "STRUCT-resp",
        "conversation": {"id": "STRUCT-conv"},
        "include": ["text-include"],
        "reasoning": {"effort": "text-effort", "summary": "text-reasoning-summary"},
        "service_tier": "text-tier",
        "truncation": "text-truncation",
        "tool_choice": {"type": "function", "name": "STRUCT-f"},
        "stream_options": {"include_obfuscation": False},
        "prompt": {"id": "STRUCT-prompt", "version": "STRUCT-1", "variables": {"city": "text-prompt-var"}},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "STRUCT-format",
                "strict": True,
                "description": "text-format-description",
                "schema": {
                    "type": "object",
                    "properties": {"STRUCT_prop": {"type": "string", "description": "text-format-prop"}},
                    "required": ["STRUCT_prop"],
                },
            },
            "verbosity": "text-verbosity",
        },
        "tools": [
            {
                "type": "function",
                "name": "STRUCT-lookup",
                "strict": True,
                "description": "text-tool-description",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "STRUCT_q": {"type": "string", "description": "text-param", "enum": ["text-enum"]}
                    },
                },
            },
            {"type": "web_search", "user_location": {"type": "approximate", "city": "text-city"}},
            {
                "type": "mcp",
                "server_label": "STRUCT-label",
                "server_url": "https://example.org/text-mcp",
                "authorization": "STRUCT-secret",
            },
        ],
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "text-part-1 "},
                    {"type": "input_text", "text": "text-part-2"},
                    {
                        "type": "input_image",
                        "detail": "STRUCT-auto",
                        "image_url": f"data:image/png;base64,{BASE64}",
                    },
                    {
                        "type": "input_image",
                        "detail": "STRUCT-low",
                        "image_url": "https://example.org/text-img.png",
                    },
                    {"type": "input_image", "detail": "STRUCT-high", "file_id": "STRUCT-file-img"},
                    {"type": "input_file", "file_data": BASE64, "filename": "text-filename.pdf"},
                    {
                        "type": "input_file",
                        "file_id": "STRUCT-file",
                        "file_url": "https://example.org/text-file",
                    },
                    {
                        "type": "input_file",
                        "file_data": "data:text/plain;base64,STRUCT",
                        "filename": "text-f2",
                    },
                    {"type": "input_file", "file_data": "text-plain-file-data"},
                ],
            },
            {"type": "message", "role": "developer", "content": "text-developer"},
            {
                "type": "message",
                "id": "STRUCT-msg",
                "role": "assistant",
                "status": "STRUCT-completed",
                "phase": "STRUCT-final",
                "content": [
                    {
                        "type": "output_text",
                        "text": "text-output",
                        "annotations": [{"type": "url_citation", "title": "text-annotation"}],
                    },
                    {"type": "refusal", "refusal": "text-refusal"},
                ],
            },
            {
                "type": "reasoning",
                "id": "STRUCT-rs",
                "summary": [{"type": "summary_text", "text": "text-summary"}],
                "content": [{"type": "reasoning_text", "text": "text-reasoning"}],
                "encrypted_content": "STRUCT-encrypted",
            },
            {
                "type": "function_call",
                "id": "STRUCT-fc",
                "call_id": "STRUCT-call",
                "name": "STRUCT-lookup",
                "namespace": "STRUCT-ns",
                "status": "STRUCT-completed",
                "arguments": json.dumps({"text-arg-key": "text-arg", "deep": [{"x": "text-arg-deep"}]}),
            },
            {"type": "function_call_output", "call_id": "STRUCT-call", "output": "text-call-output"},
            {
                "type": "function_call_output",
                "call_id": "STRUCT-call",
                "output": [{"type": "input_text", "text": "text-output-part"}],
            },
            {"id": "STRUCT-reference"},
            {"type": "item_reference", "id": "STRUCT-reference-2"},
            {
                "type": "custom_tool_call",
                "call_id": "STRUCT-custom",
                "name": "STRUCT-c",
                "input": "text-custom",
            },
        ],
    }


def texts(walk: ResponsesWalk) -> list[str]:
    out: list[str] = []
    for field in walk.fields:
        if isinstance(field, TextGroup):
            out.extend(part.text for part in field.parts)
        else:
            out.append(field.text)
    return out


def test_every_client_string_is_scanned_and_no_structural_one() -> None:
    walk = ResponsesWalk(RedactConfig()).responses(full_request())
    found = texts(walk)
    assert not [text for text in found if STRUCTURAL in text], "a structural value was scanned"
    expected = {
        "text-instructions",
        "text-meta-key",
        "text-meta-value",
        "text-user",
        "text-safety",
        "text-cache-key",
        "text-prompt-var",
        "text-24h",
        "text-include",
        "text-effort",
        "text-reasoning-summary",
        "text-tier",
        "text-truncation",
        "text-verbosity",
        "text-format-description",
        "text-format-prop",
        "text-tool-description",
        "text-param",
        "text-enum",
        "text-city",
        "https://example.org/text-mcp",
        "text-part-1 ",
        "text-part-2",
        "https://example.org/text-img.png",
        "text-filename.pdf",
        "https://example.org/text-file",
        "text-f2",
        "text-plain-file-data",
        "text-developer",
        "text-output",
        "text-annotation",
        "text-refusal",
        "text-summary",
        "text-reasoning",
        "text-arg-key",
        "text-arg",
        "text-arg-deep",
        "text-call-output",
        "text-output-part",
        "text-custom",
    }
    assert expected <= set(found), f"not scanned: {sorted(expected - set(found))}"


def test_input_as_a_string_is_one_text() -> None:
    walk = ResponsesWalk(RedactConfig()).responses({"model": "STRUCT", "input": "text-input"})
    assert texts(walk) == ["text-input"]


def test_text_parts_of_one_message_are_scanned_as_one_text() -> None:
    walk = ResponsesWalk(RedactConfig()).responses(full_request())
    groups = {field.location: field.text for field in walk.fields if isinstance(field, TextGroup)}
    assert groups == {"input[0].content": "text-part-1 text-part-2"}


def test_unknown_fields_and_item_types_are_scanned_with_their_names() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi", "extra_key": "text-x"}]},
            {"type": "future_item", "id": "STRUCT-id", "payload": {"inner": "text-future"}},
        ],
        "vendor_field": {"inner_key": "text-vendor"},
    }
    found = texts(ResponsesWalk(RedactConfig()).responses(body))
    assert {
        "vendor_field",
        "inner_key",
        "text-vendor",
        "extra_key",
        "text-x",
        "payload",
        "text-future",
    } <= set(found)
    assert "STRUCT-id" not in found


def test_arguments_are_left_alone_when_tool_arguments_are_not_scanned() -> None:
    walk = ResponsesWalk(RedactConfig(scan_tool_arguments=False)).responses(full_request())
    assert "text-arg" not in texts(walk)
    assert "text-call-output" in texts(walk)


def test_roles_left_out_of_the_scan_leave_their_items_alone() -> None:
    found = texts(ResponsesWalk(RedactConfig(roles=["user"])).responses(full_request()))
    for left_out in ("text-developer", "text-output", "text-summary", "text-arg", "text-call-output"):
        assert left_out not in found
    assert {"text-part-1 ", "text-instructions", "text-custom"} <= set(found)


@pytest.mark.parametrize("role", ["tool", "User", None, 3])
def test_a_role_the_responses_api_does_not_define_is_refused(role: Any) -> None:
    item: dict[str, Any] = {"type": "message", "content": "text"}
    if role is not None:
        item["role"] = role
    with pytest.raises(InvalidRequest) as caught:
        ResponsesWalk(RedactConfig()).responses(
            {"model": "m", "input": [{"role": "user", "content": "hi"}, item]}
        )
    assert caught.value.param == "input[1].role"
    assert "user, assistant, system, developer" in caught.value.message
