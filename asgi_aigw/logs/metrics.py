"""Prometheus metrics for the gateway, recorded once per request by the request log layer.

Each :class:`GatewayMetrics` owns a ``CollectorRegistry`` (several gateways in one process do not
clash). Label values are bounded: routes are a fixed set, models are the configured names plus
``other`` (without configured names, the first ``max_models`` that a provider served), tenants appear
only when ``tenant_label`` is on (and beyond ``max_tenants`` they count as ``other``), PII entity types
beyond 64 distinct ones count as ``other``.

A request a layer answered itself (a cache hit, a 401, a 429) is labelled with the route its path
names and the model its body names, as the router would have labelled it (the request log layer fills
them in the context).

```python
metrics = GatewayMetrics(models=["gpt-4o-mini"])
app = RequestLogMiddleware(app, metrics=metrics)
starlette_app.mount("/metrics", metrics_app(metrics))
```
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..kernel.context import RequestContext
from ..kernel.optional import require
from ..kernel.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .config import MetricsConfig
    from .writer import LogWriter

#: Seconds; from a cache hit (sub-millisecond) to a long generation.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
OTHER = "other"
_ROUTES = frozenset({"chat", "messages", "count_tokens", "responses", "embeddings", "models"})
_MAX_ENTITY_TYPES = 64


class _Bounded:
    """Label values from an allowed set, or the first ``limit`` values seen; anything else is ``other``."""

    def __init__(self, allowed: Iterable[str] | None, limit: int) -> None:
        self._fixed = allowed is not None
        self._values: set[str] = set(allowed or ())
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, value: str | None, admit: bool = True) -> str:
        """``value`` if allowed; ``admit=False`` counts a value not yet seen as ``other``."""
        if not value:
            return ""
        if value in self._values:
            return value
        if self._fixed or not admit or len(self._values) >= self._limit:
            return OTHER
        with self._lock:
            if len(self._values) >= self._limit:
                return OTHER
            self._values.add(value)
        return value


class GatewayMetrics:
    """The gateway's metrics in their own registry. ``observe(ctx)`` records a finished request."""

    def __init__(
        self,
        *,
        models: Iterable[str] | None = None,
        max_models: int = 50,
        tenant_label: bool = False,
        max_tenants: int = 100,
        buckets: Sequence[float] | None = None,
        registry: Any = None,
    ) -> None:
        prometheus = require("prometheus_client", "metrics")
        self.registry = registry if registry is not None else prometheus.CollectorRegistry()
        self.tenant_label = tenant_label
        self._model = _Bounded(models, max_models)
        self._tenant = _Bounded(None, max_tenants)
        self._entity = _Bounded(None, _MAX_ENTITY_TYPES)
        tenant: tuple[str, ...] = ("tenant",) if tenant_label else ()
        bucket_list = tuple(buckets or DEFAULT_BUCKETS)
        r = self.registry
        counter, histogram, gauge = prometheus.Counter, prometheus.Histogram, prometheus.Gauge

        self.requests = counter(
            "aigw_requests",
            "Requests by route, model and HTTP status.",
            ("route", "model", "status", *tenant),
            registry=r,
        )
        self.latency = histogram(
            "aigw_request_duration_seconds",
            "Time from the request to the last byte of the answer.",
            ("route", "model"),
            buckets=bucket_list,
            registry=r,
        )
        self.ttfb = histogram(
            "aigw_time_to_first_byte_seconds",
            "Time from the request to the first byte of the answer.",
            ("route", "model"),
            buckets=bucket_list,
            registry=r,
        )
        self.tokens = counter(
            "aigw_tokens",
            "Tokens by model and type (prompt, completion), as the provider reported them.",
            ("model", "type", *tenant),
            registry=r,
        )
        self.cost = counter(
            "aigw_cost",
            "Cost of the requests (the pricing table's currency).",
            ("model", *tenant),
            registry=r,
        )
        self.cache = counter(
            "aigw_cache_requests",
            "Cache outcomes (hit-exact, hit-semantic, miss, bypass).",
            ("outcome",),
            registry=r,
        )
        self.cache_stores_skipped = counter(
            "aigw_cache_stores_skipped",
            "Answers the cache left out of its semantic layer because too many stores were under way.",
            registry=r,
        )
        self.budget_rejections = counter(
            "aigw_budget_rejections",
            "Requests refused with 429 before reaching a provider (budget, rate).",
            tenant,
            registry=r,
        )
        self.redactions = counter(
            "aigw_redactions", "PII entities found in requests, by entity type.", ("entity",), registry=r
        )
        self.client_disconnects = counter(
            "aigw_client_disconnects",
            "Requests the client abandoned before the answer was complete.",
            registry=r,
        )
        self.queue_depth = gauge(
            "aigw_log_queue_depth",
            "Request log rows waiting for the sink (in memory or in the spool).",
            registry=r,
        )
        self.rows_written = counter(
            "aigw_log_rows_written", "Request log rows stored by the sink.", registry=r
        )
        self.rows_spilled = counter(
            "aigw_log_rows_spilled",
            "Request log rows whose first insert failed and that waited for a retry.",
            registry=r,
        )
        self.rows_dropped = counter(
            "aigw_log_rows_dropped",
            "Request log rows lost (queue full without spool, unreadable spool file).",
            registry=r,
        )
        self.insert_failures = counter("aigw_log_insert_failures", "Failed request log inserts.", registry=r)
        self._writers: weakref.WeakSet[LogWriter] = weakref.WeakSet()
        #: Label children by (metric, *labels); bounded because every label value is.
        self._children: dict[tuple[Any, ...], Any] = {}
        self.queue_depth.set_function(lambda: float(sum(w.queue_depth for w in list(self._writers))))

    @classmethod
    def from_config(cls, config: MetricsConfig, *, models: Iterable[str] | None = None) -> GatewayMetrics:
        """Metrics as configured; ``models`` (the gateway's model names) is used when the configuration
        names none."""
        names = config.models if config.models is not None else (list(models) if models else None)
        return cls(
            models=names,
            max_models=config.max_models,
            tenant_label=config.tenant_label,
            max_tenants=config.max_tenants,
            buckets=config.buckets,
        )

    # -- per request --------------------------------------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: prometheus_client validates and locks on every call."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels) if labels else metric
        return child

    def observe(self, ctx: RequestContext) -> None:
        """Record one finished request from its context."""
        child = self._child
        route = ctx.route if ctx.route in _ROUTES else OTHER
        # without a configured list, a model name becomes a label only once a provider served it (now,
        # or for the cached answer): names in refused requests (404, 429) are the client's text and
        # must not fill the slots
        served = ctx.provider is not None or ctx.upstream_model is not None
        model = self._model(ctx.model, admit=served)
        tenant = (self._tenant(ctx.tenant_id),) if self.tenant_label else ()
        status = ctx.status or 0
        child(self.requests, route, model, str(status), *tenant).inc()
        if (latency := ctx.latency_ms) is not None:
            child(self.latency, route, model).observe(latency / 1000.0)
        if (ttfb := ctx.ttfb_ms) is not None:
            child(self.ttfb, route, model).observe(ttfb / 1000.0)
        if (usage := ctx.usage) is not None:
            if usage.prompt_tokens:
                child(self.tokens, model, "prompt", *tenant).inc(usage.prompt_tokens)
            if usage.completion_tokens:
                child(self.tokens, model, "completion", *tenant).inc(usage.completion_tokens)
        if ctx.cost:
            child(self.cost, model, *tenant).inc(ctx.cost)
        if ctx.cache_status:
            child(self.cache, ctx.cache_status).inc()
        if ctx.cache_store_skipped:
            self.cache_stores_skipped.inc()
        if status == 429 and ctx.attempts == 0:
            # refused by a gateway layer (budget, rate limit) before any provider was tried
            child(self.budget_rejections, *tenant).inc()
        for entity, count in ctx.pii_entities.items():
            child(self.redactions, self._entity(entity)).inc(count)
        if ctx.client_disconnected:
            self.client_disconnects.inc()

    # -- the request log writer (asgi_aigw.logs.writer.WriterMetrics) --------------------------------

    def watch_writer(self, writer: LogWriter) -> None:
        self._writers.add(writer)

    def log_rows_written(self, count: int) -> None:
        self.rows_written.inc(count)

    def log_rows_spilled(self, count: int) -> None:
        self.rows_spilled.inc(count)

    def log_rows_dropped(self, count: int) -> None:
        self.rows_dropped.inc(count)

    def log_insert_failed(self) -> None:
        self.insert_failures.inc()

    # -- exposition ---------------------------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (Prometheus text or OpenMetrics)."""
        exposition = require("prometheus_client.exposition", "metrics")
        encoder, content_type = exposition.choose_encoder(accept)
        return encoder(self.registry), content_type


def metrics_app(metrics: GatewayMetrics) -> ASGIApp:
    """An ASGI app serving ``metrics`` to Prometheus (GET, any path: mount it where you like)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") not in ("GET", "HEAD"):
            body = b"Use GET to read the metrics.\n"
            await _send(send, 405, body, b"text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")])
            return
        accept = b",".join(v for k, v in scope.get("headers", ()) if k == b"accept").decode("latin-1")
        body, content_type = metrics.render(accept)
        length = [(b"content-length", str(len(body)).encode())]
        if scope["method"] == "HEAD":
            body = b""
        await _send(send, 200, body, content_type.encode("latin-1"), length)

    return app


async def _send(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), *(extra or [])]
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
