"""Read the request body once, parse its JSON once, and replay it to the next app.

The first layer that needs the body reads it (with a size limit), parses it and stores a :class:`JSONBody`
in the request context. It hands the next app a ``receive`` that replays the body, serialised again only
if some layer changed it, and then passes every later message (``http.disconnect``) through untouched.
Later layers find the parsed body in the context and never read or parse it again.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from .context import ensure_context
from .deadlines import deadline
from .errors import InvalidRequest, RequestTimeout, RequestTooLarge
from .http import get_header
from .models.errors import validation_error_message
from .types import Message, Receive, Scope

#: Default limit on request bodies: large enough for a few base64 images, small enough to refuse abuse.
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
#: Default seconds for the whole body to arrive: a client that sends headers and part of a body and then
#: stalls would otherwise hold its connection (and this request's task) for ever.
DEFAULT_BODY_TIMEOUT = 30.0
#: Deepest nesting of arrays and objects accepted. Layers serialise bodies again with orjson (cache keys,
#: provider requests), which refuses documents deeper than 254 levels; no OpenAI request needs 128.
MAX_JSON_DEPTH = 128

#: A JSON string (the document is known to be valid JSON when this is used).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
#: Openers become +1 and closers -1 (as signed bytes); every other byte is deleted.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

M = TypeVar("M", bound=BaseModel)


class ClientDisconnect(Exception):
    """The client went away before the request body was complete: there is nobody to answer."""


class JSONBody:
    """A parsed JSON request body and its bytes, kept in step.

    Change ``data`` in place and call :meth:`mark_changed` (or assign with :meth:`replace`); the bytes
    are re-serialised lazily, once, when the next app reads them.
    """

    __slots__ = ("_models", "_raw", "changed", "data", "received")

    def __init__(self, raw: bytes, data: Any) -> None:
        self._raw: bytes | None = raw
        self.data = data
        #: Size of the body the client sent, in bytes (a rewritten body's size may differ).
        self.received = len(raw)
        #: True once a layer changed the body (the bytes then differ from what the client sent).
        self.changed = False
        self._models: dict[type[BaseModel], BaseModel] = {}

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = orjson.dumps(self.data)
        return self._raw

    def mark_changed(self) -> None:
        self._raw = None
        self._models.clear()
        self.changed = True

    def replace(self, data: Any) -> None:
        self.data = data
        self.mark_changed()

    def validate(self, model: type[M], what: str = "request") -> M:
        """The body validated as ``model`` (cached until the body changes); 400 when it does not fit."""
        cached = self._models.get(model)
        if cached is not None:
            return cached  # type: ignore[return-value]
        try:
            parsed = model.model_validate(self.data)
        except ValidationError as exc:
            message, param = validation_error_message(exc, what)
            raise InvalidRequest(message, param=param) from None
        self._models[model] = parsed
        return parsed


async def read_body(
    scope: Scope,
    receive: Receive,
    *,
    limit: int = DEFAULT_MAX_BODY_BYTES,
    time_limit: float | None = DEFAULT_BODY_TIMEOUT,
) -> bytes:
    """Read the whole body, refusing with 413 past ``limit`` bytes (checked before reading, too) and
    with 408 when it has not all arrived ``time_limit`` seconds after the first read (``None``: no limit).

    The timeout bounds the whole body, not each gap between chunks: a client trickling one byte at a
    time is held to it as well."""
    declared = get_header(scope, b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidRequest("The Content-Length header is not a number.") from None
        if length > limit:
            raise _too_large(limit)
    if time_limit is None:
        return await _read_chunks(receive, limit)
    try:
        with deadline(time_limit):
            return await _read_chunks(receive, limit)
    except TimeoutError:
        raise body_too_slow(scope, time_limit) from None


def body_too_slow(scope: Scope, time_limit: float) -> RequestTimeout:
    """The 408 for a body that did not arrive within ``time_limit`` seconds."""
    return RequestTimeout(
        f"The request body did not arrive within {time_limit:g} seconds. Send the whole body at once, "
        "or raise body_timeout in the gateway configuration.",
        # the rest of the body may still come: the connection cannot carry another request (HTTP/2
        # forbids the header; there the stream is reset instead)
        headers=_CLOSE if scope.get("http_version", "1.1") in ("1.0", "1.1") else (),
    )


_CLOSE = (("connection", "close"),)


async def _read_chunks(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than this gateway accepts ({limit} bytes). "
        "Send a smaller request, or raise max_body_bytes in the gateway configuration."
    )


def json_depth(raw: bytes) -> int:
    """How deeply the valid JSON document ``raw`` nests arrays and objects (``{}`` is 1).

    Works on the bytes, in C-speed passes: strings are dropped (they may hold brackets), the brackets
    left become +1/-1 steps, and the deepest running sum is the depth.
    """
    steps = _JSON_STRING.sub(b"", raw).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", steps)), default=0)


def parse_json(raw: bytes) -> Any:
    """Parse a JSON object; 400 with the parser's reason when the body is not one."""
    if not raw:
        raise InvalidRequest("The request body is empty: send a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _not_json(raw, exc) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not a JSON {type(data).__name__}.")
    # counting brackets is cheap and bounds the depth: most bodies skip the exact measure
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth(raw) > MAX_JSON_DEPTH:
        raise _too_deep()
    return data


def _not_json(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidRequest:
    # orjson reports bytes that are not UTF-8 as "surrogates not allowed", which misleads: say what it is
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return InvalidRequest(
            f"The request body is not UTF-8 text (byte 0x{raw[bad.start]:02x} at offset {bad.start} "
            "cannot be decoded). Encode the JSON as UTF-8."
        )
    if str(exc).startswith("depth limit exceeded"):
        return _too_deep()
    return InvalidRequest(
        f"The request body is not valid JSON ({exc}). Send a JSON object with Content-Type: application/json."
    )


def _too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; this gateway "
        "accepts at most that. Flatten the structure."
    )


async def read_json(
    scope: Scope,
    receive: Receive,
    *,
    limit: int = DEFAULT_MAX_BODY_BYTES,
    time_limit: float | None = DEFAULT_BODY_TIMEOUT,
) -> tuple[Scope, Receive, JSONBody]:
    """The request's parsed body, reading it only if no layer has yet.

    Returns the scope and receive to hand to the next app: when this call read the body, ``receive``
    replays it. Raises :class:`InvalidRequest` (400), :class:`RequestTimeout` (408, the body took
    longer than ``time_limit`` seconds), :class:`RequestTooLarge` (413) or :class:`ClientDisconnect`.
    """
    scope, ctx = ensure_context(scope)
    if ctx.body is not None:
        # an outer layer read the body under its own limit: this layer's (maybe smaller) one still holds
        if ctx.body.received > limit:
            raise _too_large(limit)
        return scope, receive, ctx.body
    raw = await read_body(scope, receive, limit=limit, time_limit=time_limit)
    body = JSONBody(raw, parse_json(raw))
    ctx.body = body
    return scope, replay_receive(body, receive), body


def replay_receive(body: JSONBody, receive: Receive) -> Receive:
    """A ``receive`` that yields the (possibly changed) body once, then defers to the real one."""
    replayed = False

    async def receive_replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body.raw, "more_body": False}
        return await receive()  # http.disconnect, passed through untouched

    return receive_replay


def forward_scope(scope: Scope, body: JSONBody) -> Scope:
    """The scope to hand on: Content-Length recomputed if a layer changed the body."""
    if not body.changed:
        return scope
    headers = [
        (k, v) for k, v in scope.get("headers", ()) if k not in (b"content-length", b"transfer-encoding")
    ]
    headers.append((b"content-length", str(len(body.raw)).encode()))
    return {**scope, "headers": headers}
