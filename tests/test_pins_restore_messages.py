"""Restoring placeholders in Messages answers: the checks of asgi_aigw/redact/restore_messages.py that
mutation testing showed no test would miss (``python bench/mutation.py redact-restore-messages``)."""

from __future__ import annotations

import json
from typing import Any

import orjson

from asgi_aigw.kernel.sse import encode_event
from asgi_aigw.redact.placeholders import PlaceholderMap, json_escape
from asgi_aigw.redact.restore_messages import MessagesStreamRestorer
from asgi_aigw.redact.tails import restore_source

from .test_redact_messages_restore import QUOTED, joined, json_delta, names, run, stop, text_delta

ESCAPED = "\\u003cPERSON_1\\u003e"  # the placeholder as JSON source may write it
VALUE = json_escape(QUOTED)


def event(payload: Any) -> bytes:
    kind = payload.get("type", "x") if isinstance(payload, dict) else "x"
    return encode_event(str(kind), orjson.dumps(payload))


def delta_event(delta: Any, index: Any = 0) -> bytes:
    return event({"type": "content_block_delta", "index": index, "delta": delta})


# -- backslashes before an escaped placeholder -----------------------------------------------------------


def test_an_escaped_placeholder_at_the_start_is_restored_unless_the_text_before_ended_in_a_backslash() -> (
    None
):
    text = ESCAPED + "\\"  # a trailing backslash must not be counted as one before the placeholder
    assert restore_source(text, names()) == VALUE + "\\"
    assert restore_source(text, names(), odd_before=True) == text


def test_the_parity_of_the_backslashes_before_decides() -> None:
    mapping = names()
    # two: an escaped backslash, then "<"; three: an escaped one, then an escaped "\\u003c"
    assert restore_source("\\\\" + ESCAPED + " \\", mapping) == "\\\\" + VALUE + " \\"
    assert restore_source("a\\\\\\" + ESCAPED, mapping) == "a\\\\\\" + ESCAPED


def test_backslash_runs_split_across_deltas_are_counted_whole() -> None:
    # six backslashes then u003c: three escaped backslashes and the letters u003c, no placeholder
    pieces = ['{"x": "\\\\\\\\', "\\\\", 'u003cPERSON_1\\u003e"}']
    payloads = run(MessagesStreamRestorer(names()), [*(json_delta(p) for p in pieces), stop()])
    assert json.loads(joined(payloads, "partial_json")) == {"x": "\\\\\\u003cPERSON_1>"}
    # four backslashes across two deltas: two escaped ones, then the letters
    pieces = ['{"x": "\\\\\\\\', 'u003cPERSON_1\\u003e"}']
    payloads = run(MessagesStreamRestorer(names()), [*(json_delta(p) for p in pieces), stop()])
    assert json.loads(joined(payloads, "partial_json")) == {"x": "\\\\u003cPERSON_1>"}


# -- what is held ----------------------------------------------------------------------------------------


def test_a_complete_escaped_placeholder_at_a_deltas_end_is_restored_at_once() -> None:
    payloads = run(MessagesStreamRestorer(names()), [json_delta('{"a": "' + ESCAPED), stop()])
    assert joined(payloads, "partial_json") == '{"a": "' + VALUE


def test_a_closing_escape_after_a_name_not_in_the_map_is_not_held() -> None:
    out = run(MessagesStreamRestorer(names()), [json_delta('{"a": "<PERSON_7\\u00')])
    assert joined(out, "partial_json") == '{"a": "<PERSON_7'  # only the escape, which may open one


def test_a_delta_holding_nothing_leaves_nothing_to_flush() -> None:
    restorer = MessagesStreamRestorer(names())
    assert restorer.on_event(json_delta('{"a": "<PERSON_1>"}')) is not None
    assert restorer.on_event(stop()) is None


def test_an_unchanged_event_passes_as_it_came_while_text_is_held() -> None:
    restorer = MessagesStreamRestorer(names())
    restorer.on_event(text_delta("a <PER", 0))
    assert restorer.on_event(stop(1)) is None  # another block's stop: nothing of its own to flush


def test_another_block_starting_does_not_flush_a_held_tail() -> None:
    start = event({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    payloads = run(MessagesStreamRestorer(names()), [text_delta("a <PER", 0), start, text_delta("SON_1>", 0)])
    assert joined(payloads, "text", 0) == f"a {QUOTED}"


# -- malformed and unknown events ------------------------------------------------------------------------


def test_an_event_that_is_not_an_object_passes() -> None:
    assert MessagesStreamRestorer(names()).on_event(event(["<PERSON_1>"])) is None


def test_a_delta_without_a_block_index_or_an_object_is_restored_without_holding() -> None:
    restorer = MessagesStreamRestorer(names())
    out = run(restorer, [delta_event({"type": "text_delta", "text": "<PER"}, index="zero")])
    assert out[0]["delta"]["text"] == "<PER"
    out = run(restorer, [delta_event("to <PERSON_1>")])
    assert out[0]["delta"] == f"to {QUOTED}"


def test_text_and_partial_json_of_unknown_deltas_are_restored_without_holding() -> None:
    restorer = MessagesStreamRestorer(names())
    for field in ("text", "partial_json"):
        out = run(restorer, [delta_event({"type": "future_delta", field: "<PER"})])
        assert out[0]["delta"][field] == "<PER"
        out = run(restorer, [delta_event({"type": "future_delta", field: "<PERSON_1>"})])
        assert out[0]["delta"][field] == QUOTED


def test_deltas_whose_text_is_not_a_string_pass() -> None:
    restorer = MessagesStreamRestorer(names())
    for delta in ({"type": "text_delta", "text": None}, {"type": "input_json_delta", "partial_json": 3}):
        assert restorer.on_event(delta_event({**delta, "note": "<PERSON_9>"})) is None


def test_maps_built_by_hand_hold_the_longest_escaped_placeholder() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("EMAIL_ADDRESS", "a@example.com")
    source = '{"to": "\\u003cEMAIL_ADDRESS_1\\u003E"}'
    payloads = run(MessagesStreamRestorer(mapping), [*(json_delta(c) for c in source), stop()])
    assert json.loads(joined(payloads, "partial_json")) == {"to": "a@example.com"}
