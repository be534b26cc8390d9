"""What redaction scans (every string the client sent but the structural ones) and how detection
sees it (normalised, with a map back to the original). No analyzer needed: these are the walker's and
the normaliser's own contracts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.redact import RedactConfig
from asgi_aigw.redact.fields import TextField, TextGroup
from asgi_aigw.redact.normalize import normalise
from asgi_aigw.redact.walk import Walk

#: Strings the walker must never report: structural values.
STRUCTURAL = "STRUCT"


def texts(walk: Walk) -> dict[str, str]:
    return {field.location: field.text for field in walk.fields}


def full_chat() -> dict[str, Any]:
    """A chat request using every field that carries client text, each holding ``text-<field>``,
    and every structural field holding ``STRUCT...``."""
    return {
        "model": "STRUCT-model",
        "messages": [
            {"role": "system", "content": "text-system", "name": "text-name"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "text-part-1 "},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,STRUCTAAAA", "detail": "STRUCT"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.org/text-url.png"}},
                    {"type": "input_audio", "input_audio": {"data": "STRUCTBBBB", "format": "STRUCT"}},
                    {"type": "file", "file": {"file_id": "STRUCT-file", "filename": "text-filename.pdf"}},
                    {"type": "text", "text": "text-part-2"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "refusal": "text-refusal",
                "tool_calls": [
                    {
                        "id": "STRUCT-call",
                        "type": "function",
                        "function": {"name": "STRUCT_fn", "arguments": json.dumps({"to": "text-arg-é"})},
                    }
                ],
                "audio": {"id": "STRUCT-audio"},
            },
            {"role": "tool", "tool_call_id": "STRUCT-call", "content": "text-tool-result"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "STRUCT_fn",
                    "description": "text-tool-description",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "to": {
                                "type": "string",
                                "description": "text-param-description",
                                "format": "STRUCT",
                            },
                            "kind": {"type": "string", "enum": ["text-enum-a", "text-enum-b"]},
                        },
                        "required": ["to"],
                    },
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "STRUCT_fn"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "STRUCT_schema",
                "description": "text-format-description",
                "schema": {"type": "object", "properties": {"a": {"title": "text-title"}}},
            },
        },
        "user": "text-user",
        "metadata": {"text-meta-key": "text-meta-value"},
        "stop": ["text-stop"],
        "reasoning_effort": "text-effort",  # a setting: scanned (no valid value is PII)
        "logit_bias": {"STRUCT123": 5},
        "temperature": 0.5,
        "stream": False,
        "x_extra": {"note": "text-extra"},
    }


def test_every_client_text_of_a_chat_request_is_scanned_and_no_structural_value() -> None:
    walk = Walk(RedactConfig()).chat(full_chat())
    found = texts(walk)
    scanned = " ".join(found.values())
    for expected in (
        "text-system",
        "text-name",
        "text-url.png",
        "text-filename.pdf",
        "text-refusal",
        "text-arg-é",  # decoded from the JSON source, not "text-arg-\\u00e9"
        "text-tool-result",
        "text-tool-description",
        "text-param-description",
        "text-enum-a",
        "text-enum-b",
        "text-format-description",
        "text-title",
        "text-user",
        "text-meta-key",
        "text-meta-value",
        "text-stop",
        "text-extra",
        "text-effort",
        "x_extra",  # an unknown field's name is client text too
    ):
        assert expected in scanned, f"{expected} is not scanned"
    assert STRUCTURAL not in scanned
    # the text parts of one message are one text, as the model reads them
    assert found["messages[1].content"] == "text-part-1 text-part-2"
    assert found["messages[2].tool_calls[0].function.arguments.to"] == "text-arg-é"


def test_embeddings_input_user_and_unknown_fields_are_scanned() -> None:
    body = {"model": "STRUCT", "input": ["text-a", "text-b"], "encoding_format": "STRUCT", "user": "text-u"}
    assert texts(Walk(RedactConfig()).embeddings(body)) == {
        "input[0]": "text-a",
        "input[1]": "text-b",
        "user": "text-u",
    }
    assert texts(Walk(RedactConfig()).embeddings({"model": "m", "input": [[1, 2], [3]]})) == {}


@pytest.mark.parametrize("role", ["User", "ASSISTANT", "bot", None, ["user"]])
def test_a_role_the_api_does_not_define_is_refused_not_skipped(role: Any) -> None:
    message: dict[str, Any] = {"content": "mail jose@example.com"}
    if role is not None:
        message["role"] = role
    with pytest.raises(InvalidRequest) as raised:
        Walk(RedactConfig()).chat({"model": "m", "messages": [message]})
    assert raised.value.param == "messages[0].role"
    assert "system, developer, user, assistant, tool, function" in str(raised.value)


def test_a_message_that_is_not_an_object_is_still_scanned() -> None:
    walk = Walk(RedactConfig()).chat({"model": "m", "messages": ["text-bare"]})
    assert texts(walk) == {"messages[0]": "text-bare"}


def test_tool_arguments_that_are_not_json_are_scanned_as_source() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ],
            }
        ],
    }
    [field] = Walk(RedactConfig()).chat(body).fields
    assert isinstance(field, TextField)
    assert (field.text, field.json_source) == ("{oops", True)


def test_rewritten_arguments_are_encoded_again_and_keys_are_renamed_in_place() -> None:
    arguments = '{"to": "jose\\u0040example.com", "jose@example.com": 1}'
    body = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": arguments}}],
            }
        ],
    }
    walk = Walk(RedactConfig()).chat(body)
    fields = {field.location: field for field in walk.fields}
    value = fields["messages[0].tool_calls[0].function.arguments.to"]
    key = fields["messages[0].tool_calls[0].function.arguments.jose@example.com (key)"]
    assert isinstance(value, TextField)
    assert isinstance(key, TextField)
    value.set("<EMAIL_ADDRESS_1>")
    key.set("<EMAIL_ADDRESS_1>")
    for source in walk.sources:
        source.encode()
    encoded = body["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(encoded) == {"to": "<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_1>": 1}


def test_roles_left_out_by_the_operator_are_skipped() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "text-s"}, {"role": "user", "content": "text-u"}],
    }
    assert texts(Walk(RedactConfig(roles=["user"])).chat(body)) == {"messages[1].content": "text-u"}


def test_split_parts_are_one_group() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        ],
    }
    [group] = Walk(RedactConfig()).chat(body).fields
    assert isinstance(group, TextGroup)
    assert group.text == "ab"


# -- normalisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "mail jose\uff20example.com now",  # full-width at sign
        "mail jo\u200bse@exam\u200dple.com now",  # zero-width space and joiner
        "mail jose&#64;example.com now",  # HTML entity
        "mail jose&#x40;example.com now",
        "mail jose&commat;example.com now",
        "mail jose&amp;#64;example.com now",  # encoded twice
        "mail \uff4a\uff4f\uff53\uff45@example.com now",  # full-width letters
    ],
)
def test_normalised_text_reads_as_plain_and_maps_back_to_the_original_span(text: str) -> None:
    normal = normalise(text)
    assert normal is not None
    assert normal.text == "mail jose@example.com now"
    start = normal.text.index("jose")
    end = start + len("jose@example.com")
    a, b = normal.original_span(start, end)
    # the original span is exactly the disguised address: what is replaced
    assert text[:a] == "mail "
    assert text[b:] == " now"


def test_plain_ascii_and_text_already_normal_skip_the_normaliser() -> None:
    assert normalise("plain ascii, no entity") is None
    assert normalise("José García, déjà vu") is None  # NFKC already, no format character
    assert normalise("a & b") is None  # an ampersand that is no entity


_DISGUISE_CHARS = {
    "@": ["@", "\uff20", "&#64;", "&#x40;", "&commat;", "&amp;#64;"],
    ".": [".", "\uff0e", "&#46;"],
}
_AROUND = st.text(alphabet=st.sampled_from(list("abc XYZ,:!?é\u00e0\uff21\u200b\u200d\u00ad01")), max_size=12)


@settings(max_examples=300, deadline=None)
@given(_AROUND, _AROUND, st.data())
def test_a_disguised_address_anywhere_normalises_to_itself_and_maps_back_to_its_own_span(
    before: str, after: str, data: st.DataObject
) -> None:
    plain = "ana.garcia@example.com"
    disguised = ""
    for char in plain:
        options = _DISGUISE_CHARS.get(char, [char, chr(ord(char) + 0xFEE0)])  # letters: full-width
        disguised += data.draw(st.sampled_from(options))
        if data.draw(st.booleans()):
            disguised += "\u200b"  # a zero-width space after any character
    text = f"{before} {disguised} {after}"
    normal = normalise(text)
    if normal is None:  # nothing was disguised: the text is already what detection reads
        assert plain in text
        return
    assert len(normal.starts) == len(normal.ends) == len(normal.text)
    assert list(normal.starts) == sorted(normal.starts)
    start = normal.text.index(plain)
    a, b = normal.original_span(start, start + len(plain))
    # the address's span, from its first disguised character to its last (a trailing zero-width
    # space may or may not be included: it is invisible either way)
    offset = len(before) + 1
    assert a == offset
    assert text[a:b].rstrip("\u200b") == disguised.rstrip("\u200b")


def test_long_base64_is_inline_data_not_text_but_long_text_is_scanned() -> None:
    blob = "iVBORw0KGgoAAAANSUhEUgAA+/" * 40 + "=="
    prose = "write to jose@example.com " * 40
    body = {"model": "m", "input": [blob, prose, "data:image/png;base64," + blob, "jose@example.com"]}
    assert texts(Walk(RedactConfig()).embeddings(body)) == {"input[1]": prose, "input[3]": "jose@example.com"}
