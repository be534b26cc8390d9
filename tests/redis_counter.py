"""A TCP proxy in front of a real Redis server that counts round trips: how many times a client sent
commands while it had no reply pending (commands written together, or while earlier ones are still
answered, share a round trip). It parses RESP both ways, so a command split across packets or several
commands in one packet are counted right."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from asgi_aigw.stores.resp import parse_reply


def _complete_values(buf: bytearray) -> int:
    """Remove the complete RESP values at the start of ``buf``; how many there were."""
    pos = count = 0
    while pos < len(buf):
        try:
            _, pos_next = parse_reply(buf, pos)
        except Exception:  # the value is not all there yet
            break
        pos = pos_next
        count += 1
    del buf[:pos]
    return count


class RoundTripCounter:
    """``url`` is the proxy's Redis URL (the same database as the server's); ``round_trips`` and
    ``commands`` count since the last :meth:`reset`."""

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._path = parts.path
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""
        self.round_trips = 0
        self.commands = 0

    async def start(self) -> RoundTripCounter:
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
                self.commands += count
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def replies() -> None:
            buf = bytearray()
            while data := await up_reader.read(65536):
                buf += data
                pending[0] -= _complete_values(buf)
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
