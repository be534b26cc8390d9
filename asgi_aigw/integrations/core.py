"""The framework-neutral core: run one gateway request through the stack as a given identity.

A framework adapter (Django view, FastAPI route) reads its own request, asks the host app who is calling
and hands both to :class:`GatewayEndpoint`. The endpoint builds a fresh ASGI scope carrying that identity
in the request context (``source="app"``), runs the stack in a task and returns as soon as the status
line is sent; the body is an async iterator of the chunks as the stack sends them, never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..kernel.body import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES
from ..kernel.context import Identity, ensure_context, set_identity
from ..kernel.errors import GatewayError, RequestTooLarge, Unauthorized
from ..kernel.lifespan import serve_lifespan
from ..kernel.types import ASGIApp, Message, Receive, Scope, Send

#: What the host app's identity callable may return: an :class:`Identity`, a bare tenant id, or
#: ``None`` for "nobody is logged in" (answered 401).
IdentityResult = Identity | str | None

_END = object()

#: Response headers a framework sets itself; copying them would duplicate or contradict its own.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})


def as_identity(value: IdentityResult) -> Identity | None:
    """Normalise what an identity callable returned (a bare string names a tenant)."""
    if value is None or isinstance(value, Identity):
        return value
    if isinstance(value, str) and value:
        return Identity(tenant=value)
    raise TypeError(f"an identity callable must return Identity, str or None, not {type(value).__name__}")


def not_logged_in() -> GatewayError:
    return Unauthorized(
        "Log in first: this gateway serves the users the app has authenticated.", code="not_authenticated"
    )


@dataclass(slots=True)
class GatewayRequest:
    """One request as a framework received it. ``path`` is the full path and ``root_path`` the part of
    it where the gateway is mounted (``/ai``), Starlette's convention."""

    method: str
    path: str
    root_path: str = ""
    query_string: bytes = b""
    headers: Sequence[tuple[bytes, bytes]] = ()
    body: bytes = b""
    scheme: str = "http"
    client: tuple[str, int] | None = None
    server: tuple[str, int | None] | None = None
    http_version: str = "1.1"

    def scope(self) -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.http_version,
            "method": self.method.upper(),
            "scheme": self.scheme,
            "path": self.path,
            "raw_path": self.path.encode("utf-8"),
            "query_string": self.query_string,
            "root_path": self.root_path,
            "headers": [(k.lower(), v) for k, v in self.headers],
            "client": self.client,
            "server": self.server,
            # a fresh per-request state: the gateway's context goes here, not into the framework's
            "state": {},
        }


@dataclass(slots=True)
class GatewayResponse:
    """The stack's answer: status and headers as soon as they are sent, then the body as it comes.

    Iterate :meth:`chunks` once; closing it early (the client left) tells the stack with
    ``http.disconnect``, which cancels the upstream call.
    """

    status: int
    headers: list[tuple[bytes, bytes]]
    _queue: asyncio.Queue[object] = field(repr=False)
    _task: asyncio.Task[None] = field(repr=False)
    _disconnected: asyncio.Event = field(repr=False)
    _finished: bool = False

    def header(self, name: str) -> str | None:
        key = name.lower().encode("latin-1")
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    @property
    def streaming(self) -> bool:
        """True unless the stack declared the body's length (a one-shot JSON answer)."""
        return self.header("content-length") is None

    def forward_headers(self) -> list[tuple[str, str]]:
        """The headers a framework response should carry (without the hop-by-hop ones it sets)."""
        return [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in self.headers
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while not self._finished:
                message = await self._queue.get()
                if message is _END:
                    self._finished = True
                    error = self._task.exception() if self._task.done() else None
                    if error is not None:
                        raise RuntimeError("The gateway stack failed mid-response.") from error
                    return
                assert isinstance(message, dict)
                if message["type"] != "http.response.body":
                    continue
                if not message.get("more_body", False):
                    self._finished = True
                body = message.get("body", b"")
                if body:
                    yield body
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def aclose(self) -> None:
        """Stop the request: a finished one is left to end, an unfinished one is told the client left."""
        if not self._finished:
            self._disconnected.set()
        if not self._task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        if not self._task.done():
            self._task.cancel()


async def run_asgi(app: ASGIApp, scope: Scope, body: bytes) -> GatewayResponse:
    """Call ``app`` with a one-shot request ``body``; return once it sent ``http.response.start``."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    disconnected = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if disconnected.is_set():
            raise OSError("client disconnected")
        queue.put_nowait(message)

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            queue.put_nowait(_END)

    task = asyncio.create_task(run())
    start = await queue.get()
    if start is _END:
        await task  # re-raises the app's exception, if any
        raise RuntimeError("The gateway stack returned without sending a response.")
    assert isinstance(start, dict)
    assert start["type"] == "http.response.start"
    headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]
    return GatewayResponse(start["status"], headers, queue, task, disconnected)


def error_response(exc: GatewayError) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of an OpenAI-shaped error, for an adapter to send in its own type."""
    return exc.status, [("content-type", "application/json"), *exc.headers], exc.to_json()


class GatewayEndpoint:
    """The gateway stack (``asgi_aigw.build_stack``) served by a framework's own router.

    ``max_body_bytes`` bounds what an adapter reads before the stack sees it (413 beyond), and
    ``body_timeout`` how long it waits for the whole body (408 beyond).
    """

    def __init__(
        self,
        stack: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.stack = stack
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def handle(self, request: GatewayRequest, identity: Identity) -> GatewayResponse:
        """Run ``request`` through the stack as ``identity``, set before the first layer runs."""
        scope, ctx = ensure_context(request.scope())
        set_identity(ctx, identity, "app")
        return await run_asgi(self.stack, scope, request.body)

    def too_large(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"The request body is larger than {self.max_body_bytes} bytes; send a smaller request."
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, *_: Any) -> AsyncIterator[None]:
        """Start and stop the stack with the host app (``FastAPI(lifespan=endpoint.lifespan)``): at
        exit the request log is flushed and the upstream clients are closed. Optional: without it,
        everything starts on first use and flushes at process exit."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        answers: asyncio.Queue[Message] = asyncio.Queue()
        queue.put_nowait({"type": "lifespan.startup"})

        async def send(message: Message) -> None:
            answers.put_nowait(message)

        async def run() -> None:
            await self.stack({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send)

        task = asyncio.create_task(run())
        answer = asyncio.ensure_future(answers.get())
        # a stack that raises instead of answering must not leave the app waiting forever
        await asyncio.wait({answer, task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            task.result()  # re-raises the stack's exception
            raise RuntimeError("the gateway stack ended its lifespan without starting")
        started = answer.result()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the gateway stack failed to start: {started.get('message', '')}")
        try:
            yield
        finally:
            queue.put_nowait({"type": "lifespan.shutdown"})
            await task


class WithGatewayLifespan:
    """``app`` (one that speaks no lifespan: Django) with the gateway's lifespan answered around it.

    Served from a framework's URLconf, the gateway has no ASGI layer of its own in front of the app, so
    nothing would close it when the server stops: the request log would rely on the process's exit
    hook, which a SIGTERM re-raised by uvicorn after its graceful shutdown skips. Wrapped, the server's
    ``lifespan.shutdown`` flushes the log and closes the upstream clients first::

        application = WithGatewayLifespan(get_asgi_application(), endpoint)
    """

    def __init__(self, app: ASGIApp, *endpoints: GatewayEndpoint) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        stack = contextlib.AsyncExitStack()

        async def start() -> None:
            for endpoint in self.endpoints:
                await stack.enter_async_context(endpoint.lifespan())

        await serve_lifespan(receive, send, on_startup=start, on_shutdown=stack.aclose)
