"""Restoring placeholders in Anthropic Messages answers: JSON messages and stream events, split at every
boundary, partial tool-input JSON (escaped placeholders, values needing escapes), thinking left signed.
No analyzer: the restorers on their own, with a placeholder map built by hand."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from asgi_aigw.kernel.sse import SSEDecoder, encode_event
from asgi_aigw.redact.placeholders import PlaceholderMap
from asgi_aigw.redact.restore_messages import MessagesJSONRestorer, MessagesStreamRestorer
from asgi_aigw.redact.tails import restore_source

EMAIL = "ana.lopez@example.com"
#: A value that needs escaping in JSON: restored into tool input it must not break the JSON.
QUOTED = 'Ann "A" O\\Neil'


def names() -> PlaceholderMap:
    mapping = PlaceholderMap()
    assert mapping.placeholder("EMAIL_ADDRESS", EMAIL) == "<EMAIL_ADDRESS_1>"
    assert mapping.placeholder("PERSON", QUOTED) == "<PERSON_1>"
    return mapping


def event(payload: dict[str, Any]) -> bytes:
    return encode_event(str(payload["type"]), orjson.dumps(payload))


def text_delta(text: str, index: int = 0) -> bytes:
    return event(
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
    )


def json_delta(partial: str, index: int = 0) -> bytes:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return event({"type": "content_block_delta", "index": index, "delta": delta})


def stop(index: int = 0) -> bytes:
    return event({"type": "content_block_stop", "index": index})


def run(restorer: MessagesStreamRestorer, events: list[bytes]) -> list[dict[str, Any]]:
    """The payloads of the events the client gets."""
    out = b"".join(restorer.on_event(raw) or raw for raw in events)
    decoder = SSEDecoder()
    payloads = []
    for raw in decoder.feed(out) + decoder.flush():
        data = b"".join(line[6:] for line in raw.split(b"\n") if line.startswith(b"data: "))
        payloads.append(orjson.loads(data))
    return payloads


def joined(payloads: list[dict[str, Any]], field: str, index: int = 0) -> str:
    return "".join(
        p["delta"][field]
        for p in payloads
        if p["type"] == "content_block_delta" and p["index"] == index and field in p["delta"]
    )


# -- JSON answers ----------------------------------------------------------------------------------------


def message(*content: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": "msg_1", "type": "message", "role": "assistant", "content": list(content)})


def test_a_json_answer_gets_its_text_and_tool_input_restored() -> None:
    body = message(
        {"type": "text", "text": "Mail <EMAIL_ADDRESS_1> now."},
        {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {"to": ["<PERSON_1>"]}},
    )
    restored = orjson.loads(MessagesJSONRestorer(names())(200, body) or b"{}")
    assert restored["content"][0]["text"] == f"Mail {EMAIL} now."
    # input is a JSON object, not source text: the value goes in as it is, orjson encodes it
    assert restored["content"][1]["input"] == {"to": [QUOTED]}
    assert restored["content"][1]["id"] == "toolu_1"


def test_thinking_in_a_json_answer_is_left_as_signed() -> None:
    thinking = {"type": "thinking", "thinking": "They want <EMAIL_ADDRESS_1>.", "signature": "c2lnbmVk"}
    body = message(thinking, {"type": "text", "text": "Hi <PERSON_1>"})
    restored = orjson.loads(MessagesJSONRestorer(names())(200, body) or b"{}")
    assert restored["content"][0] == thinking
    assert restored["content"][1]["text"] == f"Hi {QUOTED}"


def test_a_json_answer_without_placeholders_is_untouched() -> None:
    assert MessagesJSONRestorer(names())(200, message({"type": "text", "text": "1 < 2"})) is None


def test_an_error_body_is_restored() -> None:
    body = orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "<PERSON_1>?"}}
    )
    restored = orjson.loads(MessagesJSONRestorer(names())(400, body) or b"{}")
    assert restored["error"]["message"] == f"{QUOTED}?"


# -- text deltas -----------------------------------------------------------------------------------------

ANSWER = "Write to <EMAIL_ADDRESS_1> or <PERSON_1>, not <PERSON_9> (<EMAIL_ADDRESS_1"
RESTORED = f"Write to {EMAIL} or {QUOTED}, not <PERSON_9> (<EMAIL_ADDRESS_1"


@pytest.mark.parametrize("cut", range(len(ANSWER) + 1))
def test_text_split_at_every_boundary_is_restored_and_held_text_flushed_at_block_stop(cut: int) -> None:
    payloads = run(
        MessagesStreamRestorer(names()),
        [text_delta(ANSWER[:cut]), text_delta(ANSWER[cut:]), stop(), event({"type": "message_stop"})],
    )
    assert joined(payloads, "text") == RESTORED
    # the unfinished placeholder-like tail went out before the block closed
    kinds = [p["type"] for p in payloads]
    assert kinds[-2:] == ["content_block_stop", "message_stop"]


def test_text_one_character_per_delta_is_held_no_longer_than_a_placeholder() -> None:
    restorer = MessagesStreamRestorer(names())
    out = []
    for character in ANSWER:
        payload = run(restorer, [text_delta(character)])[0]
        out.append(payload["delta"]["text"])
    # nothing is held across more characters than the longest placeholder
    longest = len("<EMAIL_ADDRESS_1>")
    pending = 0
    for sent in out:
        pending = 0 if sent else pending + 1
        assert pending < longest
    assert "".join(out) + joined(run(restorer, [stop()]), "text") == RESTORED


def test_blocks_hold_their_tails_apart() -> None:
    restorer = MessagesStreamRestorer(names())
    payloads = run(restorer, [text_delta("a <PER", 0), text_delta("b <EMAIL_", 1), text_delta("SON_1>", 0)])
    payloads += run(restorer, [text_delta("ADDRESS_1>", 1), stop(0), stop(1)])
    assert joined(payloads, "text", 0) == f"a {QUOTED}"
    assert joined(payloads, "text", 1) == f"b {EMAIL}"


def test_held_text_is_flushed_at_the_message_end_or_an_error_if_no_block_stop_came() -> None:
    for last in ({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, {"type": "error"}):
        payloads = run(MessagesStreamRestorer(names()), [text_delta("see <EMAIL_"), event(last)])
        assert joined(payloads, "text") == "see <EMAIL_"
        assert payloads[-1]["type"] == last["type"]


def test_a_stream_without_placeholders_passes_byte_for_byte() -> None:
    restorer = MessagesStreamRestorer(names())
    for raw in (text_delta("1 < 2"), stop(), event({"type": "ping"})):
        assert restorer.on_event(raw) is None


def test_thinking_and_signature_deltas_are_left_as_signed() -> None:
    restorer = MessagesStreamRestorer(names())
    thinking = event(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "<PERSON_1>"},
        }
    )
    signature = event(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "<PERSON_1>"},
        }
    )
    start = event(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "<PERSON_1>"},
        }
    )
    for raw in (start, thinking, signature):
        assert restorer.on_event(raw) is None


def test_an_upstream_escaping_lt_in_its_events_is_restored() -> None:
    raw = text_delta("Hi <PERSON_1>").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
    assert b"<" not in raw
    assert joined(run(MessagesStreamRestorer(names()), [raw]), "text") == f"Hi {QUOTED}"


def test_citations_and_block_starts_are_restored() -> None:
    citation = {"type": "char_location", "cited_text": "<EMAIL_ADDRESS_1>", "document_index": 0}
    delta = event(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "citations_delta", "citation": citation},
        }
    )
    start = event(
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "<PERSON_1>"}}
    )
    payloads = run(MessagesStreamRestorer(names()), [delta, start])
    assert payloads[0]["delta"]["citation"]["cited_text"] == EMAIL
    assert payloads[1]["content_block"]["text"] == QUOTED


def test_the_event_line_is_kept() -> None:
    out = MessagesStreamRestorer(names()).on_event(text_delta("<PERSON_1>"))
    assert out is not None
    assert out.startswith(b"event: content_block_delta\ndata: ")


# -- input_json_delta ------------------------------------------------------------------------------------

TOOL_INPUT = {"to": "<EMAIL_ADDRESS_1>", "who": ["<PERSON_1>", "<PERSON_2>"], "n": 1}
EXPECTED_INPUT = {"to": EMAIL, "who": [QUOTED, "<PERSON_2>"], "n": 1}


def source_forms() -> list[str]:
    """The tool input as partial JSON, with placeholders literal and ``\\u003c``-escaped (either case)."""
    plain = json.dumps(TOOL_INPUT)
    lower = plain.replace("<", "\\u003c").replace(">", "\\u003e")
    upper = plain.replace("<", "\\u003C").replace(">", "\\u003E")
    return [plain, lower, upper]


@pytest.mark.parametrize("form", [0, 1, 2])
def test_partial_json_split_at_every_pair_of_boundaries_stays_valid_and_restored(form: int) -> None:
    source = source_forms()[form]
    assert json.loads(source) == TOOL_INPUT
    for first in range(0, len(source) + 1, 3 if form else 1):
        for second in range(first, len(source) + 1, 7):
            pieces = [source[:first], source[first:second], source[second:]]
            payloads = run(MessagesStreamRestorer(names()), [*(json_delta(p) for p in pieces), stop()])
            assert json.loads(joined(payloads, "partial_json")) == EXPECTED_INPUT, (first, second)


def test_partial_json_one_character_per_delta() -> None:
    for source in source_forms():
        payloads = run(MessagesStreamRestorer(names()), [*(json_delta(c) for c in source), stop()])
        assert json.loads(joined(payloads, "partial_json")) == EXPECTED_INPUT


def test_an_escaped_backslash_before_u003c_is_no_placeholder() -> None:
    # the JSON string holds a backslash, the letters u003c, the name and ">": not "<", nothing to restore
    value = "\\u003cPERSON_1>"
    source = json.dumps({"x": value}).replace(">", "\\u003e")
    assert "\\\\u003cPERSON_1\\u003e" in source
    assert restore_source(source, names()) == source
    for cut in range(len(source) + 1):
        pieces = [json_delta(source[:cut]), json_delta(source[cut:]), stop()]
        assert json.loads(joined(run(MessagesStreamRestorer(names()), pieces), "partial_json")) == {
            "x": value
        }, cut


def test_partial_json_that_cannot_become_a_placeholder_goes_at_once() -> None:
    for partial in ('{"a": "<PERSON_1x', '{"a": "\\u003cPERSON_1\\u0x', '{"a": "<PERSON_7'):
        assert joined(run(MessagesStreamRestorer(names()), [json_delta(partial)]), "partial_json") == partial
    held = '{"a": "\\u003cPERSON_1\\u00'
    assert joined(run(MessagesStreamRestorer(names()), [json_delta(held)]), "partial_json") == '{"a": "'


def test_an_unfinished_escaped_placeholder_is_flushed_verbatim() -> None:
    payloads = run(MessagesStreamRestorer(names()), [json_delta('{"a": "\\u003cPERSON_1\\u00'), stop()])
    assert joined(payloads, "partial_json") == '{"a": "\\u003cPERSON_1\\u00'
