"""A minimal Redis client (RESP2 over asyncio streams) for the few calls on the request path.

A metered request makes two ``EVALSHA`` calls (the budget) and a cached one a ``GET`` and a ``SET`` (the
exact cache). Through redis-py's generic command path each call cost about twice the CPU of this client
on loopback (measured in ``bench/budget.py`` and ``bench/fullstack.py``), which sends the packed command
and parses the one reply, nothing else. It speaks plain TCP, TLS (``rediss://``) and Unix sockets, with
``AUTH`` and ``SELECT`` from the URL. Everything else (the CLIs, overrides, purges, scans) and any client
you pass in (``RedisCluster``...) goes through redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit


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
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            db = int(query.get("db", ["0"])[0])
            return cls(None, 0, parts.path, db, username, password, False)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {url!r}")
        path = parts.path.strip("/")
        db = int(path) if path else int(query.get("db", ["0"])[0])
        return cls(
            parts.hostname or "localhost",
            parts.port or 6379,
            None,
            db,
            username,
            password,
            parts.scheme == "rediss",
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


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class FastRedis:
    """Idle connections in a list, at most ``max_connections`` calls in flight; one event loop only.

    New connections are opened two at a time, each call preferring a connection another call has just
    given back. A call that fails for any reason (including cancellation) closes its connection, so a
    reply can never be read by the wrong caller. A reused connection that turns out closed is retried
    once on a new one (the server restarted, or closed idle clients).
    """

    def __init__(self, url: str, *, timeout: float = 2.0, max_connections: int = 64) -> None:
        self.endpoint = Endpoint.from_url(url)
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._gate = asyncio.Semaphore(max_connections)
        self._connecting = asyncio.Semaphore(2)
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self.endpoint.tls else None
        self._closed = False

    async def call(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (error replies raise :class:`RespError`)."""
        async with self._gate:
            for attempt in (0, 1):
                connection = self._idle.pop() if self._idle else None
                reused = connection is not None
                try:
                    if connection is None:
                        # a few connects at a time: a burst that opened dozens at once overflowed the
                        # server's accept queue, and the kernel's SYN retry took a second or more
                        async with self._connecting:
                            connection = self._idle.pop() if self._idle else None
                            reused = connection is not None
                            if connection is None:
                                async with asyncio.timeout(self.timeout):
                                    connection = await self._connect()
                    connection.writer.write(packed)
                    async with asyncio.timeout(self.timeout):
                        reply = await read_reply(connection.reader)
                except ConnectionError:
                    if connection is not None:
                        connection.close()
                    if reused and attempt == 0:
                        continue
                    raise
                except BaseException:
                    if connection is not None:
                        connection.close()
                    raise
                if self._closed:  # closed while this call was in flight: its connection goes too
                    connection.close()
                else:
                    self._idle.append(connection)
                if isinstance(reply, RespError):
                    raise reply
                return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> _Connection:
        endpoint = self.endpoint
        if endpoint.path is not None:
            reader, writer = await asyncio.open_unix_connection(endpoint.path)
        else:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=self._ssl)
        connection = _Connection(reader, writer)
        try:
            if endpoint.password is not None:
                auth = [b"AUTH", endpoint.password.encode()]
                if endpoint.username:
                    auth.insert(1, endpoint.username.encode())
                await self._handshake(connection, auth)
            if endpoint.db:
                await self._handshake(connection, [b"SELECT", str(endpoint.db).encode()])
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    async def _handshake(connection: _Connection, args: list[bytes]) -> None:
        connection.writer.write(pack(args))
        reply = await read_reply(connection.reader)
        if isinstance(reply, RespError):
            raise reply

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
            try:
                await connection.writer.wait_closed()
            except (OSError, ConnectionError):
                pass
