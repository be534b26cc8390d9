"""The Responses restorers on their own: a ``response`` object restored (arguments as JSON source,
provider ciphertext untouched), and stream events restored delta by delta, held text flushed as a
delta of its own before the event that ends its stream, the events after it renumbered so
``sequence_number`` stays gapless."""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_aigw.redact.placeholders import PlaceholderMap
from asgi_aigw.redact.restore_responses import ResponsesJSONRestorer, ResponsesStreamRestorer

EMAIL = "maria.gonzalez@example.com"
QUOTED = 'say "hi" \\ bye'
TEXT = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
CALL = {"item_id": "fc_1", "output_index": 1}


def mapping() -> PlaceholderMap:
    m = PlaceholderMap()
    assert m.placeholder("EMAIL_ADDRESS", EMAIL) == "<EMAIL_ADDRESS_1>"
    assert m.placeholder("PERSON", QUOTED) == "<PERSON_1>"
    return m


def event(payload: dict[str, Any]) -> bytes:
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def numbered(*payloads: dict[str, Any]) -> list[bytes]:
    return [event({**p, "sequence_number": n}) for n, p in enumerate(payloads)]


def run(events: list[bytes], m: PlaceholderMap | None = None) -> list[dict[str, Any]]:
    restorer = ResponsesStreamRestorer(m or mapping())
    out = b""
    for raw in events:
        replaced = restorer.on_event(raw)
        out += raw if replaced is None else replaced
    payloads = []
    for block in out.split(b"\n\n"):
        lines = block.split(b"\n")
        data = [line[6:] for line in lines if line.startswith(b"data: ")]
        if data:
            payload = orjson.loads(data[0])
            name = [line[7:].decode() for line in lines if line.startswith(b"event: ")]
            assert name == [payload["type"]], "each event keeps (or gets) its event: line"
            payloads.append(payload)
    return payloads


def text_stream(*deltas: str, done: str | None = None, last: str = "response.completed") -> list[bytes]:
    full = "".join(deltas) if done is None else done
    closing: list[dict[str, Any]] = [
        {"type": "response.output_text.done", **TEXT, "text": full, "logprobs": []},
        {"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "id": "msg_1"}},
    ]
    return numbered(
        {"type": "response.created", "response": {"id": "r", "output": []}},
        *({"type": "response.output_text.delta", **TEXT, "delta": d, "logprobs": []} for d in deltas),
        *closing,
        {"type": last, "response": {"id": "r", "output": [{"content": [{"text": full}]}]}},
    )


def deltas_of(payloads: list[dict[str, Any]], kind: str = "response.output_text.delta") -> str:
    return "".join(p["delta"] for p in payloads if p["type"] == kind)


# -- JSON ----------------------------------------------------------------------------------------------


def test_a_json_answer_is_restored_arguments_as_json_source_ciphertext_untouched() -> None:
    answer = {
        "id": "resp_1",
        "object": "response",
        "instructions": "Owner <PERSON_1>",
        "output": [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "to <EMAIL_ADDRESS_1>"}],
                "encrypted_content": "<EMAIL_ADDRESS_1>",
            },
            {"type": "message", "content": [{"type": "output_text", "text": "Mail <EMAIL_ADDRESS_1>"}]},
            {
                "type": "function_call",
                "arguments": '{"to": "\\u003cEMAIL_ADDRESS_1\\u003e", "who": "<PERSON_1>"}',
            },
        ],
    }
    restored = ResponsesJSONRestorer(mapping())(200, orjson.dumps(answer))
    assert restored is not None
    data = orjson.loads(restored)
    assert data["instructions"] == f"Owner {QUOTED}"
    assert data["output"][0]["summary"][0]["text"] == f"to {EMAIL}"
    assert data["output"][0]["encrypted_content"] == "<EMAIL_ADDRESS_1>"  # the provider's, never ours
    assert data["output"][1]["content"][0]["text"] == f"Mail {EMAIL}"
    assert json.loads(data["output"][2]["arguments"]) == {"to": EMAIL, "who": QUOTED}


def test_a_json_answer_without_placeholders_is_untouched() -> None:
    assert ResponsesJSONRestorer(mapping())(200, b'{"output": [{"text": "a < b"}]}') is None
    assert ResponsesJSONRestorer(mapping())(200, b'{"output": []}') is None


def test_an_error_body_is_restored() -> None:
    body = orjson.dumps({"error": {"message": "bad <EMAIL_ADDRESS_1>", "type": "invalid_request_error"}})
    restored = ResponsesJSONRestorer(mapping())(400, body)
    assert restored is not None
    assert orjson.loads(restored)["error"]["message"] == f"bad {EMAIL}"


# -- streams -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(1, len("Mail <EMAIL_ADDRESS_1> now")))
def test_text_split_at_every_boundary_is_restored_and_numbered(cut: int) -> None:
    text = "Mail <EMAIL_ADDRESS_1> now"
    payloads = run(text_stream(text[:cut], text[cut:]))
    assert deltas_of(payloads) == f"Mail {EMAIL} now"
    assert [p["text"] for p in payloads if p["type"] == "response.output_text.done"] == [f"Mail {EMAIL} now"]
    assert payloads[-1]["response"]["output"][0]["content"][0]["text"] == f"Mail {EMAIL} now"
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))


def test_held_text_goes_out_as_a_delta_before_its_done_event_and_later_events_are_renumbered() -> None:
    payloads = run(text_stream("Mail <EMAIL_ADDRESS_1> or <EMAIL"))
    kinds = [p["type"] for p in payloads]
    assert kinds == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",  # the held "<EMAIL": no placeholder after all
        "response.output_text.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert payloads[2] == {
        "type": "response.output_text.delta",
        **TEXT,
        "logprobs": [],
        "delta": "<EMAIL",
        "sequence_number": 2,
    }
    assert deltas_of(payloads) == f"Mail {EMAIL} or <EMAIL"
    assert payloads[3]["text"] == f"Mail {EMAIL} or <EMAIL"
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))


@pytest.mark.parametrize("last", ["response.completed", "response.incomplete", "error"])
def test_held_text_without_a_done_event_goes_out_before_the_item_or_response_ends(last: str) -> None:
    events = numbered(
        {"type": "response.output_text.delta", **TEXT, "delta": "a <", "logprobs": []},
        {
            "type": "response.output_text.delta",
            **TEXT,
            "output_index": 1,
            "item_id": "m2",
            "delta": "b <",
        },
        {"type": "response.output_item.done", "output_index": 0, "item": {"type": "message"}},
        {"type": last, "response": {"id": "r"}} if last != "error" else {"type": "error", "message": "cut"},
    )
    payloads = run(events)
    assert [(p["type"], p.get("output_index"), p.get("delta")) for p in payloads] == [
        ("response.output_text.delta", 0, "a "),
        ("response.output_text.delta", 1, "b "),
        ("response.output_text.delta", 0, "<"),
        ("response.output_item.done", 0, None),
        ("response.output_text.delta", 1, "<"),
        (last, None, None),
    ]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))


def test_items_and_content_parts_hold_their_tails_apart() -> None:
    other = {"item_id": "msg_1", "output_index": 0, "content_index": 1}
    events = numbered(
        {"type": "response.output_text.delta", **TEXT, "delta": "x <EMAIL_"},
        {"type": "response.output_text.delta", **other, "delta": "y <PERS"},
        {"type": "response.output_text.delta", **TEXT, "delta": "ADDRESS_1>"},
        {"type": "response.output_text.delta", **other, "delta": "ON_1>"},
    )
    payloads = run(events)
    assert deltas_of([p for p in payloads if p["content_index"] == 0]) == f"x {EMAIL}"
    assert deltas_of([p for p in payloads if p["content_index"] == 1]) == f"y {QUOTED}"


def test_refusal_and_reasoning_summary_deltas_are_restored() -> None:
    events = numbered(
        {"type": "response.refusal.delta", **TEXT, "delta": "No, <EMAIL_ADDR"},
        {"type": "response.refusal.delta", **TEXT, "delta": "ESS_1>."},
        {"type": "response.refusal.done", **TEXT, "refusal": "No, <EMAIL_ADDRESS_1>."},
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs",
            "output_index": 1,
            "summary_index": 0,
            "delta": "for <PERSON_1>",
        },
    )
    payloads = run(events)
    assert deltas_of(payloads, "response.refusal.delta") == f"No, {EMAIL}."
    assert payloads[2]["refusal"] == f"No, {EMAIL}."
    assert deltas_of(payloads, "response.reasoning_summary_text.delta") == f"for {QUOTED}"


ARGUMENT_FORMS = [
    '{"to": "<EMAIL_ADDRESS_1>", "who": "<PERSON_1>"}',
    '{"to": "\\u003cEMAIL_ADDRESS_1\\u003e", "who": "\\u003CPERSON_1\\u003E"}',
]


@pytest.mark.parametrize("form", range(len(ARGUMENT_FORMS)))
def test_arguments_split_at_every_pair_of_boundaries_stay_valid_json_and_restored(form: int) -> None:
    source = ARGUMENT_FORMS[form]
    for first in range(1, len(source)):
        for second in range(first, len(source)):
            pieces = [source[:first], source[first:second], source[second:]]
            events = numbered(
                *({"type": "response.function_call_arguments.delta", **CALL, "delta": p} for p in pieces),
                {"type": "response.function_call_arguments.done", **CALL, "arguments": source},
                {
                    "type": "response.output_item.done",
                    "output_index": 1,
                    "item": {"type": "function_call", "arguments": source},
                },
            )
            payloads = run(events)
            arguments = deltas_of(payloads, "response.function_call_arguments.delta")
            assert json.loads(arguments) == {"to": EMAIL, "who": QUOTED}, (first, second)
            done = next(p for p in payloads if p["type"] == "response.function_call_arguments.done")
            assert json.loads(done["arguments"]) == {"to": EMAIL, "who": QUOTED}
            assert json.loads(payloads[-1]["item"]["arguments"]) == {"to": EMAIL, "who": QUOTED}
            assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))


def test_an_escaped_backslash_before_u003c_is_no_placeholder() -> None:
    source = '{"a": "\\\\u003cEMAIL_ADDRESS_1\\\\u003e"}'  # the text \u003cEMAIL_ADDRESS_1\u003e
    events = numbered(
        {"type": "response.function_call_arguments.delta", **CALL, "delta": source[:9]},
        {"type": "response.function_call_arguments.delta", **CALL, "delta": source[9:]},
    )
    arguments = deltas_of(run(events), "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"a": "\\u003cEMAIL_ADDRESS_1\\u003e"}


def test_a_stream_without_placeholders_passes_byte_for_byte() -> None:
    restorer = ResponsesStreamRestorer(mapping())
    for raw in text_stream("Hello ", "there."):
        assert restorer.on_event(raw) is None


def test_a_map_with_nothing_to_restore_leaves_unknown_placeholders_as_written() -> None:
    payloads = run(text_stream("Say <PHONE_NUMBER_1>"))
    assert deltas_of(payloads) == "Say <PHONE_NUMBER_1>"


_PIECES = st.sampled_from(
    ["<EMAIL_ADDRESS_1>", "<PERSON_1>", "<EMAIL", "<", ">", " ", "a", "é", "<PERSON_2>", "_1>"]
)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=12), cuts=st.lists(st.integers(0, 200), max_size=6))
def test_any_split_of_any_text_restores_like_the_whole_and_stays_numbered(
    pieces: list[str], cuts: list[int]
) -> None:
    text = "".join(pieces)
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    deltas = [text[a:b] for a, b in itertools.pairwise(bounds)]
    m = mapping()
    payloads = run(text_stream(*deltas, done=text), m)
    assert deltas_of(payloads) == m.restore(text)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert next(p for p in payloads if p["type"] == "response.output_text.done")["text"] == m.restore(text)
