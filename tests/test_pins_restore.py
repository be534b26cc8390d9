"""Restoring placeholders in answers: the checks of asgi_aigw/redact/restore.py that mutation testing
showed no test would miss (``python bench/mutation.py redact-restore``)."""

from __future__ import annotations

from typing import Any

import orjson

from asgi_aigw.redact.placeholders import PlaceholderMap
from asgi_aigw.redact.restore import JSONRestorer, StreamRestorer

EMAIL = "ana.lopez@example.com"


def mapping() -> tuple[PlaceholderMap, str]:
    names = PlaceholderMap()
    return names, names.placeholder("EMAIL_ADDRESS", EMAIL)


def event(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(content: str, **envelope: Any) -> dict[str, Any]:
    return {**envelope, "choices": [{"index": 0, "delta": {"content": content}}]}


def data_of(raw: bytes) -> Any:
    return orjson.loads(raw.split(b"data: ", 1)[1])


def test_an_upper_case_unicode_escape_of_the_placeholder_is_restored() -> None:
    names, placeholder = mapping()
    escaped = placeholder.replace("<", "\\u003C").replace(">", "\\u003E")
    body = b'{"choices":[{"message":{"content":"mail ' + escaped.encode() + b'"}}]}'
    restored = JSONRestorer(names)(200, body)
    assert restored is not None
    assert orjson.loads(restored)["choices"][0]["message"]["content"] == f"mail {EMAIL}"


def test_a_json_answer_without_placeholders_passes_through_untouched() -> None:
    names, _ = mapping()
    # a "<" that is no placeholder: the body must go on byte for byte, not re-encoded
    assert JSONRestorer(names)(200, b'{"choices": [{"message": {"content": "1 < 2"}}]}') is None


def test_a_stream_event_without_placeholders_passes_through_untouched() -> None:
    names, _ = mapping()
    assert StreamRestorer(names).on_event(event(chunk("1 < 2", id="c1"))) is None


def test_events_that_are_not_chunks_pass_without_error() -> None:
    names, placeholder = mapping()
    restorer = StreamRestorer(names)
    assert restorer.on_event(event(["<not a chunk>", placeholder])) is None  # a JSON array
    restored = restorer.on_event(event({"choices": [None, chunk(placeholder)["choices"][0]]}))
    assert restored is not None
    assert data_of(restored)["choices"][1]["delta"]["content"] == EMAIL


def test_an_error_event_is_restored_too() -> None:
    names, placeholder = mapping()
    restored = StreamRestorer(names).on_event(event({"error": {"message": f"bad address {placeholder}"}}))
    assert restored is not None
    assert data_of(restored) == {"error": {"message": f"bad address {EMAIL}"}}


def test_text_held_at_the_end_goes_out_in_the_last_chunks_envelope() -> None:
    names, placeholder = mapping()
    restorer = StreamRestorer(names)
    envelope = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    restorer.on_event(event(chunk("see " + placeholder[:4], **envelope, system_fingerprint="fp")))
    closing = restorer.on_end()
    assert len(closing) == 1
    last = data_of(closing[0])
    assert {key: last[key] for key in envelope} == envelope
    assert "system_fingerprint" not in last
    assert last["choices"][0]["delta"]["content"] == placeholder[:4]


def test_a_finishing_choice_flushes_what_it_held() -> None:
    names, placeholder = mapping()
    restorer = StreamRestorer(names)
    restorer.on_event(event(chunk("see " + placeholder[:4], id="c1")))
    finished = restorer.on_event(
        event({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    )
    assert finished is not None
    assert data_of(finished)["choices"][0]["delta"] == {"content": placeholder[:4]}
    assert restorer.on_end() == []  # flushed once, not again at the end
    # a finishing chunk without a delta gets one for the held text
    restorer.on_event(event(chunk("see " + placeholder[:3], id="c2")))
    bare = restorer.on_event(event({"id": "c2", "choices": [{"index": 0, "finish_reason": "stop"}]}))
    assert bare is not None
    assert data_of(bare)["choices"][0]["delta"] == {"content": placeholder[:3]}


def test_a_finishing_choice_with_nothing_held_passes_untouched() -> None:
    names, _ = mapping()
    finish = {"choices": [{"index": 0, "delta": {"content": "a < b"}, "finish_reason": "stop"}]}
    assert StreamRestorer(names).on_event(event(finish)) is None


def test_whole_messages_in_chunks_are_restored() -> None:
    names, placeholder = mapping()
    restored = StreamRestorer(names).on_event(
        event({"choices": [{"index": 0, "message": {"content": placeholder}}]})
    )
    assert restored is not None
    assert data_of(restored)["choices"][0]["message"]["content"] == EMAIL


def test_text_is_restored_verbatim_and_arguments_escaped() -> None:
    names = PlaceholderMap()
    placeholder = names.placeholder("PERSON", 'Ana "La Jefa" López')
    restored = StreamRestorer(names).on_event(
        event(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "content": f"hi {placeholder}",
                            "tool_calls": [
                                {"index": 0, "function": {"arguments": f'{{"to": "{placeholder}"}}'}}
                            ],
                        },
                    }
                ]
            }
        )
    )
    assert restored is not None
    delta = data_of(restored)["choices"][0]["delta"]
    assert delta["content"] == 'hi Ana "La Jefa" López'  # text: the value as it is
    assert orjson.loads(delta["tool_calls"][0]["function"]["arguments"]) == {"to": 'Ana "La Jefa" López'}


def test_tool_call_chunks_without_arguments_and_without_placeholders() -> None:
    names, _ = mapping()
    restorer = StreamRestorer(names)
    opening = {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_<1>", "type": "function"}]}}
        ]
    }
    assert restorer.on_event(event(opening)) is None
    plain = {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": "1 < 2"}'}}]}}
        ]
    }
    assert restorer.on_event(event(plain)) is None


def test_a_choice_without_a_usable_index_is_its_position() -> None:
    names, placeholder = mapping()
    restorer = StreamRestorer(names)
    restorer.on_event(event({"choices": [{"index": None, "delta": {"content": "x " + placeholder[:4]}}]}))
    closing = restorer.on_end()
    assert [data_of(raw)["choices"][0]["index"] for raw in closing] == [0]


def calls_chunk(calls: list[dict[str, Any]], finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {**delta, "tool_calls": calls}, "finish_reason": finish}]}


def test_held_arguments_are_flushed_into_their_own_call_when_the_choice_finishes() -> None:
    names, placeholder = mapping()
    restorer = StreamRestorer(names)
    opening = [
        {"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"index": 1, "id": "call_b", "function": {"name": "g", "arguments": '{"to": "' + placeholder[:4]}},
    ]
    restorer.on_event(event(calls_chunk(opening)))
    # the finishing chunk carries text of its own, a call without arguments, and the other call
    closing = calls_chunk(
        [{"index": 0, "function": {"arguments": " "}}, {"index": 1, "function": {"name": "g<"}}],
        finish="tool_calls",
        content="done.",
    )
    finished = restorer.on_event(event(closing))
    assert finished is not None
    delta = data_of(finished)["choices"][0]["delta"]
    assert delta["content"] == "done."
    assert delta["tool_calls"] == [
        {"index": 0, "function": {"arguments": " "}},
        {"index": 1, "function": {"name": "g<", "arguments": placeholder[:4]}},
    ]


def test_held_arguments_left_at_the_end_become_a_call_of_the_closing_chunk() -> None:
    names, placeholder = mapping()
    restorer = StreamRestorer(names)
    restorer.on_event(event(calls_chunk([{"index": 2, "function": {"arguments": "<" + placeholder[1:3]}}])))
    (closing,) = restorer.on_end()
    assert data_of(closing)["choices"][0]["delta"] == {
        "tool_calls": [{"index": 2, "function": {"arguments": "<" + placeholder[1:3]}}]
    }


def test_the_event_lines_around_the_data_are_kept() -> None:
    names, placeholder = mapping()
    raw = b"event: chunk\nid: 7\n" + event(chunk(placeholder))
    restored = StreamRestorer(names).on_event(raw)
    assert restored is not None
    assert restored.startswith(b"event: chunk\nid: 7\ndata: ")
    assert data_of(restored)["choices"][0]["delta"]["content"] == EMAIL
