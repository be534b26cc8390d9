"""TraceMiddleware: one OpenTelemetry span per gateway request, one child span per upstream attempt.

The request span is named ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat gpt-4o-mini``) and
carries the GenAI semantic conventions' attributes and the gateway's own (``aigw.*``), read from the
request context when the request ends: what every layer recorded there (tenant, budget decision,
redaction counts, cache status, provider, usage) is not computed again. The answer's id and finish
reasons, which no layer records, are read off the wire while the span records.

It joins the app's trace: the span is a child of the span active when the request reaches it (the
host app's own instrumentation), else of an incoming ``traceparent``, else the root of a new trace.
The router starts the attempt spans through ``ctx.tracer`` and sends each attempt's ``traceparent``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..kernel.context import RequestContext, ensure_context
from ..kernel.dialects import DIALECTS
from ..kernel.errors import MODEL_NOT_FOUND
from ..kernel.optional import require
from ..kernel.routes import classify
from ..kernel.types import ASGIApp, Message, Receive, Scope, Send
from . import semconv as sc
from .answer import AnswerFacts
from .config import TraceConfig

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import Span, Tracer, TracerProvider

#: The instrumentation scope of the gateway's spans.
SCOPE_NAME = "asgi_aigw"
#: Model names are the client's text: cut to this length.
_MAX_MODEL_CHARS = 200


def _version() -> str | None:
    try:
        return version("asgi-aigw")
    except PackageNotFoundError:
        return None


class TraceMiddleware:
    """Trace every gateway request (chat, messages, responses, embeddings, count_tokens, models).

    Every setting is in ``config``. Injected object: ``tracer_provider``, the provider to take the
    tracer from (default: OpenTelemetry's global one, as the host app or ``aigw serve`` set it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: TraceConfig | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.app = app
        self.config = config = config or TraceConfig()
        self._api = api = _Api()
        #: Taken from the global provider once one is set (until then every request passes through).
        self._tracer: Tracer | None = None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(SCOPE_NAME, _version())
        self._unset = (api.trace.ProxyTracerProvider, api.trace.NoOpTracerProvider)
        self._textmap: Any = None
        self._fields: frozenset[bytes] = frozenset()
        self._getter = _header_getter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = classify(scope) if scope["type"] == "http" else None
        tracer = (self._tracer or self._global_tracer()) if route is not None else None
        if tracer is None or route is None:
            # not a gateway route, or no SDK set up: OpenTelemetry's no-op tracer would record nothing
            await self.app(scope, receive, send)
            return
        api = self._api
        active = api.trace.get_current_span().get_span_context().is_valid
        parent: Context | None = None
        if not active and self.config.extract:
            parent = self._extract(scope.get("headers") or ())
        operation = sc.OPERATIONS.get(route)
        span = tracer.start_span(
            operation or route,
            context=parent,
            # the gateway is the server of its client, unless it runs inside an app's own server span
            kind=api.internal if active else api.server,
            attributes={sc.HTTP_METHOD: scope.get("method", "")},
        )
        if not span.is_recording():
            # no SDK, or sampled out: nothing to record, but a valid context still goes upstream
            if span.get_span_context().is_valid and self.config.propagate:
                scope, ctx = ensure_context(scope)
                context = api.trace.set_span_in_context(span, parent)
                ctx.tracer = _Attempts(api, tracer, context, operation or route, propagate=True)
            await self.app(scope, receive, send)
            return
        await self._traced(scope, receive, send, route, operation, tracer, span, parent)

    def _global_tracer(self) -> Tracer | None:
        """The global provider's tracer once the app (or ``aigw serve``) has set one up."""
        provider = self._api.trace.get_tracer_provider()
        if isinstance(provider, self._unset):
            return None
        tracer: Tracer = provider.get_tracer(SCOPE_NAME, _version())
        self._tracer = tracer
        return tracer

    def _extract(self, headers: Any) -> Context | None:
        """The incoming trace context, when a header the propagators read is there (most requests
        carry none: their headers are scanned, not handed to every propagator)."""
        propagate = self._api.propagate
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._fields = frozenset(name.lower().encode("latin-1") for name in textmap.fields)
            self._textmap = textmap
        fields = self._fields
        if not any(name in fields for name, _ in headers):
            return None
        context: Context = propagate.extract(headers, getter=self._getter)
        return context

    async def _traced(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: str,
        operation: str | None,
        tracer: Tracer,
        span: Span,
        parent: Context | None,
    ) -> None:
        api = self._api
        scope, ctx = ensure_context(scope)
        context = api.trace.set_span_in_context(span, parent)
        ctx.tracer = _Attempts(api, tracer, context, operation or route, propagate=self.config.propagate)
        facts = AnswerFacts(route)

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                facts.start(message["status"], message.get("headers", ()))
                span.set_attribute(sc.HTTP_STATUS, message["status"])
            elif kind == "http.response.body":
                facts.body(message.get("body", b""))
            await send(message)

        token = api.context.attach(context)
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(api.error, type(exc).__name__)
            span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
            raise
        finally:
            api.context.detach(token)
            try:
                facts.finish()
                self._finish(span, ctx, route, operation, facts)
            finally:
                # when the app returns, not at the last byte: the attempt spans inside end before it
                span.end()

    def _finish(
        self, span: Span, ctx: RequestContext, route: str, operation: str | None, facts: AnswerFacts
    ) -> None:
        """The request's attributes, from the context and the answer."""
        model = ctx.model or _requested_model(ctx)
        if ctx.error_code == MODEL_NOT_FOUND:
            model = None  # a name the gateway does not serve is the client's text (it may be anything)
        name = operation or route
        span.update_name(f"{name} {model}" if model else name)
        attributes: dict[str, Any] = {"aigw.request_id": ctx.request_id}
        if operation is not None:
            attributes[sc.OPERATION] = operation
        if model:
            attributes[sc.REQUEST_MODEL] = model
        if route in DIALECTS:
            attributes["aigw.dialect"] = DIALECTS[route].name
            attributes[sc.REQUEST_STREAM] = ctx.stream
        if ctx.provider:
            attributes[sc.PROVIDER] = sc.provider_name(ctx.provider)
        response_model = ctx.upstream_model or facts.model
        if response_model:
            attributes[sc.RESPONSE_MODEL] = response_model
        if facts.id:
            attributes[sc.RESPONSE_ID] = facts.id
        if facts.finish_reasons:
            attributes[sc.FINISH_REASONS] = facts.finish_reasons
        usage = ctx.usage or facts.usage()
        if usage is not None:
            attributes[sc.INPUT_TOKENS] = usage.prompt_tokens
            attributes[sc.OUTPUT_TOKENS] = usage.completion_tokens
            if usage.cached_tokens:
                attributes[sc.CACHE_READ_TOKENS] = usage.cached_tokens
            if usage.cache_write_tokens:
                attributes[sc.CACHE_WRITE_TOKENS] = usage.cache_write_tokens
            if usage.estimated:
                attributes["aigw.usage.estimated"] = True
        if ctx.tenant_id:
            attributes["aigw.tenant"] = ctx.tenant_id
        if ctx.user_id and self.config.record_user:
            attributes["aigw.user"] = ctx.user_id
        if ctx.cache_status:
            attributes["aigw.cache"] = ctx.cache_status
            if ctx.cache_score is not None:
                attributes["aigw.cache.score"] = ctx.cache_score
        if ctx.budget_decision:
            attributes["aigw.budget"] = ctx.budget_decision
        if ctx.token_estimate is not None:
            attributes["aigw.token_estimate"] = ctx.token_estimate
        if ctx.cost is not None:
            attributes["aigw.cost"] = ctx.cost
        # entity types and counts only: the values never leave RedactMiddleware
        for entity, count in ctx.pii_entities.items():
            attributes[f"aigw.redactions.{entity}"] = count
        if ctx.deployment:
            attributes["aigw.deployment"] = ctx.deployment
        if ctx.attempts:
            attributes["aigw.attempts"] = ctx.attempts
        if ctx.client_disconnected:
            attributes["aigw.client_disconnected"] = True
        status = ctx.status
        if status is not None and status >= 400 and ctx.error_code:
            attributes[sc.ERROR_TYPE] = ctx.error_code
        span.set_attributes(attributes)
        # a server span's error is the server's (5xx); a refused request (4xx) is the client's
        if status is not None and status >= 500:
            span.set_status(self._api.error, ctx.error_code or str(status))


class _Attempts:
    """``ctx.tracer``: the attempt spans of one request, children of its span."""

    __slots__ = ("_api", "_context", "_operation", "_propagate", "_tracer")

    def __init__(
        self, api: _Api, tracer: Tracer, context: Context, operation: str, *, propagate: bool
    ) -> None:
        self._api = api
        self._tracer = tracer
        self._context = context
        self._operation = operation
        self._propagate = propagate

    def attempt(
        self, number: int, *, deployment: str, provider: str, model: str, address: str
    ) -> _AttemptSpan:
        parts = urlsplit(address)
        attributes: dict[str, Any] = {
            sc.OPERATION: self._operation,
            sc.PROVIDER: sc.provider_name(provider),
            sc.REQUEST_MODEL: model,
            "aigw.deployment": deployment,
            "aigw.attempt": number,
        }
        if parts.hostname:
            attributes[sc.SERVER_ADDRESS] = parts.hostname
        if parts.port:
            attributes[sc.SERVER_PORT] = parts.port
        span = self._tracer.start_span(
            f"{self._operation} {model}",
            context=self._context,
            kind=self._api.client,
            attributes=attributes,
        )
        return _AttemptSpan(self._api, span, self._context, propagate=self._propagate)


class _AttemptSpan:
    __slots__ = ("_api", "_context", "_propagate", "_span")

    def __init__(self, api: _Api, span: Span, context: Context, *, propagate: bool) -> None:
        self._api = api
        self._span = span
        self._context = context
        self._propagate = propagate

    def inject(self, headers: dict[str, str]) -> dict[str, str]:
        if not self._propagate:
            return headers
        out = dict(headers)
        # this attempt's span as the parent of the upstream's, without the request's baggage: that is
        # the app's (or its client's) own context, user ids and the like, and providers are third parties
        api = self._api
        context = api.trace.set_span_in_context(self._span, api.baggage.clear(self._context))
        api.propagate.inject(out, context=context)
        return out

    def answered(self, status: int) -> None:
        self._span.set_attribute(sc.HTTP_STATUS, status)

    def end(self, outcome: str, *, error: str | None = None) -> None:
        span = self._span
        if span.is_recording():
            span.set_attribute("aigw.outcome", outcome)
            if outcome != "ok":
                span.set_attribute(sc.ERROR_TYPE, error or outcome)
                span.set_status(self._api.error, error or outcome)
        span.end()


class _Api:
    """The OpenTelemetry API's modules and constants, imported once (lazily: the package is optional)."""

    __slots__ = ("baggage", "client", "context", "error", "internal", "propagate", "server", "trace")

    def __init__(self) -> None:
        self.trace: Any = require("opentelemetry.trace", "otel")
        self.baggage: Any = require("opentelemetry.baggage", "otel")
        self.context: Any = require("opentelemetry.context", "otel")
        self.propagate: Any = require("opentelemetry.propagate", "otel")
        self.server = self.trace.SpanKind.SERVER
        self.internal = self.trace.SpanKind.INTERNAL
        self.client = self.trace.SpanKind.CLIENT
        self.error = self.trace.StatusCode.ERROR


def _header_getter() -> Getter[Any]:
    """A getter for OpenTelemetry's propagators over an ASGI header list (lowercase byte names)."""
    textmap = require("opentelemetry.propagators.textmap", "otel")

    class HeaderGetter(textmap.Getter):  # type: ignore[misc,name-defined]
        def get(self, carrier: Any, key: str) -> list[str] | None:
            name = key.lower().encode("latin-1")
            found = [v.decode("latin-1") for k, v in carrier if k == name]
            return found or None

        def keys(self, carrier: Any) -> list[str]:
            return [k.decode("latin-1") for k, _ in carrier]

    getter: Getter[Any] = HeaderGetter()
    return getter


def _requested_model(ctx: RequestContext) -> str | None:
    """The ``model`` of the request body, if a layer parsed it (a request refused before the router)."""
    data = ctx.body.data if ctx.body is not None else None
    model = data.get("model") if isinstance(data, dict) else None
    return model[:_MAX_MODEL_CHARS] if isinstance(model, str) and model else None
