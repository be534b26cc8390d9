"""Small helpers over ASGI messages: headers, JSON responses."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from operator import itemgetter

from .types import Headers, Scope, Send

_NAME = itemgetter(0)
#: For a layer that rewrote a body: its Content-Length goes, in any case (:func:`without_headers`).
CONTENT_LENGTH = frozenset({b"content-length"})


def get_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes), or ``None``."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def get_header_str(scope: Scope, name: bytes) -> str | None:
    value = get_header(scope, name)
    return None if value is None else value.decode("latin-1")


def without_headers(headers: Iterable[tuple[bytes, bytes]], names: frozenset[bytes]) -> Headers:
    """A copy of ``headers`` without those named one of ``names`` (lower-case; in any case here). Most
    lists hold none: whether one may is found by searching the names, joined and lower-cased, for what
    ``names`` all begin with, in C, where a test of each header cost half a microsecond a header, on
    every answer of every layer that sets one of its own."""
    out = list(headers)
    if _shared_start(names) not in b"\n".join(map(_NAME, out)).lower():
        return out
    return [(k, v) for k, v in out if k.lower() not in names]


@lru_cache(maxsize=64)
def _shared_start(names: frozenset[bytes]) -> bytes:
    """What every name of ``names`` begins with (empty when they share nothing: then every list is
    tested header by header)."""
    # the first and last in order share what all of them share
    first, last = min(names, default=b""), max(names, default=b"")
    size = 0
    while size < len(first) and first[size : size + 1] == last[size : size + 1]:
        size += 1
    return first[:size]


async def send_json_bytes(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    """Send an already serialised JSON body as a complete response."""
    out: Headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if headers:
        out.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})
