"""``TraceConfig``: the ``trace:`` section of the gateway configuration (OpenTelemetry spans).

```yaml
trace: {}                      # a span per request and per upstream attempt, with the defaults below
trace: {propagate: false}      # no traceparent header to the providers
```

"""

from __future__ import annotations

from ..kernel.config import ConfigSection


class TraceConfig(ConfigSection):
    """OpenTelemetry spans with the GenAI semantic conventions (needs ``asgi-aigw[otel]``)."""

    #: Send each upstream attempt's trace context to the provider (W3C ``traceparent``, through the
    #: configured propagators).
    propagate: bool = True
    #: When no span is active (no instrumentation of the host app), continue the trace of an incoming
    #: ``traceparent`` header; off: every request starts a new trace.
    extract: bool = True
    #: Record who asked (``aigw.user``) besides the tenant; off when user ids are personal data.
    record_user: bool = True
