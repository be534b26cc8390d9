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
    """Split a byte stream into complete SSE events, whatever the chunk boundaries."""

    __slots__ = ("_buffer", "_pending_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the raw bytes of every event completed by them."""
        if self._pending_cr:
            chunk = b"\r" + chunk
            self._pending_cr = False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                # a CR at the end may be the first half of a CRLF: decide with the next chunk
                chunk = chunk[:-1]
                self._pending_cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        parts = buffer.split(b"\n\n")
        self._buffer = parts.pop()
        return [part + b"\n\n" for part in parts if part.strip(b"\n")]

    def flush(self) -> list[bytes]:
        """The last event if the stream ended without its blank line (lenient, like browsers)."""
        rest = self._buffer.strip(b"\n")
        self._buffer = b""
        return [rest + b"\n\n"] if rest else []


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
