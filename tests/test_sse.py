from __future__ import annotations

import random

import pytest

from asgi_aigw.kernel.sse import SSEDecoder, parse_event

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


def test_feed_data_gives_each_events_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed_data(STREAM) == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]  # the comment has none
    assert decoder.feed_data(b'event: x\ndata: {"a":\ndata: 1}\n\ndata:no-space\n\n') == [
        b'{"a":\n1}',
        b"no-space",
    ]
    # a last event without its blank line is finished by one
    assert decoder.feed_data(b"data: last") == []
    assert decoder.feed_data(b"\n\n") == [b"last"]


def _whole_stream(stream: bytes) -> list[bytes]:
    """The events of a whole stream, decoded by the SSE rules at once: CRLF, CR and LF end lines.
    (Empty lines before an event are dropped: where they go depends on the chunking.)"""
    text = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return [event.strip(b"\n") + b"\n\n" for event in text.split(b"\n\n") if event.strip(b"\n")]


def test_any_mix_of_line_endings_and_chunk_boundaries_decodes_as_the_whole_stream() -> None:
    """CRLF streams take a short way through the decoder; it must agree with the rules every time."""
    pieces = [b"data: ", b"event: x", b"{}", b":", b"a", b" ", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n"]
    rng = random.Random(7)
    for _ in range(3000):
        stream = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 24)))
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 5))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        raw, data = SSEDecoder(), SSEDecoder()
        events = [event for chunk in chunks for event in raw.feed(chunk)] + raw.flush()
        payloads = [payload for chunk in [*chunks, b"\n\n"] for payload in data.feed_data(chunk)]
        assert [event.lstrip(b"\n") for event in events] == _whole_stream(stream), (stream, chunks)
        assert payloads == [e for e in (parse_event(event).data for event in events) if e], (stream, chunks)


def test_gemini_style_crlf_events_come_out_normalised() -> None:
    stream = b'data: {"a": 1}\r\n\r\ndata: {"b": 2}\r\n\r\n'
    for size in (1, 5, 19, len(stream)):
        raw, data = SSEDecoder(), SSEDecoder()
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert [e for c in chunks for e in raw.feed(c)] == [b'data: {"a": 1}\n\n', b'data: {"b": 2}\n\n']
        assert [d for c in chunks for d in data.feed_data(c)] == [b'{"a": 1}', b'{"b": 2}']
