"""A TCP proxy in front of a real Redis server that counts round trips and can hold replies back.

A round trip is a time a client sent commands while it had no reply pending: commands written
together, or sent while earlier ones are still answered, share one. RESP is parsed both ways, so a
command split across packets, or several in one packet, are counted right. ``delay`` holds each reply
back that many seconds: a server across a network. For tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from ..stores.resp import parse_reply


def _complete_values(buf: bytearray) -> int:
    """Remove the complete RESP values at the start of ``buf``; how many there were."""
    pos = count = 0
    while pos < len(buf):
        try:
            _, pos = parse_reply(buf, pos)
        except Exception:  # the value is not all there yet
            break
        count += 1
    del buf[:pos]
    return count


class RedisProxy:
    """``url`` is the proxy's Redis URL (the server's database); ``round_trips`` and ``commands``
    count since :meth:`reset`, ``inflight`` is what is sent and not answered yet."""

    def __init__(self, server_url: str, *, delay: float = 0.0) -> None:
        parts = urlsplit(server_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._path = parts.path
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""
        self.round_trips = 0
        self.commands = 0
        self.inflight = 0

    async def start(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}{self._path}"
        return self

    def reset(self) -> None:
        self.round_trips = self.commands = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        pending = [0]

        async def commands() -> None:
            buf = bytearray()
            while data := await reader.read(65536):
                buf += data
                count = _complete_values(buf)
                if count and pending[0] == 0:
                    self.round_trips += 1
                pending[0] += count
                self.inflight += count
                self.commands += count
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def replies() -> None:
            buf = bytearray()
            while data := await up_reader.read(65536):
                buf += data
                count = _complete_values(buf)
                if self.delay:
                    await asyncio.sleep(self.delay)
                pending[0] -= count
                self.inflight -= count
                writer.write(data)
                await writer.drain()
            writer.close()

        for work in (commands(), replies()):
            task = asyncio.get_running_loop().create_task(work)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
