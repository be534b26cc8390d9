"""Requests a deployment serves in the client's own dialect (Messages to Anthropic, Responses to
OpenAI): sent as received, answered as the upstream answered.

Only the top-level ``model`` is rewritten (when the deployment's name for the model differs), in the
bytes themselves, so everything else the client sent (``cache_control`` placement, thinking signatures,
key order) reaches the upstream byte for byte. Headers are built anew: for Anthropic the client's
``anthropic-version`` and ``anthropic-beta``; the deployment's key and headers; never the client's own
credentials. The answer's stream is relayed event by event (:class:`EventRelay`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import orjson

from ..kernel.context import Usage
from ..kernel.dialects import MESSAGES
from ..kernel.dialects.base import StreamMeter
from ..kernel.dialects.messages import MessagesStreamMeter
from ..kernel.errors import GatewayError, UpstreamError
from ..kernel.sse import SSEDecoder, parse_event
from ..providers._translate import error_body, versioned
from ..providers.anthropic import ERROR_STATUS
from ..providers.base import Deployment, UpstreamRequest

#: Sent when the client names no ``anthropic-version`` (the version the SDKs send).
DEFAULT_VERSION = "2023-06-01"
#: The client headers an Anthropic deployment receives.
CLIENT_HEADERS = ("anthropic-version", "anthropic-beta")

#: A JSON string (the unrolled form: far faster over long base64 strings), or one bracket: enough to walk
#: an object's top level without parsing it.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_COLON = re.compile(rb"\s*:\s*")
_MODEL_KEY = b'"model"'


def rewrite_model(raw: bytes, model: str) -> bytes:
    """``raw`` (a JSON object) with its top-level ``model`` string replaced by ``model``, every other
    byte kept; re-serialised whole when the bytes cannot be rewritten in place with certainty."""
    rewritten = _rewritten(raw, model)
    # What Anthropic will read is checked, not assumed: a key spelt with escapes ("mod\u0065l") or
    # given twice would otherwise let the client's name, not the deployment's, reach the upstream.
    data = orjson.loads(rewritten if rewritten is not None else raw)
    if rewritten is not None and data.get("model") == model:
        return rewritten
    data["model"] = model
    return orjson.dumps(data)


def _rewritten(raw: bytes, model: str) -> bytes | None:
    # Inside a JSON string every quote is escaped, so the bytes "model" can only be a whole string
    # token: when they occur once, that is the top-level key the request was validated with.
    first = raw.find(_MODEL_KEY)
    if first >= 0 and raw.find(_MODEL_KEY, first + 1) < 0:
        span = _value_after(raw, first + len(_MODEL_KEY))
        if span is not None:
            return raw[: span[0]] + orjson.dumps(model) + raw[span[1] :]
    depth = 0
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
        elif depth == 1 and token == _MODEL_KEY:
            span = _value_after(raw, match.end())
            if span is not None:
                return raw[: span[0]] + orjson.dumps(model) + raw[span[1] :]
    return None


def _value_after(raw: bytes, end: int) -> tuple[int, int] | None:
    """Where the string value of the key ending at ``end`` lies; ``None`` if it is no key of a string."""
    colon = _COLON.match(raw, end)
    if colon is None:
        return None  # a string value "model", not the key
    value = _STRING.match(raw, colon.end())
    return None if value is None else value.span()


def client_headers(headers: Any) -> dict[str, str]:
    """The ``anthropic-*`` headers to pass on from the client's raw ASGI headers: the first
    ``anthropic-version`` (Anthropic refuses two joined), every ``anthropic-beta`` joined by commas."""
    found: dict[str, str] = {}
    for raw_name, raw_value in headers or ():
        name = raw_name.decode("latin-1").lower()
        if name not in CLIENT_HEADERS:
            continue
        value = raw_value.decode("latin-1")
        if name not in found:
            found[name] = value
        elif name == "anthropic-beta":
            found[name] = f"{found[name]},{value}"
    found.setdefault("anthropic-version", DEFAULT_VERSION)
    return found


def forward(
    deployment: Deployment,
    raw: bytes,
    model: str,
    url: str,
    *,
    key_header: str,
    key_prefix: str = "",
    headers: Mapping[str, str] | None = None,
) -> UpstreamRequest:
    """The POST to ``url`` carrying ``raw`` (its ``model`` renamed if need be): ``headers``, then the
    deployment's key in ``key_header`` (after ``key_prefix``), then the deployment's own headers."""
    content = raw if deployment.model == model else rewrite_model(raw, deployment.model)
    out = {"content-type": "application/json", **(headers or {})}
    if deployment.api_key:
        out[key_header] = key_prefix + deployment.api_key
    out.update(deployment.headers)
    return UpstreamRequest("POST", url, out, content)


def upstream_request(
    deployment: Deployment, raw: bytes, model: str, headers: Mapping[str, str], path: str
) -> UpstreamRequest:
    """The POST to Anthropic's ``{base}/v1/{path}`` carrying ``raw`` (its ``model`` renamed if need be)."""
    url = f"{versioned(deployment.base_url, 'v1')}/{path}"
    return forward(deployment, raw, model, url, key_header="x-api-key", headers=headers)


def _message(data: Any) -> str | None:
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else None


def upstream_error(status: int, content: bytes, headers: Mapping[str, str]) -> GatewayError:
    """Anthropic's error, kept: its status and its message (the client's dialect gives the type)."""
    message = _message(error_body(content)) or f"anthropic answered {status} with no error message"
    kept = [("retry-after", headers["retry-after"])] if "retry-after" in headers else []
    return GatewayError(message, status=status, type="upstream_error", code="upstream_error", headers=kept)


def event_error(data: Any) -> GatewayError:
    """The error of an ``error`` event inside a stream (whose status line said 200)."""
    error = data.get("error") if isinstance(data, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    status = ERROR_STATUS.get(kind if isinstance(kind, str) else "", 500)
    return GatewayError(
        _message(data) or "anthropic sent an error event", status=status, code="upstream_error"
    )


M = TypeVar("M", bound=StreamMeter)


class EventRelay(Generic[M]):
    """An upstream's stream in the client's dialect, relayed event by event as it came; read on the way
    by the dialect's ``meter`` for usage and the model. It is done at one of the ``final`` events: nothing
    after it belongs to this answer. An ``error`` event is raised (as ``event_error`` reads it), not
    relayed: before the first event the router can still retry elsewhere; after it, the router ends the
    stream with the same error in the client's dialect."""

    __slots__ = ("_decoder", "_event_error", "_final", "_meter", "_upstream", "done")

    def __init__(
        self,
        meter: M,
        *,
        upstream: str,
        final: frozenset[str],
        event_error: Callable[[Any], GatewayError],
    ) -> None:
        self._decoder = SSEDecoder()
        self._meter = meter
        self._upstream = upstream
        self._final = final
        self._event_error = event_error
        self.done = False

    @property
    def usage(self) -> Usage | None:
        return self._meter.usage

    @property
    def upstream_model(self) -> str | None:
        return self._meter.model

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._relay(self._decoder.feed(chunk))

    def close(self) -> list[bytes]:
        return self._relay(self._decoder.flush())

    def _relay(self, events: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for raw in events:
            if self.done:
                break
            event = parse_event(raw)
            if not event.data:
                out.append(raw)  # a comment or keep-alive
                continue
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamError(f"{self._upstream} sent a stream event that is not valid JSON.") from None
            kind = payload.get("type") if isinstance(payload, dict) else None
            if kind == "error":
                raise self._event_error(payload)
            self._meter.feed(event.event, payload)
            out.append(raw)
            if kind in self._final:
                self.done = True
        return out


class MessagesRelay(EventRelay[MessagesStreamMeter]):
    """Anthropic's Messages stream, relayed up to ``message_stop``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(
            MESSAGES.stream_meter(),
            upstream="anthropic",
            final=frozenset({"message_stop"}),
            event_error=event_error,
        )
