"""A client that sends headers and part of a body and then stalls gets 408 and loses the connection,
whichever layer reads the body first; on a real uvicorn, through a raw socket."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from asgi_aigw.app import build_app
from asgi_aigw.budget import BudgetMiddleware
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.kernel.types import ASGIApp, Message, Receive, Scope, Send
from asgi_aigw.redact import RedactMiddleware
from asgi_aigw.redact.config import RedactConfig
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.testing.server import ServerThread

from .support import FAKE_URL, fake_config

BODY = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]})
TIMEOUT = 0.5


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200 with the body it was given (what a layer replays)."""
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"".join(chunks)})


def _router(timeout: float = TIMEOUT) -> ASGIApp:
    config = fake_config().router.model_copy(update={"body_timeout": timeout})
    return ProviderRouter(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})


LAYERS: dict[str, Callable[[], ASGIApp]] = {
    "router": _router,
    "budget": lambda: BudgetMiddleware(
        echo_app, config=BudgetConfig(store="memory://", limits=Limits(), body_timeout=TIMEOUT)
    ),
    "redact": lambda: RedactMiddleware(echo_app, config=RedactConfig(regex_only=True, body_timeout=TIMEOUT)),
    "cache": lambda: SemanticCacheMiddleware(
        echo_app, config=CacheConfig(store="memory://", vector_store=None, body_timeout=TIMEOUT)
    ),
    # the whole stack: the budget layer reads first, under the router's setting
    "stack": lambda: build_app(
        fake_config().model_copy(
            update={
                "router": fake_config().router.model_copy(update={"body_timeout": TIMEOUT}),
                "budget": BudgetConfig(store="memory://", limits=Limits()),
                "redact": RedactConfig(regex_only=True),
            }
        ),
        transports={FAKE_URL: StreamingASGITransport(FakeProvider())},
        env={},
    ),
}


class Raw:
    """A raw HTTP/1.1 client socket to a server, to send a request in pieces."""

    def __init__(self, port: int, path: str, length: int) -> None:
        # generous: the first answer of a whole stack loads the tokenizer and the redaction patterns
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the answer (raises ``TimeoutError`` if none comes)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed without an answer: {data!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(headers.get("content-length", "0")):
            body += self.sock.recv(65536)
        return int(lines[0].split()[1]), headers, body

    def closed_by_server(self) -> bool:
        self.sock.settimeout(5)
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Any:
    started: list[ServerThread] = []

    def start(app: ASGIApp) -> ServerThread:
        thread = ServerThread(app)
        thread.start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()


def _path(layer: str) -> str:
    return "/ai/v1/chat/completions" if layer == "stack" else "/v1/chat/completions"


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_stalled_body_gets_408_and_the_connection_is_closed(layer: str, server: Any) -> None:
    thread = server(LAYERS[layer]())
    client = Raw(thread.port, _path(layer), len(BODY))
    try:
        client.sock.sendall(BODY[: len(BODY) // 2])  # half the body, then nothing
        started = time.monotonic()
        status, headers, body = client.response()
        waited = time.monotonic() - started
        assert status == 408
        error = orjson.loads(body)["error"]
        assert error["code"] == "request_timeout"
        assert error["type"] == "invalid_request_error"
        assert "body_timeout" in error["message"]
        assert TIMEOUT * 0.9 <= waited < TIMEOUT + 2
        assert headers.get("connection") == "close"
        assert client.closed_by_server()
    finally:
        client.close()


def test_a_trickled_body_is_bounded_as_a_whole(server: Any) -> None:
    """One byte every 0.1 s never leaves a gap of TIMEOUT, but the whole body takes far longer."""
    thread = server(_router())
    client = Raw(thread.port, "/v1/chat/completions", len(BODY))
    try:
        started = time.monotonic()
        client.sock.settimeout(0.1)
        sent = 0
        answer = b""
        while sent < len(BODY) and time.monotonic() - started < 5:
            try:
                client.sock.sendall(BODY[sent : sent + 1])
            except OSError:
                break  # the server answered and closed
            sent += 1
            try:
                answer += client.sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert sent < len(BODY)
        assert time.monotonic() - started < TIMEOUT + 2
    finally:
        client.close()


@pytest.mark.parametrize("layer", ["router", "stack"])
def test_a_body_that_arrives_in_time_is_served(layer: str, server: Any) -> None:
    thread = server(LAYERS[layer]())
    client = Raw(thread.port, _path(layer), len(BODY))
    try:
        client.sock.sendall(BODY[:10])
        time.sleep(TIMEOUT / 3)
        client.sock.sendall(BODY[10:])
        status, _, body = client.response()
        assert status == 200, body
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "Echo: Hello there"
    finally:
        client.close()


def test_the_timeout_is_configurable_and_defaults_to_30_seconds() -> None:
    assert RouterConfig().body_timeout == 30.0
    assert BudgetConfig().body_timeout == 30.0
    assert CacheConfig().body_timeout == 30.0
    assert RedactConfig().body_timeout == 30.0
    assert RouterConfig(body_timeout=2.5).body_timeout == 2.5
    with pytest.raises(ValueError, match="greater than 0"):
        RouterConfig(body_timeout=0)


async def test_over_http2_the_408_carries_no_connection_header() -> None:
    """HTTP/2 forbids connection-specific headers (servers refuse to send them)."""
    sent: list[Message] = []

    async def stall() -> Message:
        await asyncio.sleep(5)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    app = _router(0.1)
    scope = {
        "type": "http",
        "http_version": "2",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [],
    }
    await app(scope, stall, send)
    assert sent[0]["status"] == 408
    assert all(name != b"connection" for name, _ in sent[0]["headers"])


def test_a_stalled_body_through_the_fastapi_route_gets_408(server: Any) -> None:
    """The framework adapters read the body themselves, before the stack: the same time limit holds."""
    from fastapi import FastAPI

    from asgi_aigw import build_stack
    from asgi_aigw.integrations import GatewayEndpoint, Identity
    from asgi_aigw.integrations.fastapi import gateway_router

    stack = build_stack(fake_config(), transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})
    app = FastAPI()
    endpoint = GatewayEndpoint(stack, body_timeout=TIMEOUT)
    app.include_router(gateway_router(endpoint, identity=lambda: Identity(tenant="t")), prefix="/ai")
    thread = server(app)
    client = Raw(thread.port, "/ai/v1/chat/completions", len(BODY))
    try:
        client.sock.sendall(BODY[: len(BODY) // 2])
        started = time.monotonic()
        status, headers, body = client.response()
        assert status == 408
        assert orjson.loads(body)["error"]["code"] == "request_timeout"
        assert headers.get("connection") == "close"
        assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 2
        assert client.closed_by_server()
    finally:
        client.close()
