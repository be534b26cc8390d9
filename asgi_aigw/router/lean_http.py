"""A lean HTTP/1.1 client for the upstreams: one asyncio protocol per connection, httptools' parser,
keep-alive connections reused last-in first-out, and nothing else.

The router sends one kind of request (a POST or a GET with its body in hand, to a handful of origins)
and reads one kind of answer (JSON, or a stream of server-sent events). aiohttp's client does that and
much more: its request, response, stream, timer and writer objects cost more Python per request than
the rest of a forwarded request's own work (docs/benchmarks.md). This client does only what the router
asks, through the interface of :mod:`.upstream` (``build_request``, ``send``, a response with
``status_code``, ``headers``, ``aiter_bytes``, ``aread``, ``aclose``).

- TLS is asyncio's (``ssl.create_default_context()``: the system's roots, host names checked).
- A connection is reused only once its answer was read to the end and the upstream said keep-alive;
  an answer closed before its end closes its connection (which tells the upstream the client left).
- Timeouts: ``pool + connect`` to open a connection, ``read`` for each wait on the upstream.
- Header names and values with a line break are refused (no header injection).
- No proxy, cookies or redirects, as the aiohttp client is set up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from ..kernel.deadlines import deadline
from ..kernel.errors import UpstreamError
from ..kernel.optional import require
from ..providers.base import Timeout

#: Bytes of an answer read but not yet taken by the router before the connection stops reading.
HIGH_WATER = 256 * 1024
#: Seconds a connection may wait in the pool before it is closed rather than reused (as aiohttp's pool
#: was set up): an upstream closes idle connections after a while of its own, and a request sent on one
#: it is closing fails.
KEEPALIVE_SECONDS = 30.0
#: The most bytes an answer's head (status line and headers, interim answers included) may take.
MAX_HEAD_BYTES = 128 * 1024


class TransportError(Exception):
    """The upstream could not be reached (``connect``), or broke off or garbled its answer."""

    def __init__(self, message: str, *, connect: bool = False) -> None:
        super().__init__(message)
        self.connect = connect


class InvalidHeader(UpstreamError):
    """A header of the upstream request would break its framing (a line break: an API key read from a
    file with its newline, say); 502, naming the header and never its value."""


def _request_line(method: str, url: str) -> bytes:
    """The request line and the host header (without any user part of the URL). ``urlsplit`` drops
    tabs and line breaks (as yarl does); any other character a URL may not hold as it is (a space,
    non-ASCII: a model name in Gemini's path, say) is percent-encoded, so nothing in the URL can end
    the request line or add a header."""
    parts = urlsplit(url)
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_URL_SAFE)
    host = parts.netloc.rpartition("@")[2]
    if not host or any(char <= " " or char == "\x7f" for char in host):
        raise InvalidHeader(f"The upstream URL's host {host!r} is not a host name.")
    return f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n".encode()


#: What a request target keeps as it is: RFC 3986's reserved and unreserved characters, and ``%``
#: (an escape already made is kept).
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


#: Headers every request carries unless the router set them: no compressed answer (nothing here would
#: inflate one), and who is asking.
_DEFAULTS = {"accept-encoding": b"Accept-Encoding: identity\r\n", "user-agent": b"User-Agent: asgi-aigw\r\n"}
_DEFAULT_LENGTHS = frozenset(len(name) for name in _DEFAULTS)


class Headers(Mapping[str, str]):
    """An answer's headers, looked up by any case (a repeated header keeps its last value; the list
    of all pairs is :attr:`pairs`)."""

    __slots__ = ("_by_name", "pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._by_name = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def items(self) -> Any:
        return iter(self.pairs)


class _Request(NamedTuple):
    head: bytes
    content: bytes
    timeout: Timeout


class _Connection(asyncio.Protocol):
    """One connection and the answer being read on it."""

    def __init__(self, parser_type: Any) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = parser_type(self)
        self.closed = False
        self.error: BaseException | None = None
        self.status = 0
        self.header_pairs: list[tuple[str, str]] = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        #: An interim (1xx) answer is being read.
        self.interim = False
        #: Bytes received while the answer's head (status line and headers) was not complete.
        self.head_bytes = 0
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        #: In the pool, between two requests, since ``idle_since`` (monotonic seconds).
        self.idle = False
        self.idle_since = 0.0

    # -- the protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # an answer nobody asked for: the connection cannot be trusted with the next request
            self.close()
            return
        if not self.headers_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                # the parser keeps the head until it ends: an upstream sending an endless one is cut off
                self._fail(TransportError("The upstream's answer has a header block past 128 KiB."))
                self.close()
                return
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools' HttpParserError and kin
            self._fail(TransportError(f"The upstream sent a malformed answer ({exc})."))
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost says the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and self._reads_to_close():
            self.complete = True  # an answer with no length ends where the connection does
            self._wake()
            return
        if not self.complete:
            self._fail(TransportError("The upstream closed the connection before its answer ended."))

    # -- httptools' callbacks -------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # an interim answer (103 Early Hints, an unasked-for 100): the real one follows
            self.interim = True
            self.header_pairs = []
            return
        self.status = status
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        # asked now: once the answer is complete the parser has moved on and always says no
        self.keep_alive = self._parser.should_keep_alive()
        self.complete = True
        self._wake()

    # -- the client's side ----------------------------------------------------------------------------

    def _reads_to_close(self) -> bool:
        names = {name.lower() for name, _ in self.header_pairs}
        return "content-length" not in names and "transfer-encoding" not in names

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Until the parser has something new (or the connection failed), at most ``seconds``."""
        if self.error is not None:
            raise self.error
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        try:
            # the kernel's shared timer, not asyncio.timeout: its context manager alone was about a
            # fifth of a forwarded request's Python
            with deadline(seconds):
                await waiter
        finally:
            self.waiter = None
        if self.error is not None:
            raise self.error

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None

    def reset(self) -> None:
        """Ready for the next request on this connection."""
        self.idle = False
        self.head_bytes = 0
        self.status = 0
        self.header_pairs = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks.clear()
        self.buffered = 0

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanResponse:
    """An answer whose headers have arrived; its body is read with :meth:`aiter_bytes` or :meth:`aread`."""

    __slots__ = ("_client", "_conn", "_read", "_released", "headers", "status_code")

    def __init__(self, client: LeanClient, conn: _Connection, read: float) -> None:
        self._client = client
        self._conn = conn
        self._read = read
        self._released = False
        self.status_code = conn.status
        self.headers = Headers(conn.header_pairs)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.complete:
                return
            else:
                await conn.wait(self._read)

    async def aread(self) -> bytes:
        conn = self._conn
        parts: list[bytes] = []
        while True:
            if conn.chunks:
                # taken as they come: past HIGH_WATER the connection stops reading until they are
                parts.append(conn.take())
            elif conn.complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            else:
                await conn.wait(self._read)

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._client._release(self._conn)

    def __del__(self) -> None:
        # an answer dropped unclosed: its connection is not reused, and its pool slot comes back (else a
        # path that missed aclose would leak one each time until no request could get a connection)
        if not self._released:
            self._released = True
            with contextlib.suppress(Exception):  # an event loop already closed, at exit
                self._conn.close()
                self._client._slots.release()


class LeanClient:
    """Keep-alive connections to one upstream origin (``scheme://host[:port]``)."""

    def __init__(
        self, origin: str, max_connections: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._parser_type = require("httptools", "server").HttpResponseParser
        parts = urlsplit(origin)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._heads: dict[tuple[str, str], bytes] = {}

    def build_request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: bytes, timeout: Timeout
    ) -> _Request:
        start = self._heads.get((method, url))
        if start is None:
            start = _request_line(method, url)
            if len(self._heads) < 1024:
                self._heads[(method, url)] = start
        lines = [start]
        defaults = _DEFAULTS
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise InvalidHeader(
                    f"The upstream request's {name} header holds a line break: check the deployment's "
                    "api_key and headers."
                )
            if len(name) in _DEFAULT_LENGTHS and name.lower() in defaults:
                defaults = {k: v for k, v in defaults.items() if k != name.lower()}
            lines.append(f"{name}: {value}\r\n".encode())
        lines.extend(defaults.values())
        lines.append(b"Content-Length: %d\r\n\r\n" % len(content))
        return _Request(b"".join(lines), content, timeout)

    async def send(self, request: _Request) -> LeanResponse:
        timeout = request.timeout
        conn = await self._connection(timeout)
        try:
            assert conn.transport is not None
            if len(request.content) < 65536:
                conn.transport.write(request.head + request.content)  # one packet for most requests
            else:
                conn.transport.writelines((request.head, request.content))
            while not conn.headers_done:
                await conn.wait(timeout.read)
        except BaseException:
            conn.close()
            self._slots.release()
            raise
        return LeanResponse(self, conn, timeout.read)

    async def _connection(self, limits: Timeout) -> _Connection:
        if self._slots.locked():
            try:
                with deadline(limits.pool):
                    await self._slots.acquire()
            except TimeoutError:
                raise TimeoutError("No upstream connection was free in time.") from None
        else:
            await self._slots.acquire()  # free: returns at once
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since > KEEPALIVE_SECONDS:
                conn.close()  # the upstream may be closing it right now: a request sent on it would be lost
            elif not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reset()
                return conn
        loop = asyncio.get_running_loop()
        try:
            with deadline(limits.connect):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._parser_type),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._tls else None,
                )
        except TimeoutError:
            self._slots.release()
            raise
        except OSError as exc:
            self._slots.release()
            raise TransportError(f"Could not connect: {exc.strerror or exc}", connect=True) from exc
        except BaseException:
            self._slots.release()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable():
            conn.idle = True
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
