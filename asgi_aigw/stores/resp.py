"""A minimal Redis client (RESP2 over one pipelined asyncio connection) for the few calls on the request
path.

A metered request makes two ``EVALSHA`` calls (the budget) and a cached one a ``GET`` and a ``SET`` (the
exact cache). Through redis-py's generic command path each call cost about twice the CPU of this client
on loopback (measured in ``bench/budget.py`` and ``bench/fullstack.py``), which sends the packed command
and parses the one reply, nothing else. Concurrent requests' commands share one connection: those made in
one turn of the event loop leave in one write, and one read delivers every reply that has come, so a
busy worker makes a fraction of the system calls (``bench/stack_cpu.py``). It speaks plain TCP, TLS
(``rediss://``, with redis-py's ``ssl_*`` options: :mod:`.redis_tls`) and Unix sockets, with ``AUTH``
and ``SELECT`` from the URL. Everything else (the CLIs, overrides, purges, scans) and any client you
pass in (``RedisCluster``...) goes through redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from ..kernel.url_text import hide_password
from .redis_tls import TLS_OPTIONS, TlsOptions, tls_options

_hiredis: Any
try:  # hiredis (C) parses replies about six times faster; the parser below does the same without it
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - installed with the redis extra
    _hiredis = None


class RespError(Exception):
    """An error reply from the server (``-NOSCRIPT ...``, ``-ERR ...``)."""


class ConnectionLost(ConnectionError):
    """The server closed the connection before answering."""


class RespCaller(Protocol):
    """What the stores' request path calls: :class:`FastRedis`, or for a cluster or sentinel URL a
    client of :mod:`asgi_aigw.stores.redis_topology` with the same ``call``."""

    async def call(self, packed: bytes) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str | None
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None
    #: How to open TLS (``rediss://``, options from the query: see :mod:`.redis_tls`); None: plain.
    tls: TlsOptions | None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        shown = hide_password(url)
        if parts.scheme != "rediss" and any(name in query for name in TLS_OPTIONS):
            # redis-py would fail on its first call: say so when the URL is read
            raise ValueError(f"ssl_* options need a rediss:// URL (TLS), not {shown!r}")
        unknown = sorted(set(query) - {"db", *TLS_OPTIONS})
        if unknown:
            # the request path's client would ignore it and redis-py apply it (or fail on it): one URL,
            # two behaviours; timeouts and pool sizes are the store's own settings
            raise ValueError(
                f"unknown option {unknown[0]!r} in {shown!r}: a Redis URL takes db and the ssl_* options"
            )
        if parts.scheme == "unix":
            db = int(query.get("db", ["0"])[0])
            return cls(None, 0, parts.path, db, username, password, None)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {shown!r}")
        path = parts.path.strip("/")
        db = int(path) if path else int(query.get("db", ["0"])[0])
        return cls(
            parts.hostname or "localhost",
            parts.port or 6379,
            None,
            db,
            username,
            password,
            tls_options(query, shown) if parts.scheme == "rediss" else None,
        )


def pack(args: Sequence[bytes]) -> bytes:
    """A command as RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    """One reply: bytes, int, None, a list, or a :class:`RespError` (returned, not raised)."""
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionLost("the Redis server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        try:
            return (await reader.readexactly(size + 2))[:-2]
        except asyncio.IncompleteReadError:
            raise ConnectionLost("the Redis server closed the connection mid-reply") from None
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        return RespError(rest.decode("utf-8", "replace"))
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [await read_reply(reader) for _ in range(count)]
    raise ConnectionLost(f"unexpected reply from the Redis server: {line[:40]!r}")


class _Incomplete(Exception):
    """The buffer ends before the reply does: wait for more data."""


_INCOMPLETE = _Incomplete()


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One reply from ``buf`` at ``pos`` and where the next one starts, as :func:`read_reply` returns it;
    raises :class:`_Incomplete` when ``buf`` does not hold it all yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _INCOMPLETE
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            raise _INCOMPLETE
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == 58:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 43:  # + simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 45:  # - error
        return RespError(bytes(buf[pos + 1 : end]).decode("utf-8", "replace")), end + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(count):
            item, pos = parse_reply(buf, pos)
            items.append(item)
        return items, pos
    raise ConnectionLost(f"unexpected reply from the Redis server: {bytes(buf[pos : pos + 40])!r}")


class _Pipe(asyncio.Protocol):
    """One connection carrying many callers' commands at once (pipelined), replies matched in order.

    Commands written in one turn of the event loop leave in one write, and one read delivers every reply
    that has arrived: concurrent requests share the system calls. The oldest pending call bounds them
    all (a reply can only come after the ones before it), so one timer per connection enforces the
    timeout: when the oldest call has waited ``timeout``, every pending call fails and the connection
    closes."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer = bytearray()
        #: hiredis's reader, which keeps its own buffer, when it is installed; else :func:`parse_reply`.
        self._reader: Any = _hiredis.Reader(replyError=RespError) if _hiredis is not None else None
        self.outgoing: list[bytes] = []
        self.closed = False
        #: Whether a reply has come: the connection worked once (a reused one may be closed unseen).
        self.replied = False
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._lost: BaseException | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses

    def data_received(self, data: bytes) -> None:
        if self._reader is not None:
            self._read_replies(data)
            return
        buf = self.buffer
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                reply, pos = parse_reply(buf, pos)
                self._deliver(reply)
        except _Incomplete:
            pass
        except (ValueError, ConnectionLost) as exc:
            self.fail(exc if isinstance(exc, ConnectionLost) else ConnectionLost(f"bad reply: {exc}"))
            return
        del buf[:pos]

    def _read_replies(self, data: bytes) -> None:
        """:meth:`data_received` with hiredis: the same replies, in order (``False``: none complete)."""
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                self._deliver(reply)
        except ConnectionLost as exc:
            self.fail(exc)
        except _hiredis.ProtocolError as exc:
            self.fail(ConnectionLost(f"bad reply: {exc}"))

    def _deliver(self, reply: Any) -> None:
        """Hand ``reply`` to the oldest call waiting; a cancelled caller's reply is read and dropped."""
        waiters = self.waiters
        if not waiters:
            raise ConnectionLost("a reply from the Redis server that no call waited for")
        future = waiters.popleft()[0]
        if not future.done():
            future.set_result(reply)
        self.replied = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionLost("the Redis server closed the connection"))

    # -- calls --------------------------------------------------------------------------------------

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue ``packed`` for this turn's write; the future gets its reply."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(self._lost or ConnectionLost("the Redis connection is closed"))
            return future
        self.waiters.append((future, self._loop.time() + self.timeout))
        if not self.outgoing:
            self._loop.call_soon(self._flush)
        self.outgoing.append(packed)
        if self._timer is None:
            self._timer = self._loop.call_later(self.timeout, self._check)
        return future

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing) if len(outgoing) > 1 else outgoing[0])

    def _check(self) -> None:
        self._timer = None
        if not self.waiters:
            return
        deadline = self.waiters[0][1]
        if self._loop.time() >= deadline:
            self.fail(TimeoutError(f"no reply from the Redis server within {self.timeout:g} s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check)

    def fail(self, exc: BaseException) -> None:
        """Close the connection; every pending call raises ``exc``."""
        if self.closed:
            return
        self.closed = True
        self._lost = exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()
        waiters, self.waiters = self.waiters, deque()
        for future, _ in waiters:
            if not future.done():
                future.set_exception(exc)

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()


class FastRedis:
    """One pipelined connection per client (:class:`_Pipe`); one event loop only.

    The connection is opened on first use (concurrent first calls wait for the same connect) and again
    after it closed: the server went away, a reply was malformed, or the oldest pending call waited
    ``timeout``. A call made when the connection is known to be closed opens a new one; a call whose
    command was sent but whose reply was lost raises :class:`ConnectionLost` (it may have run). A
    cancelled call's reply is read and dropped, never given to another caller.
    ``max_connections`` is kept for compatibility: one connection carries every call.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, max_connections: int = 64) -> None:
        self.endpoint = Endpoint.from_url(url)
        self.timeout = timeout
        self.max_connections = max_connections
        self._pipe: _Pipe | None = None
        self._opening: asyncio.Future[_Pipe] | None = None
        tls = self.endpoint.tls
        self._ssl: ssl.SSLContext | None = tls.context() if tls is not None else None
        self._closed = False

    async def call(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (error replies raise :class:`RespError`)."""
        pipe = self._pipe
        if pipe is None or not pipe.usable():
            pipe = await self._open()
        elif not pipe.waiters and pipe.replied:
            # a connection that sat idle may have been closed by the server unseen (a restart, its idle
            # timeout): when it turns out so, send once more on a fresh one, as nothing was pending
            try:
                reply = await pipe.send(packed)
            except ConnectionLost:
                pipe = await self._open()
                reply = await pipe.send(packed)
            return self._reply(pipe, reply)
        return self._reply(pipe, await pipe.send(packed))

    async def call_many(self, commands: Sequence[bytes]) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order; an error reply is returned
        (a :class:`RespError`), not raised, so that one failing command leaves the others' replies."""
        pipe = self._pipe
        if pipe is None or not pipe.usable():
            pipe = await self._open()
        futures = [pipe.send(command) for command in commands]
        replies = [await future for future in futures]
        if self._closed and not pipe.waiters:
            pipe.fail(ConnectionLost("the client was closed"))
        return replies

    def _reply(self, pipe: _Pipe, reply: Any) -> Any:
        if self._closed and not pipe.waiters:  # closed while this call was in flight: its connection goes
            pipe.fail(ConnectionLost("the client was closed"))
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def _open(self) -> _Pipe:
        opening = self._opening
        if opening is None:
            opening = self._opening = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self.timeout):
                    pipe = await self._connect()
            except BaseException as exc:
                self._opening = None
                if not opening.done():
                    # the others waiting get the error; a cancelled connect is no cancellation of theirs
                    cancelled = ConnectionLost("the connect was cancelled")
                    shared = exc if isinstance(exc, Exception) else cancelled
                    opening.set_exception(shared)
                    opening.exception()  # retrieved: no "never retrieved" warning when nobody else waited
                raise
            self._opening = None
            if not self._closed:
                self._pipe = pipe
            opening.set_result(pipe)
            return pipe
        # another call is connecting: share its connection (or its error)
        return await asyncio.shield(opening)

    async def _connect(self) -> _Pipe:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        pipe = _Pipe(self.timeout)
        if endpoint.path is not None:
            await loop.create_unix_connection(lambda: pipe, endpoint.path)
        else:
            host = endpoint.host or "localhost"
            await loop.create_connection(lambda: pipe, host, endpoint.port, ssl=self._ssl)
        try:
            if endpoint.password is not None:
                auth = [b"AUTH", endpoint.password.encode()]
                if endpoint.username:
                    auth.insert(1, endpoint.username.encode())
                await self._handshake(pipe, auth)
            if endpoint.db:
                await self._handshake(pipe, [b"SELECT", str(endpoint.db).encode()])
        except BaseException:
            pipe.fail(ConnectionLost("the Redis handshake failed"))
            raise
        return pipe

    @staticmethod
    async def _handshake(pipe: _Pipe, args: list[bytes]) -> None:
        reply = await pipe.send(pack(args))
        if isinstance(reply, RespError):
            raise reply

    async def aclose(self) -> None:
        self._closed = True
        pipe, self._pipe = self._pipe, None
        if pipe is not None and not pipe.closed:
            transport = pipe.transport
            if pipe.waiters:  # calls in flight finish first; the last one closes the connection
                return
            pipe.fail(ConnectionLost("the client was closed"))
            if transport is not None:
                await asyncio.sleep(0)  # let the transport finish closing
