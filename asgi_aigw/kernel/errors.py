"""OpenAI-shaped errors: ``{"error": {"message", "type", "code", "param"}}`` with the right status.

Every layer raises a :class:`GatewayError` subclass (or builds one) and turns it into a response with
:func:`send_error`; once a stream has started the same error goes out as a final SSE ``error`` event
(:func:`sse_error_event`), because the status line has already been sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson

from .types import Headers, Send

if TYPE_CHECKING:
    from .dialects import Dialect


class ConfigError(ValueError):
    """The configuration cannot be used; the message says what to change."""


class GatewayError(Exception):
    """An error the gateway answers itself, in OpenAI's error format."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers: list[tuple[str, str]] = list(headers)

    def to_dict(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class InvalidRequest(GatewayError):
    """400: the body is not valid JSON or does not match the schema."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


#: The code of the 404 for a model name the gateway does not serve.
MODEL_NOT_FOUND = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(GatewayError):
    """408: the request body did not arrive in time (the connection is closed after the answer)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnprocessableContent(GatewayError):
    """422: the request is well-formed but refused by policy (for example blocked PII)."""

    status = 422
    type = "invalid_request_error"
    code = "unprocessable"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """502: the provider answered with a server error or something unreadable."""

    status = 502
    type = "upstream_error"
    code = "bad_gateway"


class UpstreamUnavailable(GatewayError):
    """503: the provider could not be reached (connection refused, DNS, TLS), or no deployment is up."""

    status = 503
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "upstream_error"
    code = "upstream_timeout"


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for an error message: a client's huge input (a model name,
    a header, a token's ``alg``) is never echoed back whole."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def send_error(
    send: Send, exc: GatewayError, extra_headers: Headers | None = None, *, dialect: Dialect | None = None
) -> None:
    """Send ``exc`` as a complete JSON response, in the client's ``dialect`` (OpenAI's shape if none)."""
    body = exc.to_json() if dialect is None else dialect.error_body(exc)
    headers: Headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers)
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def sse_error_event(exc: GatewayError, dialect: Dialect | None = None) -> bytes:
    """The final SSE event for an error that happens after a stream has started.

    In OpenAI's dialect the payload is the OpenAI error object, as OpenAI itself sends mid-stream errors,
    so the ``openai`` SDK raises ``APIError`` with this message; other dialects send their own shape.
    """
    if dialect is not None:
        return dialect.error_event(exc)
    return b"event: error\ndata: " + exc.to_json() + b"\n\n"
