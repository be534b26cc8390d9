from __future__ import annotations

import pytest

from asgi_aigw.sse import SSEDecoder, parse_event

STREAM = b'data: {"a": 1}\n\nevent: error\ndata: {"b": 2}\n\n: keep-alive\n\ndata: [DONE]\n\n'


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_events_come_out_whole_whatever_the_chunking(size: int) -> None:
    decoder = SSEDecoder()
    events: list[bytes] = []
    for i in range(0, len(STREAM), size):
        events.extend(decoder.feed(STREAM[i : i + size]))
    events.extend(decoder.flush())
    assert events == [
        b'data: {"a": 1}\n\n',
        b'event: error\ndata: {"b": 2}\n\n',
        b": keep-alive\n\n",
        b"data: [DONE]\n\n",
    ]


def test_crlf_line_endings_including_a_crlf_split_across_chunks() -> None:
    decoder = SSEDecoder()
    out = decoder.feed(b"data: x\r\n\r") + decoder.feed(b"\ndata: y\r\n\r\n")
    assert out == [b"data: x\n\n", b"data: y\n\n"]


def test_parse_event_joins_data_lines_and_reads_the_event_name() -> None:
    event = parse_event(b'event: message_start\ndata: {"a":\ndata: 1}\n\n')
    assert event.event == "message_start"
    assert event.data == b'{"a":\n1}'


def test_flush_returns_a_final_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: last") == []
    assert decoder.flush() == [b"data: last\n\n"]
