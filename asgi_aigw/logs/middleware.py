"""RequestLogMiddleware: the outermost layer. One row per request, queued after the response ends.

It creates the request context, gives the request an id (returned as ``x-request-id``), watches what
is sent (status, first byte, last byte) and received (``http.disconnect``), and when the inner app
returns, raises or is cancelled, builds the row from what every layer recorded in the context and
queues it (no I/O on the request path: see :class:`~asgi_aigw.logs.writer.LogWriter`).
"""

from __future__ import annotations

import logging
import re
import time

import orjson

from ..kernel.context import RequestContext, ensure_context
from ..kernel.dialects import dialect_for
from ..kernel.errors import MODEL_NOT_FOUND
from ..kernel.http import get_header, without_headers
from ..kernel.lifespan import lifespan_passthrough
from ..kernel.routes import classify, is_generation
from ..kernel.types import ASGIApp, Message, Receive, Scope, Send
from ..stores.registry import LOG_STORES
from .answer import AnswerUsage
from .config import LogConfig
from .metrics import GatewayMetrics
from .row import CLIENT_CLOSED_REQUEST, build_row
from .sinks import LogSink
from .writer import LogWriter

logger = logging.getLogger("asgi_aigw.logs")

#: A model name the client sent is logged up to this length (real names are far shorter).
_MAX_MODEL_CHARS = 200
#: Error bodies are read this far for their ``error.code``.
_MAX_ERROR_BODY = 8192
#: An incoming request id is reused only if it looks like one (no header injection, bounded length).
#: ``\Z``, not ``$``: ``$`` also matches before a final newline, which would then reach a response header.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}\Z")


class RequestLogMiddleware:
    """Log every gateway request (``config.routes == "all"``: every HTTP request) to a sink, and
    record it in Prometheus ``metrics`` when given.

    Every setting is in ``config``; rows go to the sink ``config.store`` names (``None``: metrics
    only). Injected objects: ``store``, a :class:`LogSink` you built, or a ready :class:`LogWriter` to
    share between apps (replacing ``config.store``); ``metrics``, the Prometheus recorder.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: LogConfig | None = None,
        store: LogSink | LogWriter | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.app = app
        self.config = config = config or LogConfig()
        self.metrics = metrics
        self.writer: LogWriter | None
        target: LogSink | LogWriter | None = store
        if target is None and config.store is not None:
            target = LOG_STORES.open(config.store, table=config.table, ttl_days=config.ttl_days)
        if isinstance(target, LogWriter):
            self.writer = target
        elif target is None:
            self.writer = None
        else:
            self.writer = LogWriter(
                target,
                batch_size=config.batch_size,
                flush_interval=config.flush_interval,
                max_queue=config.max_queue,
                spool_dir=config.spool_dir,
                spool_fsync=config.spool_fsync,
                retry_initial=config.retry_initial,
                retry_max=config.retry_max,
                shutdown_timeout=config.shutdown_timeout,
                metrics=metrics,
            )
        self._all_routes = config.routes == "all"
        self._header = config.request_id_header.lower().encode("latin-1")
        #: What :func:`without_headers` strips from an answer: the id header, which this layer sets.
        self._header_names = frozenset((self._header,))
        self._trust_id = config.trust_request_id
        self._log_bodies = config.log_bodies
        self._max_body = config.max_body_chars

    async def _start(self) -> None:
        if self.writer is not None:
            await self.writer.prepare()

    async def aclose(self) -> None:
        """Flush the log and close its sink (done at lifespan shutdown, and at exit without one)."""
        if self.writer is not None:
            await self.writer.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan_passthrough(
                    self.app, scope, receive, send, on_startup=self._start, on_shutdown=self.aclose
                )
            else:
                await self.app(scope, receive, send)
            return
        route = classify(scope)
        if route is None and not self._all_routes:
            await self.app(scope, receive, send)
            return

        scope, ctx = ensure_context(scope)
        if self._trust_id:
            incoming = get_header(scope, self._header)
            if incoming is not None and _VALID_REQUEST_ID.match(incoming):
                ctx.request_id = incoming.decode("ascii")
        state = _Progress(ctx, route, receive, send, self._header, self._header_names)

        failed = False
        try:
            await self.app(scope, state.receive, state.send)
        except BaseException:
            failed = True
            raise
        finally:
            self._record(ctx, scope, route, state, failed)

    def _record(
        self, ctx: RequestContext, scope: Scope, route: str | None, state: _Progress, failed: bool
    ) -> None:
        """Build and queue the row (and record metrics); never raises into the request."""
        try:
            if ctx.finished_at is None:
                ctx.finished_at = time.perf_counter()
            # a layer that answered itself (cache hit, 401, 429) did not record what the router
            # would have: the route is the path's, the model the one the body named
            if ctx.route is None:
                ctx.route = route
            if ctx.model is None:
                ctx.model = requested_model(ctx)
            if ctx.usage is None and state.answer is not None:
                ctx.usage = state.answer.usage()
            if not state.started:
                # nothing reached the client: it left first, or the app failed (the server answers 500)
                ctx.status = CLIENT_CLOSED_REQUEST if ctx.client_disconnected else 500
                if ctx.error_code is None:
                    ctx.error_code = (
                        "client_disconnected" if ctx.status == CLIENT_CLOSED_REQUEST else "internal_error"
                    )
            elif ctx.error_code is None and state.error_body:
                ctx.error_code = _error_code(state.error_body)
            if failed and state.started and not state.finished and ctx.error_code is None:
                ctx.error_code = "client_disconnected" if ctx.client_disconnected else "internal_error"
            if self.writer is not None:
                row = build_row(
                    ctx,
                    method=scope.get("method", ""),
                    path=scope.get("path", ""),
                    route=route,
                    log_body=self._log_bodies,
                    max_body_chars=self._max_body,
                )
                if ctx.error_code == MODEL_NOT_FOUND:
                    # a name this gateway does not serve is the client's text, not a model: it may be
                    # anything (an e-mail address), and each would be a new value of the column (the
                    # metrics count it as "other")
                    row["model"] = ""
                self.writer.enqueue(row)
            if self.metrics is not None:
                self.metrics.observe(ctx)
        except Exception:
            logger.exception("could not record the request log row of request %s", ctx.request_id)


class _Progress:
    """One request's exchange as the app makes it: what was sent, and the ``send`` and ``receive``
    the app gets. One object per request rather than two closures and their cells: this layer sees
    every request."""

    __slots__ = (
        "_ctx",
        "_generation",
        "_header",
        "_id_header",
        "_names",
        "_receive",
        "_route",
        "_send",
        "answer",
        "error_body",
        "finished",
        "started",
    )

    def __init__(
        self,
        ctx: RequestContext,
        route: str | None,
        receive: Receive,
        send: Send,
        header: bytes,
        names: frozenset[bytes],
    ) -> None:
        self._ctx = ctx
        self._route = route
        self._generation = is_generation(route)
        self._receive = receive
        self._send = send
        self._header = header
        self._names = names
        self._id_header = (header, ctx.request_id.encode("latin-1"))
        self.started = False
        self.finished = False
        self.error_body: bytes | None = None
        # the answer's own usage, for when no layer (router, budget) records it in the context
        self.answer: AnswerUsage | None = None

    async def send(self, message: Message) -> None:
        ctx = self._ctx
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            ctx.status = message["status"]
            # a layer that refused the request may not have said why in the context: read the body
            self.error_body = b"" if ctx.status >= 400 and ctx.error_code is None else None
            headers = without_headers(message.get("headers", ()), self._names)
            if self._generation and ctx.usage is None:
                # a layer that recorded the usage before the answer started (a cache hit, the
                # router's JSON answer) leaves nothing to read
                self.answer = AnswerUsage(dialect_for(self._route))
                self.answer.start(ctx.status, headers)
            headers.append(self._id_header)
            message = {**message, "headers": headers}
        elif kind == "http.response.body":
            more = message.get("more_body", False)
            if self.answer is not None:
                self.answer.body(message.get("body", b""))
            if self.error_body is not None and len(self.error_body) < _MAX_ERROR_BODY:
                self.error_body += message.get("body", b"")
            if ctx.first_byte_at is None and (message.get("body") or not more):
                ctx.first_byte_at = time.perf_counter()
            if not more:
                # before the await: a disconnect seen from here on is the normal end of the exchange
                self.finished = True
                ctx.finished_at = time.perf_counter()
        try:
            await self._send(message)
        except OSError:
            ctx.client_disconnected = True
            raise

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.finished:
            self._ctx.client_disconnected = True
        return message


def requested_model(ctx: RequestContext) -> str | None:
    """The ``model`` of the request body, if a layer parsed it (cut short: it is the client's text)."""
    data = ctx.body.data if ctx.body is not None else None
    model = data.get("model") if isinstance(data, dict) else None
    return model[:_MAX_MODEL_CHARS] if isinstance(model, str) and model else None


def _error_code(body: bytes) -> str | None:
    """The ``code`` (else ``type``) of an OpenAI-shaped error body."""
    try:
        data = orjson.loads(body[:_MAX_ERROR_BODY])
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or error.get("type")
    return str(code)[:64] if code else None
