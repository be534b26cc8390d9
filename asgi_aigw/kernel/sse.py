"""Server-sent events: an incremental decoder that keeps each event's raw bytes, and encoders.

Pass-through layers forward the raw bytes of each event as it completes (never the whole stream); only
layers that need a field decode the event's ``data``.
"""

from __future__ import annotations

from typing import NamedTuple

DONE_DATA = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"


class SSEEvent(NamedTuple):
    event: str | None
    data: bytes
    #: The event as it arrived, line endings normalised to ``\n``, ending with the blank line.
    raw: bytes


class SSEDecoder:
    """Split a byte stream into complete SSE events, whatever the chunk boundaries.

    :meth:`feed` gives each event's raw bytes (for layers that forward events as they are);
    :meth:`feed_data` gives each event's ``data`` (for layers that read it).
    """

    __slots__ = ("_buffer", "_pending_cr")

    def __init__(self) -> None:
        #: The start of an unfinished event; line endings already normalised (it holds no CR).
        self._buffer = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the raw bytes of every event completed by them."""
        return [part + b"\n\n" for part in self._complete(chunk) if part.strip(b"\n")]

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the ``data`` of every event completed by them.

        Events without data (comments, keep-alives) are skipped, as an ``EventSource`` dispatches
        nothing for them. At the end of a stream, ``feed_data(b"\\n\\n")`` gives the last event if it
        came without its blank line.
        """
        out: list[bytes] = []
        for part in self._complete(chunk):
            # Providers send ``data: ...``, or ``event: ...`` then ``data: ...``, one line each: those
            # are sliced out directly; anything else (several data lines, comments, other fields) is
            # parsed.
            if part.startswith(b"data: ") and b"\n" not in part:
                data = part[6:]
            elif (
                part.startswith(b"event: ")
                and part.startswith(b"data: ", (end := part.find(b"\n")) + 1)
                and part.find(b"\n", end + 1) < 0
            ):
                data = part[end + 7 :]
            else:
                data = parse_event(part).data
            if data:
                out.append(data)
        return out

    def flush(self) -> list[bytes]:
        """The last event if the stream ended without its blank line (lenient, like browsers)."""
        rest = self._buffer.strip(b"\n")
        self._buffer = b""
        return [rest + b"\n\n"] if rest else []

    def _complete(self, chunk: bytes) -> list[bytes]:
        """The events ``chunk`` completes, without their blank line, line endings normalised."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in chunk or self._pending_cr:
            # One-line events ended by CRLF (as Gemini sends them) are cut at their CRLF blank line
            # as they are, without normalising every byte: that holds when every CR and LF belongs to
            # such a separator (so none is left for the next chunk either).
            parts = buffer.split(b"\r\n\r\n")
            separators = 2 * len(parts) - 2
            if self._pending_cr or buffer.count(b"\r") != separators or buffer.count(b"\n") != separators:
                return self._complete_normalised(chunk)
        else:
            # one scan: split finds the blank lines, or gives back the unfinished event alone
            parts = buffer.split(b"\n\n")
        self._buffer = parts.pop()
        return parts

    def _complete_normalised(self, chunk: bytes) -> list[bytes]:
        """:meth:`_complete` for any mix of line endings: CRLF and a lone CR become LF first."""
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if chunk.endswith(b"\r"):
            # a CR at the end may be the first half of a CRLF: decide with the next chunk
            chunk = chunk[:-1]
            self._pending_cr = True
        chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = (self._buffer + chunk if self._buffer else chunk).split(b"\n\n")
        self._buffer = parts.pop()
        return parts


def parse_event(raw: bytes) -> SSEEvent:
    """Decode one event's fields: ``event`` and the ``data`` lines joined by ``\\n``."""
    event: str | None = None
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return SSEEvent(event, b"\n".join(data), raw)


def encode_data(payload: bytes) -> bytes:
    """One ``data:`` event (payload must be a single line, as compact JSON is)."""
    return b"data: " + payload + b"\n\n"


def encode_event(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
