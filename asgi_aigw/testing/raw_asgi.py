"""One POST through an ASGI app with no HTTP client in between: the scope a server gives, and a client
that stays until its answer is whole. For measurements where a client library's own objects and CPU
would be counted with the gateway's (``bench/stack_cpu.py``, ``tests/test_no_cycles.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..kernel.types import ASGIApp, Message


def post_scope(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The HTTP scope of a JSON ``POST`` of ``body`` to ``path`` with ``headers`` added, as uvicorn
    builds it (its own per-request ``state`` included)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway.test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def post(
    app: ASGIApp, path: str, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, bytes]:
    """POST ``body`` to ``path`` through ``app``: the answer's status and body (status 0: none began)."""
    request: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> Message:
        if request:
            return request.pop()
        await done.wait()  # the client stays until its answer is whole, as a server's receive does
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(post_scope(path, body, headers or []), receive, send)
    done.set()
    return status, b"".join(chunks)
