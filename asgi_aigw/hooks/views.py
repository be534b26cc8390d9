"""What a hook is given: a typed view of the request, of a complete answer, of a failure and of one
streamed event; and :class:`HookRefusal`, how a before-hook says no."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kernel.context import RequestContext, Usage
from ..kernel.errors import GatewayError

#: The error ``type`` OpenAI's shape gives each refusal status (other dialects map the status themselves).
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class HookRefusal(GatewayError):
    """Raised by a ``before_request`` hook to refuse the request: the client gets ``status`` and
    ``message`` in its own dialect's error shape, and nothing is sent upstream.

    ``status`` must be a 4xx or 5xx code (403 by default); ``code`` is the error code OpenAI's shape
    carries (``refused_by_hook`` by default)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 403,
        code: str = "refused_by_hook",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"A hook refuses with a 4xx or 5xx status, not {status}.")
        error_type = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        super().__init__(message, status=status, type=error_type, code=code, headers=headers)


@dataclass(slots=True, eq=False)
class HookRequest:
    """A request about to be sent to a provider, as the router got it: after every middleware in front
    of it (redaction's placeholders in place of PII), before validation.

    ``body`` is the parsed JSON body in the client's dialect. Each before-hook gets the body the hook
    before it returned."""

    #: ``"chat"``, ``"messages"`` or ``"responses"``: the client's wire format.
    dialect: str
    #: The ``model`` the client asked for (``None`` when the body names none; it is then refused).
    model: str | None
    #: Whether the client asked for a stream.
    stream: bool
    #: The parsed JSON body.
    body: dict[str, Any]
    #: Who pays and who asked, as the tenant layer (or the app's own login) established them.
    tenant_id: str | None
    user_id: str | None
    #: The gateway's id for this request (the request log's ``request_id``).
    request_id: str
    #: The request's whole context, for what the fields above leave out; read it, do not change it.
    context: RequestContext


@dataclass(frozen=True, slots=True, eq=False)
class HookResponse:
    """A complete answer that has gone to the client (a JSON answer, or a stream after its last event)."""

    #: The request as it was sent (after the before-hooks).
    request: HookRequest
    #: The HTTP status sent (200).
    status: int
    #: Whether the answer was a stream.
    stream: bool
    #: The JSON answer in the client's dialect; ``None`` for a stream (its events went to ``on_chunk``).
    answer: dict[str, Any] | None
    #: The generated text (for a stream, put together from its events).
    text: str
    #: Token usage as the provider reported it, ``None`` when it reported none.
    usage: Usage | None
    #: Who answered: provider name, the model it reported, the deployment id.
    provider: str | None
    model: str | None
    deployment: str | None
    #: Milliseconds from the start of the request to the answer's last byte.
    latency_ms: float


@dataclass(frozen=True, slots=True, eq=False)
class HookFailure:
    """A request the router answered with an error: refused (by a hook, or as invalid) or failed
    upstream. ``stream_started``: the error went out as the stream's last event, not as a status."""

    #: The request, ``None`` when it failed before its body was read (not JSON, too large).
    request: HookRequest | None
    #: The HTTP status of the error (the stream's own status, 200, stays as it was once it started).
    status: int
    #: The error as the gateway sent it (``message``, ``code``, ``type``).
    error: GatewayError
    stream_started: bool
    #: Upstream attempts made (0: nothing was sent upstream, as for a refusal).
    attempts: int
    #: Milliseconds from the start of the request to the error.
    latency_ms: float


@dataclass(frozen=True, slots=True, eq=False)
class HookChunk:
    """One server-sent event of a streamed answer, as it went to the client (read-only: changing it
    changes nothing)."""

    request: HookRequest
    #: 0 for the first event of the stream, then 1, 2, ...
    index: int
    #: The event's ``event:`` name (Messages and Responses name theirs; chat's have none).
    event: str | None
    #: The event's ``data``, parsed as JSON; the text itself when it is not JSON (chat's ``[DONE]``).
    data: Any
    #: The event's bytes as sent.
    raw: bytes
