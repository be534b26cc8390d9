"""OpenTelemetry traces: a span per gateway request with the GenAI semantic conventions, and a child
span per upstream attempt, joined to the app's own traces (needs ``asgi-aigw[otel]``).

```python
from asgi_aigw.trace import TraceConfig, TraceMiddleware

app = TraceMiddleware(app, config=TraceConfig())
```

See ``docs/tracing.md`` for the attributes, how spans join the app's traces, and ``aigw serve``'s
``OTEL_*`` environment variables.
"""

from .config import TraceConfig
from .middleware import TraceMiddleware
from .setup import configure_from_env

__all__ = ["TraceConfig", "TraceMiddleware", "configure_from_env"]
