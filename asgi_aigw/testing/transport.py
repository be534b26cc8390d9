"""An httpx transport that calls an ASGI app in process and streams its answer.

``httpx.ASGITransport`` collects the whole body before returning (httpx #2186), which hides streaming
bugs and makes a slow fake stream look like a slow first byte. This one returns as soon as the app
sends ``http.response.start`` and yields each body message as it is sent; closing the response early
sends ``http.disconnect`` to the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from ..kernel.types import ASGIApp, Message

_END = object()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, queue: asyncio.Queue[object], task: asyncio.Task[None], disconnected: asyncio.Event):
        self._queue = queue
        self._task = task
        self._disconnected = disconnected
        self._finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._finished:
            message = await self._queue.get()
            if message is _END:
                self._finished = True
                if self._task.done() and self._task.exception() is not None:
                    raise httpx.ReadError("The ASGI app failed mid-response.") from self._task.exception()
                return
            assert isinstance(message, dict)
            if message["type"] != "http.response.body":
                continue
            if not message.get("more_body", False):
                self._finished = True
            body = message.get("body", b"")
            if body:
                yield body

    async def aclose(self) -> None:
        self._disconnected.set()
        if not self._task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        if not self._task.done():
            self._task.cancel()


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Call ``app`` in process; the response streams as the app sends it."""

    def __init__(
        self, app: ASGIApp, *, client: tuple[str, int] = ("127.0.0.1", 50000), root_path: str = ""
    ) -> None:
        self.app = app
        self.client = client
        self.root_path = root_path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "root_path": self.root_path,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": self.client,
            "server": (request.url.host, request.url.port or (443 if request.url.scheme == "https" else 80)),
        }
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
                await self.app(scope, receive, send)
            finally:
                queue.put_nowait(_END)

        task = asyncio.create_task(run())
        start = await queue.get()
        if start is _END:
            await task  # re-raises the app's exception, if any
            raise httpx.RemoteProtocolError("The ASGI app returned without sending a response.")
        assert isinstance(start, dict)
        assert start["type"] == "http.response.start"
        return httpx.Response(
            status_code=start["status"],
            headers=[(bytes(k), bytes(v)) for k, v in start.get("headers", [])],
            stream=_ResponseStream(queue, task, disconnected),
            request=request,
        )
