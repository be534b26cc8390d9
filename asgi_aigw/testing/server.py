"""Serve an ASGI app with a real uvicorn on 127.0.0.1 in a background thread, for end-to-end tests.

```python
with serve(FakeProvider()) as base_url:
    httpx.post(f"{base_url}/v1/chat/completions", json=...)
```
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..kernel.optional import require
from ..kernel.types import ASGIApp


def wait_for_server(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Wait until a server process accepts connections on ``port``; False if it exited or timed out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn running ``app`` in a daemon thread with its own event loop; over HTTPS with ``tls``
    (uvicorn's ``ssl_*`` settings: ``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``, ``ssl_cert_reqs``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int | None = None,
        lifespan: str = "auto",
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        uvicorn = require("uvicorn", "server")
        self.port = port or free_port()
        self.tls = dict(tls or {})
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=lifespan,
            access_log=False,
            **self.tls,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def serve(app: ASGIApp, *, port: int | None = None, lifespan: str = "auto") -> Iterator[str]:
    """Run ``app`` on a free port (or ``port``) for the duration of the block; yields its base URL."""
    server = ServerThread(app, port=port, lifespan=lifespan)
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
