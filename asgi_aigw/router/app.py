"""ProviderRouter: an ASGI app serving the OpenAI API (chat completions, the Responses API, embeddings,
models) and Anthropic's Messages API, routed to providers by model name."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx
import orjson

from ..hooks import Hooks
from ..hooks.run import HOOK_RUN, HOOKED_ROUTES, HookRun, report_failure
from ..kernel.body import ClientDisconnect, JSONBody, read_json
from ..kernel.context import RequestContext, ensure_context
from ..kernel.dialects import DIALECTS, dialect_for
from ..kernel.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
    send_error,
    sse_error_event,
)
from ..kernel.http import send_json_bytes
from ..kernel.lifespan import run_hook, serve_lifespan
from ..kernel.models import ChatCompletionRequest, EmbeddingRequest
from ..kernel.routes import route_path
from ..kernel.tracing import AttemptSpan, AttemptTracer
from ..kernel.types import ASGIApp, Headers, Message, Receive, Scope, Send
from ..providers import ADAPTERS, Deployment, ProviderAdapter, TranslatedResponse, UpstreamRequest
from .answer import DROPPED_PARAMS, FORWARDED_HEADERS, STREAM_ERROR_EVENT, answer_headers, record
from .anthropic_models import AnthropicModels, is_anthropic_client
from .config import RouterConfig
from .kit import BuildRequest, Deliver, Progress, ReadError, RouteCall, RouteKit
from .messages import MessagesRoutes
from .policy import RoutingPolicy, is_retryable
from .registry import ModelRegistry, ResolvedModel
from .responses import ResponsesRoutes
from .upstream import UpstreamClients, UpstreamResponse, mapped_transport_errors, origin_of

logger = logging.getLogger("asgi_aigw.router")

#: Upstream error bodies are read for their message only; never hold more than this.
_MAX_ERROR_BODY = 64 * 1024

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx and similar proxies buffer responses unless told not to
    (b"x-accel-buffering", b"no"),
]

_ROUTES: dict[str, str] = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
    "/v1/models": "models",
    "/models": "models",
    # Anthropic's routes only under /v1, where its SDKs send them (as kernel.routes classifies them)
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    # OpenAI's Responses API likewise only under /v1
    "/v1/responses": "responses",
}
_METHODS = {
    "chat": "POST",
    "embeddings": "POST",
    "models": "GET",
    "messages": "POST",
    "count_tokens": "POST",
    "responses": "POST",
}


class ProviderRouter:
    """An ASGI app to mount at a sub-path (``/ai``): ``POST /v1/chat/completions``, ``POST /v1/responses``,
    ``POST /v1/embeddings``, ``GET /v1/models`` in OpenAI format (Anthropic's to Anthropic's clients), and
    ``POST /v1/messages`` (with ``/v1/messages/count_tokens``) in Anthropic's, answered by the provider
    each model name routes to.

    ``transports`` maps an upstream base URL to an ``httpx`` transport to use for it (tests, or an
    in-process provider); every other upstream gets a pooled client, opened on first use. ``hooks``
    run before the provider call, after answers, on errors and per streamed event (docs/hooks.md),
    before those ``config.hooks`` names.
    """

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        env: Mapping[str, str] | None = None,
        metrics: ASGIApp | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.config = config or RouterConfig()
        #: Checked here, at start-up: a hook that is not async, or a path that does not import, is a
        #: ConfigError before any request.
        self.hooks = (hooks if hooks is not None else Hooks()) + Hooks.from_config(self.config.hooks)
        self._hooked = bool(self.hooks)
        #: Served at ``GET /metrics`` below the mount point (``asgi_aigw.logs.metrics.metrics_app``).
        self.metrics = metrics
        self.registry = ModelRegistry(self.config, env)
        if prefixes := self.registry.prefix_providers():
            # a cost surprise if unintended: any model of these providers is reachable with our keys
            logger.warning(
                "Provider prefix routing is on: clients may ask for any model named %s, paid with the "
                "gateway's credentials. List the models to serve under router.models, or set "
                "router.provider_prefix_routing: false.",
                ", ".join(f"{p}/*" for p in prefixes),
            )
        self.clients = UpstreamClients(
            transport=self.config.transport,
            max_connections=self.config.max_connections,
            transports=transports,
        )
        #: Retry, backoff and cooldown decisions (cooldown state lives here, per process).
        self.policy = RoutingPolicy(self.config.retry, self.config.cooldown)
        self._max_body = self.config.max_body_bytes
        self._body_timeout = self.config.body_timeout
        self._forward = frozenset(self.config.forward_headers)
        self._created = int(time.time())
        kit = RouteKit(
            registry=self.registry,
            route=self._route,
            read=self._read,
            send_translated=self._send_translated,
            relay_stream=self._relay_stream,
        )
        self._messages = MessagesRoutes(kit)
        self._anthropic_models = AnthropicModels(self.registry)
        self._responses = ResponsesRoutes(kit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await serve_lifespan(receive, send, on_shutdown=self.aclose)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def aclose(self) -> None:
        """Let the hooks still running finish, then close the upstream clients of the running event
        loop (called at lifespan shutdown)."""
        await self.hooks.drain()
        await self.clients.aclose()

    @contextlib.asynccontextmanager
    async def lifespan(self, *_: Any) -> AsyncIterator[None]:
        """For frameworks that do not pass lifespan to mounted apps: ``FastAPI(lifespan=router.lifespan)``."""
        try:
            yield
        finally:
            await run_hook(self.aclose, "closing")

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.metrics is not None and route_path(scope) == "/metrics":
            await self.metrics(scope, receive, send)
            return
        scope, ctx = ensure_context(scope)
        progress = Progress()
        try:
            path = route_path(scope)
            route = _ROUTES.get(path)
            model_id = _model_id(path) if route is None else None
            if model_id is not None:
                route = "models"
            if route is None:
                raise NotFound(
                    f"There is no route {scope.get('method')} {scope.get('path')}. This gateway serves "
                    "POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings, GET /v1/models, "
                    "GET /v1/models/{model}, POST /v1/messages and POST /v1/messages/count_tokens.",
                    code="unknown_route",
                )
            if route in DIALECTS:
                # set before the method check, so a wrong method is refused in the route's shape too
                ctx.route = route
            if scope.get("method") != _METHODS[route]:
                raise MethodNotAllowed(
                    f"Use {_METHODS[route]} for this route, not {scope.get('method')}.",
                    headers=[("allow", _METHODS[route])],
                )
            ctx.route = route
            if forwarded := self._forwarded(scope):
                ctx.extra[FORWARDED_HEADERS] = forwarded
            if route == "models" and is_anthropic_client(scope):
                await self._anthropic_models.serve(scope, send, ctx, model_id)
                return
            if model_id is not None:
                await self._model(send, ctx, model_id)
                return
            if route == "models":
                await self._models(send, ctx)
                return
            scope, receive, body = await read_json(
                scope, receive, limit=self._max_body, time_limit=self._body_timeout
            )
            if self._hooked and route in HOOKED_ROUTES:
                run = HookRun(self.hooks, ctx, route, body)
                ctx.extra[HOOK_RUN] = run
                # in line, before anything is sent upstream: a refusal is answered below like any error
                await run.before(body)
            call = RouteCall(scope, receive, send, ctx, body, progress)
            if route == "chat":
                await self._chat(receive, send, ctx, body, progress)
            elif route == "messages":
                await self._messages.messages(call)
            elif route == "count_tokens":
                await self._messages.count_tokens(call)
            elif route == "responses":
                await self._responses.responses(call)
            else:
                await self._embeddings(receive, send, ctx, body, progress)
        except ClientDisconnect:
            ctx.client_disconnected = True
        except GatewayError as exc:
            await self._send_gateway_error(send, ctx, exc, progress)
        except Exception:
            logger.exception("Unexpected error while handling %s %s", scope.get("method"), scope.get("path"))
            await self._send_gateway_error(
                send, ctx, GatewayError("The gateway failed unexpectedly; see its logs."), progress
            )
        finally:
            # out of the context: the run refers to it, and its after-hooks may outlive this call
            if self._hooked and (started := ctx.extra.pop(HOOK_RUN, None)) is not None:
                started.close()

    def _forwarded(self, scope: Scope) -> dict[str, str]:
        """The client's headers named in ``forward_headers`` (repeated ones joined, as HTTP allows)."""
        if not self._forward:
            return {}
        found: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            name = raw_name.decode("latin-1").lower()
            if name in self._forward:
                value = raw_value.decode("latin-1")
                found[name] = f"{found[name]}, {value}" if name in found else value
        return found

    async def _send_gateway_error(
        self, send: Send, ctx: RequestContext, exc: GatewayError, progress: Progress
    ) -> None:
        ctx.error_code = exc.code
        if progress.finished or ctx.client_disconnected:
            return
        dialect = dialect_for(ctx.route)
        if progress.started:
            # the status line is gone: finish the stream with an error event the SDKs raise
            writer = ctx.extra.get(STREAM_ERROR_EVENT)
            event = writer(exc) if writer is not None else sse_error_event(exc, dialect)
            await send({"type": "http.response.body", "body": event, "more_body": False})
        else:
            ctx.status = exc.status
            await send_error(send, exc, dialect=dialect)
        progress.finished = True
        if self.hooks.on_error:
            run = ctx.extra.get(HOOK_RUN)
            if run is not None:
                run.failed(exc, progress.started)
            elif ctx.route in HOOKED_ROUTES:
                report_failure(self.hooks, ctx, exc, progress.started)

    async def _models(self, send: Send, ctx: RequestContext) -> None:
        data = [
            {"id": model_id, "object": "model", "created": self._created, "owned_by": owner}
            for model_id, owner in self.registry.model_ids()
        ]
        ctx.status = 200
        await send_json_bytes(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _model(self, send: Send, ctx: RequestContext, model_id: str) -> None:
        """OpenAI's retrieve-model answer for a name this gateway routes; a 404 naming what it serves."""
        ctx.model = model_id
        resolved = self.registry.resolve(model_id)
        owner = resolved.deployments[0].provider if resolved.deployments else "asgi-aigw"
        data = {"id": model_id, "object": "model", "created": self._created, "owned_by": owner}
        ctx.status = 200
        await send_json_bytes(send, 200, orjson.dumps(data))

    # -- chat ---------------------------------------------------------------------------------------

    async def _chat(
        self, receive: Receive, send: Send, ctx: RequestContext, body: JSONBody, progress: Progress
    ) -> None:
        request = body.validate(ChatCompletionRequest, "chat completion request")
        ctx.model = request.model
        ctx.stream = bool(request.stream)
        resolved = self.registry.resolve(request.model)
        data = body.data

        def build(deployment: Deployment, adapter: ProviderAdapter) -> UpstreamRequest:
            upstream = adapter.chat_request(deployment, request, data, stream=ctx.stream)
            # per attempt: a fallback to another provider drops other fields
            ctx.extra[DROPPED_PARAMS] = adapter.dropped_params(request, data)
            return upstream

        deliver: Deliver
        if ctx.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)

            async def deliver(
                deployment: Deployment,
                adapter: ProviderAdapter,
                response: UpstreamResponse,
                deadline: float | None,
            ) -> None:
                translator = adapter.chat_stream(deployment, request, include_usage=include_usage)
                await self._relay_stream(send, ctx, deployment, response, translator, progress, deadline)

        else:
            deliver = self._deliver_json(
                send, ctx, progress, lambda d, adapter, content: adapter.chat_response(d, request, content)
            )
        await self._route(receive, ctx, progress, resolved, build, deliver)

    # -- embeddings ---------------------------------------------------------------------------------

    async def _embeddings(
        self, receive: Receive, send: Send, ctx: RequestContext, body: JSONBody, progress: Progress
    ) -> None:
        request = body.validate(EmbeddingRequest, "embeddings request")
        ctx.model = request.model
        resolved = self.registry.resolve(request.model)
        data = body.data

        def build(deployment: Deployment, adapter: ProviderAdapter) -> UpstreamRequest:
            return adapter.embeddings_request(deployment, request, data)

        deliver = self._deliver_json(
            send, ctx, progress, lambda d, adapter, content: adapter.embeddings_response(d, request, content)
        )
        await self._route(receive, ctx, progress, resolved, build, deliver)

    def _deliver_json(
        self,
        send: Send,
        ctx: RequestContext,
        progress: Progress,
        translate: Callable[[Deployment, ProviderAdapter, bytes], TranslatedResponse],
    ) -> Deliver:
        """Deliver a one-shot answer: read it whole, translate it, send it."""

        async def deliver(
            deployment: Deployment, adapter: ProviderAdapter, response: UpstreamResponse, _: float | None
        ) -> None:
            content = await self._read(deployment, response)
            await self._send_translated(
                send, ctx, deployment, translate(deployment, adapter, content), progress
            )

        return deliver

    async def _route(
        self,
        receive: Receive,
        ctx: RequestContext,
        progress: Progress,
        resolved: ResolvedModel,
        build: BuildRequest,
        deliver: Deliver,
        read_error: ReadError | None = None,
    ) -> None:
        """Attempt deployments until one delivers, cancelling everything if the client leaves."""

        async def work() -> None:
            await self._attempt(ctx, resolved, build, deliver, progress, read_error)

        await self._until_disconnect(receive, ctx, progress, work)

    # -- upstream I/O -------------------------------------------------------------------------------

    async def _attempt(
        self,
        ctx: RequestContext,
        resolved: ResolvedModel,
        build: BuildRequest,
        deliver: Deliver,
        progress: Progress,
        read_error: ReadError | None = None,
    ) -> None:
        """Call deployments until one answers and ``deliver`` has sent the answer.

        A failure worth retrying (connect error, timeout, 408/409/425/429/5xx, a stream that broke before
        its first event) moves on to the next attempt the policy allows, as long as nothing has gone to
        the client yet; one log line records each failed attempt.
        """
        attempts = self.policy.plan(resolved)
        deployment = attempts.first()
        tracer = ctx.tracer
        while True:
            adapter = ADAPTERS[deployment.provider]
            ctx.attempts += 1
            span = None if tracer is None else _attempt_span(tracer, ctx.attempts, deployment)
            try:
                response, deadline = await self._send(
                    deployment, adapter, build, ctx.extra.get(FORWARDED_HEADERS), read_error, span
                )
                await deliver(deployment, adapter, response, deadline)
            except GatewayError as exc:
                _scrub(exc, deployment)
                retry = is_retryable(exc) and not progress.started
                step = attempts.after_failure(deployment, exc) if retry else None
                if span is not None:
                    span.end("retried" if step else "failed", error=exc.code)
                if not is_retryable(exc):
                    raise
                if progress.started:
                    attempts.record_failure(deployment)
                    logger.warning(
                        "%s: attempt %d on %s failed after the answer started (%s); not retried",
                        resolved.name,
                        attempts.made,
                        deployment.id,
                        _brief(exc.message),
                    )
                    raise
                if step is None:
                    if attempts.made > 1:
                        _no_client_retry(exc)
                    logger.warning(
                        "%s: attempt %d on %s failed (%s); no attempt left",
                        resolved.name,
                        attempts.made,
                        deployment.id,
                        _brief(exc.message),
                    )
                    raise
                failed, (deployment, delay) = deployment, step
                logger.warning(
                    "%s: attempt %d on %s failed (%s); retrying on %s in %.2fs",
                    resolved.name,
                    attempts.made - 1,
                    failed.id,
                    _brief(exc.message),
                    deployment.id,
                    delay,
                )
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            except BaseException as exc:
                if span is not None:
                    span.end("cancelled" if isinstance(exc, asyncio.CancelledError) else "failed")
                raise
            if span is not None:
                span.end("ok")
            self.policy.succeeded(deployment)
            return

    async def _send(
        self,
        deployment: Deployment,
        adapter: ProviderAdapter,
        build: BuildRequest,
        forwarded: dict[str, str] | None = None,
        read_error: ReadError | None = None,
        span: AttemptSpan | None = None,
    ) -> tuple[UpstreamResponse, float | None]:
        """Send to one deployment; its 2xx response (body unread) and the first chunk's deadline.
        ``forwarded`` client headers go first: the adapter's and the deployment's own win; the
        attempt's trace context (``span``) last."""
        upstream = build(deployment, adapter)
        headers = upstream.headers
        if forwarded:
            # header names are case-insensitive: a deployment's "X-Team" replaces a client's x-team
            own = {name.lower() for name in headers}
            headers = {**{k: v for k, v in forwarded.items() if k not in own}, **headers}
        if span is not None:
            headers = span.inject(headers)
        client = self.clients.get(deployment.base_url)
        request = client.build_request(
            upstream.method,
            upstream.url,
            headers=headers,
            content=upstream.content,
            timeout=deployment.timeout,
        )
        first_byte = deployment.timeout.first_byte
        deadline: float | None = None
        with mapped_transport_errors(deployment):
            if first_byte is None:
                response = await client.send(request)
            else:
                deadline = asyncio.get_running_loop().time() + first_byte
                try:
                    async with asyncio.timeout_at(deadline):
                        response = await client.send(request)
                except TimeoutError:
                    raise _timeout(deployment, "first_byte", first_byte) from None
        if span is not None:
            span.answered(response.status_code)
        if response.status_code >= 300:
            raise await self._upstream_error(deployment, adapter, response, read_error)
        return response, deadline

    async def _upstream_error(
        self,
        deployment: Deployment,
        adapter: ProviderAdapter,
        response: UpstreamResponse,
        read_error: ReadError | None = None,
    ) -> GatewayError:
        content = b""
        try:
            with mapped_transport_errors(deployment):
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > _MAX_ERROR_BODY:
                        break
        except GatewayError:
            pass
        finally:
            await response.aclose()
        headers = {k.lower(): v for k, v in response.headers.items()}
        if read_error is None:
            error = adapter.error(response.status_code, content, headers)
        else:
            error = read_error(deployment, adapter, response.status_code, content, headers)
        return _scrub(error, deployment)

    async def _read(self, deployment: Deployment, response: UpstreamResponse) -> bytes:
        try:
            with mapped_transport_errors(deployment):
                return await response.aread()
        finally:
            await response.aclose()

    async def _send_translated(
        self,
        send: Send,
        ctx: RequestContext,
        deployment: Deployment,
        translated: TranslatedResponse,
        progress: Progress,
    ) -> None:
        record(ctx, deployment, translated.model)
        ctx.usage = translated.usage
        ctx.status = 200
        progress.finished = True
        await send_json_bytes(send, 200, translated.body, answer_headers(ctx))
        if (run := ctx.extra.get(HOOK_RUN)) is not None:
            run.answered(translated.body)

    async def _relay_stream(
        self,
        send: Send,
        ctx: RequestContext,
        deployment: Deployment,
        response: UpstreamResponse,
        translator: Any,
        progress: Progress,
        deadline: float | None = None,
    ) -> None:
        """Forward events as they complete; the status line waits for the first one."""
        record(ctx, deployment, None)
        idle = deployment.timeout.idle
        try:
            with mapped_transport_errors(deployment):
                if deadline is None and idle is None:
                    async for chunk in response.aiter_bytes():
                        events = translator.feed(chunk)
                        if events:
                            if not progress.started:
                                _reported_model(ctx, translator)
                            await self._send_events(send, ctx, events, progress)
                else:
                    await self._relay_timed(send, ctx, deployment, response, translator, progress, deadline)
                tail = translator.close()
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        ctx.usage = translator.usage
        if tail:
            if not progress.started:
                _reported_model(ctx, translator)
            await self._send_events(send, ctx, tail, progress)
        if not translator.done:
            raise UpstreamError(f"{deployment.provider} ended the stream before the answer was complete.")
        progress.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if (run := ctx.extra.get(HOOK_RUN)) is not None:
            run.answered(None)

    async def _relay_timed(
        self,
        send: Send,
        ctx: RequestContext,
        deployment: Deployment,
        response: UpstreamResponse,
        translator: Any,
        progress: Progress,
        deadline: float | None,
    ) -> None:
        """The relay loop with the first chunk due by ``deadline`` and at most ``idle`` between chunks."""
        loop = asyncio.get_running_loop()
        idle = deployment.timeout.idle
        chunks = response.aiter_bytes().__aiter__()
        # the first chunk is due by the first-byte deadline (unset: only ``read`` bounds it); ``idle``
        # bounds the gaps after it
        when = deadline
        which, limit = "first_byte", deployment.timeout.first_byte
        while True:
            try:
                async with asyncio.timeout_at(when):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _timeout(deployment, which, limit) from None
            events = translator.feed(chunk)
            if events:
                if not progress.started:
                    _reported_model(ctx, translator)
                await self._send_events(send, ctx, events, progress)
            # the client's own pace does not count against the upstream's idle allowance
            when = loop.time() + idle if idle is not None else None
            which, limit = "idle", idle

    async def _send_events(
        self, send: Send, ctx: RequestContext, events: list[bytes], progress: Progress
    ) -> None:
        if not progress.started:
            progress.started = True
            ctx.status = 200
            await send({"type": "http.response.start", "status": 200, "headers": _stream_headers(ctx)})
        body = events[0] if len(events) == 1 else b"".join(events)
        await send({"type": "http.response.body", "body": body, "more_body": True})
        if (run := ctx.extra.get(HOOK_RUN)) is not None:
            run.events(events)

    async def _until_disconnect(
        self,
        receive: Receive,
        ctx: RequestContext,
        progress: Progress,
        work: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``work``; if the client disconnects first, cancel it (closing the upstream request).

        Plain asyncio rather than a task group: one watcher task, and errors from ``work`` propagate
        as themselves instead of inside an ExceptionGroup.
        """
        task = asyncio.current_task()
        assert task is not None
        cancelled_by_watcher = False

        async def watch() -> None:
            nonlocal cancelled_by_watcher
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    if not progress.finished:
                        ctx.client_disconnected = True
                        cancelled_by_watcher = True
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await work()
        except asyncio.CancelledError:
            if not cancelled_by_watcher:
                raise
            task.uncancel()
        finally:
            watcher.cancel()


def _model_id(path: str) -> str | None:
    """The model of ``/v1/models/{model}`` (which may hold a slash: ``anthropic/claude-...``)."""
    for prefix in ("/v1/models/", "/models/"):
        if path.startswith(prefix) and len(path) > len(prefix):
            return path[len(prefix) :]
    return None


def _reported_model(ctx: RequestContext, translator: Any) -> None:
    """The model a translated stream announced (Anthropic's message_start, Gemini's modelVersion)."""
    model = getattr(translator, "upstream_model", None)
    if model:
        ctx.upstream_model = model


def _attempt_span(tracer: AttemptTracer, number: int, deployment: Deployment) -> AttemptSpan:
    return tracer.attempt(
        number,
        deployment=deployment.id,
        provider=deployment.provider,
        model=deployment.model,
        address=origin_of(deployment.base_url),
    )


def _brief(message: str, limit: int = 300) -> str:
    """An upstream message for a log line: one line, bounded."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _timeout(deployment: Deployment, which: str, seconds: float | None) -> UpstreamTimeout:
    where = f"{deployment.provider} ({origin_of(deployment.base_url)})"
    return UpstreamTimeout(f"{where} did not answer in time ({which} timeout of {seconds}s).")


def _stream_headers(ctx: RequestContext) -> Headers:
    return _SSE_HEADERS + answer_headers(ctx)


def _no_client_retry(error: GatewayError) -> None:
    """Tell clients not to retry an error the gateway has already retried: the official SDKs obey
    ``x-should-retry`` (else each SDK retry would run the gateway's whole series of attempts again)."""
    # an upstream's Retry-After stays, for clients that pace themselves; the SDKs read this header first
    error.headers = [(k, v) for k, v in error.headers if k.lower() != "x-should-retry"]
    error.headers.append(("x-should-retry", "false"))


def _scrub(error: GatewayError, deployment: Deployment) -> GatewayError:
    """Never echo the deployment's API key back to a client, whatever the upstream put in its message."""
    key = deployment.api_key
    if key and len(key) >= 8 and key in error.message:
        error.message = error.message.replace(key, "[redacted]")
    return error
