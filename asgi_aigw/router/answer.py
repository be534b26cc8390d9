"""What every answer of the router says about how it was answered: the ``x-aigw-*`` headers, and the
context fields they are read from."""

from __future__ import annotations

import re

from ..kernel.context import RequestContext
from ..kernel.types import Headers
from ..providers.base import Deployment

#: ``ctx.extra`` key: the request fields the answering provider had no place for.
DROPPED_PARAMS = "router.dropped_params"
#: ``ctx.extra`` key: the client headers to pass on upstream (``RouterConfig.forward_headers``).
FORWARDED_HEADERS = "router.forwarded_headers"
#: ``ctx.extra`` key: headers of the upstream's answer relayed as they are (Anthropic's ``request-id``).
RELAYED_HEADERS = "router.relayed_headers"
#: ``ctx.extra`` key: writes the router's own error as the stream's last event (a dialect whose events
#: are numbered, the Responses API, continues the numbering); unset: the dialect's ``error_event``.
STREAM_ERROR_EVENT = "router.stream_error_event"
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_DROPPED = 32


def record(ctx: RequestContext, deployment: Deployment, model: str | None) -> None:
    """The deployment that answers, and the model it reported (its configured one until it does)."""
    ctx.provider = deployment.provider
    ctx.deployment = deployment.id
    ctx.upstream_model = model or deployment.model


def answer_headers(ctx: RequestContext) -> Headers:
    """The ``x-aigw-*`` headers of an answer: provider, model, deployment, attempts, dropped fields."""
    headers = [
        (b"x-aigw-provider", (ctx.provider or "").encode("latin-1")),
        (b"x-aigw-model", (ctx.upstream_model or "").encode("latin-1", "replace")),
        (b"x-aigw-deployment", (ctx.deployment or "").encode("latin-1", "replace")),
        (b"x-aigw-attempts", str(ctx.attempts).encode()),
    ]
    if dropped := ctx.extra.get(DROPPED_PARAMS):
        # what the provider had no place for: said, never silently lost (docs/providers.md). The names
        # come from the client's JSON: only plain ones go into a header, and not without bound.
        names = [n if _FIELD_NAME.fullmatch(n) else "?" for n in dropped[:_MAX_DROPPED]]
        headers.append((b"x-aigw-dropped-params", ",".join(names).encode()))
    if relayed := ctx.extra.get(RELAYED_HEADERS):
        headers.extend(relayed)
    return headers
