"""What the router asks of a tracer: one span per upstream attempt, and its trace context to send.

The router imports no tracing library. TraceMiddleware (``asgi_aigw.trace``) puts an
:class:`AttemptTracer` into the request context (``ctx.tracer``); without one the router does nothing
more than read that field once per attempt.
"""

from __future__ import annotations

from typing import Protocol


class AttemptSpan(Protocol):
    """One upstream attempt, from the request sent to the answer delivered (or the failure)."""

    def inject(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with this attempt's trace context added (W3C ``traceparent``) in a new dict, or
        ``headers`` itself when none is sent."""
        ...

    def answered(self, status: int) -> None:
        """The upstream answered with HTTP ``status`` (its own, before the gateway maps it)."""
        ...

    def end(self, outcome: str, *, error: str | None = None) -> None:
        """Close the span: ``outcome`` is ``ok``, ``retried`` (another attempt follows), ``failed``
        (none does) or ``cancelled``; ``error`` the gateway's error code."""
        ...


class AttemptTracer(Protocol):
    """Starts attempt spans as children of the request's span."""

    def attempt(
        self, number: int, *, deployment: str, provider: str, model: str, address: str
    ) -> AttemptSpan:
        """The span of attempt ``number`` (1 for the first) on ``deployment``."""
        ...
