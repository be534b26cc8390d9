"""The lean upstream client against a raw HTTP/1.1 server whose every byte the test writes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from asgi_aigw.kernel.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from asgi_aigw.providers.base import Deployment, Timeout
from asgi_aigw.router.lean_http import InvalidHeader, LeanClient, LeanResponse
from asgi_aigw.router.upstream import mapped_transport_errors

pytest.importorskip("httptools")

Handler = Callable[["RawServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[..., Awaitable[tuple["RawServer", str, LeanClient]]]
FAST = Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


class RawServer:
    """A loopback server answering each request with the handler's bytes; counts its connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(self, reader, writer)
        finally:
            writer.close()
            self.closed.set()

    async def start(self, context: ssl.SSLContext | None = None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if context else 'http'}://127.0.0.1:{port}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            return None
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


async def _json_answers(
    server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Keep-alive: answer every request on the connection."""
    while True:
        try:
            if await server.read_request(reader) is None:
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        body = b'{"ok": true}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Two: a\r\nX-Two: b\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


@pytest.fixture
async def served() -> AsyncIterator[Serve]:
    """Start a server with a handler, and a lean client of ``connections`` to it (closed at the end)."""
    servers: list[RawServer] = []
    clients: list[LeanClient] = []

    async def start(handler: Handler, connections: int = 4) -> tuple[RawServer, str, LeanClient]:
        server = RawServer(handler)
        servers.append(server)
        origin = await server.start()
        clients.append(LeanClient(origin, connections))
        return server, origin, clients[-1]

    yield start
    for client in clients:
        await client.aclose()
    for server in servers:
        assert server.server is not None
        server.server.close()


async def _send(client: LeanClient, origin: str, path: str, limits: Timeout = FAST) -> LeanResponse:
    """An empty POST to ``path``: the answer, its body unread."""
    return await client.send(
        client.build_request("POST", f"{origin}{path}", headers={}, content=b"", timeout=limits)
    )


async def _post_to(client: LeanClient, url: str) -> tuple[int, bytes]:
    response = await client.send(client.build_request("POST", url, headers={}, content=b"", timeout=FAST))
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


async def _post(
    client: LeanClient, origin: str, body: bytes = b"{}", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = client.build_request(
        "POST", f"{origin}/v1/chat/completions", headers={"content-type": "application/json", **(headers or {})},
        content=body, timeout=FAST,
    )  # fmt: skip
    response = await client.send(request)
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


async def test_answers_are_read_and_the_connection_kept_for_the_next_request(served: Serve) -> None:
    server, origin, client = await served(_json_answers)
    for n in range(3):
        assert await _post(client, origin, b'{"n": %d}' % n) == (200, b'{"ok": true}')
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"content-type: application/json\r\n" in first
    assert b"Accept-Encoding: identity\r\n" in first
    assert first.endswith(b'Content-Length: 8\r\n\r\n{"n": 0}')


async def test_headers_are_read_by_any_case_and_repeats_kept_in_order(served: Serve) -> None:
    _server, origin, client = await served(_json_answers)
    request = client.build_request("POST", f"{origin}/x", headers={}, content=b"", timeout=FAST)
    response = await client.send(request)
    assert response.headers["content-type"] == response.headers.get("CONTENT-TYPE") == "application/json"
    assert [v for k, v in response.headers.items() if k.lower() == "x-two"] == ["a", "b"]
    await response.aread()
    await response.aclose()


async def test_a_stream_is_handed_on_as_it_arrives(served: Serve) -> None:
    go_on = asyncio.Event()

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(b"d\r\ndata: first\n\n\r\n")
        await writer.drain()
        await go_on.wait()  # the second event only once the first was read
        writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    _server, origin, client = await served(handler)
    response = await _send(client, origin, "/s")
    chunks = []
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        go_on.set()
    await response.aclose()
    assert chunks == [b"data: first\n\n", b"data: second\n\n"]


async def test_an_answer_left_before_its_end_closes_its_connection(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # until the client goes away

    server, origin, client = await served(handler)
    response = await _send(client, origin, "/s")
    async for _ in response.aiter_bytes():
        break
    await response.aclose()
    await asyncio.wait_for(server.closed.wait(), 2)  # the upstream saw the client leave
    assert client._idle == []


async def test_an_answer_without_a_length_ends_with_its_connection(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")

    _server, origin, client = await served(handler)
    assert await _post(client, origin) == (200, b"all of it")
    assert client._idle == []  # not reused: the upstream closed it


async def _mapped(call: Awaitable[object]) -> BaseException:
    deployment = Deployment(
        id="d", provider="openai", model="m", base_url="http://127.0.0.1:1", api_key="sk-test-fake"
    )
    with pytest.raises(Exception) as caught, mapped_transport_errors(deployment):
        await call
    return caught.value


async def test_a_transports_own_os_error_is_an_unreachable_upstream_and_other_errors_pass() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")  # a transport that maps nothing

    error = await _mapped(refused())
    assert isinstance(error, UpstreamUnavailable)
    assert str(error) == "Could not reach openai: Connection refused"
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert "sk-test-fake" not in str(error)

    async def bug() -> None:
        raise KeyError("not a transport's")

    passed = await _mapped(bug())
    assert isinstance(passed, KeyError)  # the app's own failures are not the upstream's
    assert passed.__cause__ is None


async def test_an_upstream_that_breaks_off_is_a_broken_answer(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")

    _server, origin, client = await served(handler)
    error = await _mapped(_post(client, origin))
    assert isinstance(error, UpstreamError)
    assert "closed the connection" in str(error)


async def test_a_garbled_answer_is_a_broken_answer(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await reader.read()

    _server, origin, client = await served(handler)
    assert isinstance(await _mapped(_post(client, origin)), UpstreamError)


async def test_an_upstream_that_does_not_answer_times_out(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await reader.read()

    _server, origin, client = await served(handler)
    quick = Timeout(connect=2.0, read=0.2, write=2.0, pool=2.0)
    request = client.build_request("POST", f"{origin}/x", headers={}, content=b"", timeout=quick)
    assert isinstance(await _mapped(client.send(request)), UpstreamTimeout)


async def test_no_server_is_a_connection_failure() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    origin = f"http://127.0.0.1:{port}"
    client = LeanClient(origin, 4)
    try:
        error = await _mapped(_post(client, origin))
        assert isinstance(error, UpstreamUnavailable)
        assert "Could not connect" in str(error)
    finally:
        await client.aclose()


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(served: Serve) -> None:
    server, origin, client = await served(_json_answers)
    with pytest.raises(InvalidHeader):
        client.build_request("POST", f"{origin}/x", headers={"x-a": "1\r\nx-b: 2"}, content=b"", timeout=FAST)
    assert server.connections == 0


async def test_the_caller_s_user_agent_and_encoding_replace_the_defaults(served: Serve) -> None:
    server, origin, client = await served(_json_answers)
    await _post(client, origin, headers={"User-Agent": "mine/1"})
    request = server.requests[0]
    assert request.count(b"ser-Agent") == 1
    assert b"User-Agent: mine/1\r\n" in request
    assert b"Accept-Encoding: identity\r\n" in request


async def test_requests_past_the_pool_wait_for_a_connection_and_time_out(served: Serve) -> None:
    release = asyncio.Event()

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    server, origin, client = await served(handler, 1)
    first = asyncio.create_task(_post(client, origin))
    await asyncio.sleep(0.05)
    short = Timeout(connect=2.0, read=2.0, write=2.0, pool=0.1)
    request = client.build_request("POST", f"{origin}/x", headers={}, content=b"", timeout=short)
    assert isinstance(await _mapped(client.send(request)), UpstreamTimeout)
    release.set()
    assert await first == (200, b"ok")
    assert server.connections == 1  # the second request never opened one of its own


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting only it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_upstreams_are_verified(tmp_path: Path) -> None:
    server_context, client_context = _self_signed(tmp_path)
    server = RawServer(_json_answers)
    origin = await server.start(server_context)
    try:
        trusting = LeanClient(origin, 4, ssl_context=client_context)
        try:
            assert await _post(trusting, origin) == (200, b'{"ok": true}')
        finally:
            await trusting.aclose()
        # the system's roots do not know this certificate: no answer is read from it
        default = LeanClient(origin, 4)
        try:
            assert isinstance(await _mapped(_post(default, origin)), UpstreamUnavailable)
        finally:
            await default.aclose()
    finally:
        assert server.server is not None
        server.server.close()


def test_the_default_router_never_imports_aiohttp() -> None:
    """The lean client is the default: a worker does not pay for aiohttp (nor its errors' import)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio, socket, sys
        from asgi_aigw import build_app
        from asgi_aigw.config import GatewayConfig
        from asgi_aigw.testing.raw_asgi import post

        probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
        config = GatewayConfig.model_validate({"router": {"models": [{"name": "m", "deployments": [
            {"provider": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1",
             "api_key": "sk-test-fake"}]}], "retry": {"retries": 0}}})
        app = build_app(config, env={})
        body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
        status, _ = asyncio.run(post(app, "/ai/v1/chat/completions", body, []))
        print(status, "aiohttp" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["503", "False"], done.stderr[-2000:]  # 503: nothing to connect to


async def test_an_api_key_with_a_newline_is_a_clear_502_not_a_crash() -> None:
    import orjson

    from asgi_aigw import build_app
    from asgi_aigw.config import GatewayConfig
    from asgi_aigw.testing.raw_asgi import post

    deployment = {
        "provider": "openai",
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-test-fake\n",
    }
    config = GatewayConfig.model_validate(
        {"router": {"models": [{"name": "m", "deployments": [deployment]}], "retry": {"retries": 0}}}
    )
    app = build_app(config, env={})
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    status, raw = await post(app, "/ai/v1/chat/completions", body, [])
    assert status == 502
    message = orjson.loads(raw)["error"]["message"]
    assert "header holds a line break" in message
    assert "sk-test-fake" not in message


@pytest.mark.parametrize("transport", ["lean", "aiohttp", "httpx"])
@pytest.mark.parametrize("stream", [False, True])
async def test_every_transport_relays_the_same_answer(transport: str, stream: bool) -> None:
    """The router over each of its clients, to FakeProvider served over HTTP: the same answer."""
    import orjson

    from asgi_aigw.router import ProviderRouter
    from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
    from asgi_aigw.testing import FakeProvider, serve
    from asgi_aigw.testing.raw_asgi import post

    with serve(FakeProvider()) as upstream:
        deployment = DeploymentConfig(model="gpt-4o-mini", base_url=f"{upstream}/v1", api_key="sk-test-fake")  # type: ignore[arg-type]
        config = RouterConfig(
            models=[ModelConfig(name="m", deployments=[deployment])],
            retry=RetryConfig(retries=0),
            transport=transport,  # type: ignore[arg-type]
        )
        router = ProviderRouter(config, env={})
        try:
            body = {"model": "m", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream}
            answers = [await post(router, "/v1/chat/completions", orjson.dumps(body)) for _ in range(2)]
        finally:
            await router.aclose()
    assert [status for status, _ in answers] == [200, 200]
    raw = answers[1][1]
    if stream:
        assert raw.startswith(b"data: {")
        assert raw.rstrip().endswith(b"data: [DONE]")
    else:
        assert orjson.loads(raw)["choices"][0]["message"]["content"]


async def test_a_connection_idle_past_the_keepalive_is_not_reused(
    served: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asgi_aigw.router.lean_http as lean_http

    server, origin, client = await served(_json_answers)
    assert await _post(client, origin) == (200, b'{"ok": true}')
    assert await _post(client, origin) == (200, b'{"ok": true}')
    assert server.connections == 1  # reused while fresh
    monkeypatch.setattr(lean_http, "KEEPALIVE_SECONDS", 0.0)
    await asyncio.sleep(0.01)
    assert await _post(client, origin) == (200, b'{"ok": true}')
    assert server.connections == 2  # the idle one was closed, a new one opened


async def test_an_interim_answer_is_skipped_for_the_real_one(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Real: yes\r\n\r\nreal")
        await writer.drain()
        await reader.read()

    _server, origin, client = await served(handler)
    response = await _send(client, origin, "/x")
    assert response.status_code == 200
    assert response.headers.get("x-real") == "yes"
    assert "link" not in response.headers
    assert await response.aread() == b"real"
    await response.aclose()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_larger_than_the_read_buffer_is_read_whole(
    served: Serve, chunked: bool, streamed: bool
) -> None:
    """Past HIGH_WATER bytes not yet taken the connection stops reading; reading the answer whole
    takes them as they come, so it never waits for itself."""
    from asgi_aigw.router.lean_http import HIGH_WATER

    body = bytes(range(256)) * (HIGH_WATER // 64)  # four times the buffer

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(body), 65536):
                part = body[start : start + 65536]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await reader.read()

    _server, origin, client = await served(handler)
    if not streamed:
        assert await asyncio.wait_for(_post(client, origin), 5) == (200, body)
        return
    response = await _send(client, origin, "/s")  # read as a stream is: a chunk at a time

    async def chunks() -> bytes:
        return b"".join([chunk async for chunk in response.aiter_bytes()])

    assert await asyncio.wait_for(chunks(), 5) == body
    await response.aclose()


async def test_an_answer_dropped_unclosed_gives_its_connection_slot_back(served: Serve) -> None:
    server, origin, client = await served(_json_answers, 1)
    response = await _send(client, origin, "/x")
    assert response.status_code == 200
    del response  # never read nor closed
    short = Timeout(connect=2.0, read=2.0, write=2.0, pool=0.5)
    request = client.build_request("POST", f"{origin}/x", headers={}, content=b"", timeout=short)
    again = await client.send(request)  # the one slot is free again
    assert await again.aread() == b'{"ok": true}'
    await again.aclose()
    assert server.connections == 2  # the dropped answer's connection was closed, not reused


async def test_an_endless_header_block_is_cut_off(served: Serve) -> None:
    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError):
            for n in range(100_000):  # 10 MB of headers, never ending the head
                writer.write(b"X-Filler-%d: %s\r\n" % (n, b"a" * 90))
                await writer.drain()

    _server, origin, client = await served(handler)
    error = await _mapped(asyncio.wait_for(_post(client, origin), 10))
    assert isinstance(error, UpstreamError)
    assert "header block" in str(error.__cause__)


async def test_nothing_in_the_url_can_end_the_request_line(served: Serve) -> None:
    """A model name in the path (Gemini's) with a space or non-ASCII is percent-encoded, a line break
    dropped (as ``urlsplit`` and yarl drop it); escapes already made are kept."""
    server, origin, client = await served(_json_answers)
    path = "/v1beta/models/gemini pro\r\nX-Injected: 1:generateContent?alt=sse&q=caf%C3%A9é"
    assert await _post_to(client, f"{origin}{path}") == (200, b'{"ok": true}')
    head = server.requests[0].split(b"\r\n")
    assert head[0] == (
        b"POST /v1beta/models/gemini%20proX-Injected:%201:generateContent?alt=sse&q=caf%C3%A9%C3%A9 HTTP/1.1"
    )
    assert not any(line.lower().startswith(b"x-injected") for line in head)


async def test_a_request_cancelled_while_it_waits_gives_its_connection_slot_back(served: Serve) -> None:
    """A deadline (the router's first-byte timeout) or a client gone cancels a send waiting for the
    answer's head: its connection is closed and its place in the pool is free again."""
    answer = asyncio.Event()

    async def handler(server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):  # the client left
            while await server.read_request(reader) is not None:
                await answer.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()

    server, origin, client = await served(handler, 1)
    waiting = asyncio.create_task(_send(client, origin, "/x"))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    answer.set()
    short = Timeout(connect=2.0, read=2.0, write=2.0, pool=0.5)
    response = await _send(client, origin, "/x", short)  # the one slot is free
    assert await response.aread() == b"ok"
    await response.aclose()
    assert server.connections == 2  # the cancelled request's connection was not reused
