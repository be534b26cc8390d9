"""Shared fixtures: an asyncio backend for async tests, a real Redis server, FakeProvider wiring."""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import httpx
import pytest
import redis.asyncio as aioredis

from asgi_aigw.router import ProviderRouter
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .redis_server import INSTALL_HINT, TLS_HINT, RedisServer, redis_answers, redis_binary, tls_redis_binaries
from .redis_topologies import RedisClusterSet, SentinelSet, redis_cli
from .support import FAKE_URL, fake_config
from .tls_certs import TlsFiles, make_tls_files


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every ``async def`` test through anyio's plugin (on asyncio, see ``anyio_backend``)."""
    if inspect.iscoroutinefunction(obj) and name.startswith("test"):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the default embedder's table ------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def static_embedding_table() -> None:
    """Derive the default embedder's table before the first test (about 25 s on a machine without it,
    then kept): while it is first derived semantic lookups miss by design, which tests expecting a
    semantic hit must not race."""
    try:
        from asgi_aigw.runtime.config import RuntimeConfig
        from asgi_aigw.runtime.static_table import find_or_derive
    except ImportError:  # no embed extra: the semantic tests skip
        return
    try:
        find_or_derive(RuntimeConfig())
    except Exception:  # no offline model here: the tests that need one say so themselves
        return


# -- Redis: REDIS_URL, else a server on 127.0.0.1:6379, else one we start on a free port -------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis server; tests isolate themselves with :func:`redis_prefix`."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if redis_answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    if redis_binary() is None:
        pytest.fail(f"No Redis answers and no redis-server to start: {INSTALL_HINT}")
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, so tests (and parallel runs) never share Redis keys."""
    return f"aigw-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A redis-py client of :func:`redis_url`; the keys under :func:`redis_prefix` are deleted after."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


# -- Redis Cluster and Sentinel: started once per test run, on loopback ---------------------------------


def _need_redis_binaries() -> None:
    if redis_binary() is None or redis_cli() is None:
        pytest.skip(f"no redis-server and redis-cli to start a cluster or sentinels with: {INSTALL_HINT}")


_Started = TypeVar("_Started", RedisClusterSet, SentinelSet)


def _running(processes: _Started) -> Iterator[_Started]:
    """Start ``processes`` for the session; stop them (and remove their files) after it."""
    try:
        processes.start()
        yield processes
    finally:
        processes.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSet]:
    """A real three-master Redis Cluster; its ``url`` is a ``redis+cluster://`` URL."""
    _need_redis_binaries()
    yield from _running(RedisClusterSet())


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSet]:
    """A real master, replica and three sentinels; ``url()`` is a ``redis+sentinel://`` URL."""
    _need_redis_binaries()
    yield from _running(SentinelSet())


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A private certificate authority and the certificates it signed, for the TLS servers."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _need_tls_binaries() -> None:
    if tls_redis_binaries() is None:
        pytest.skip(f"no redis-server built with TLS to start: {TLS_HINT}")


@pytest.fixture(scope="session")
def redis_tls(tls_files: TlsFiles) -> Iterator[RedisServer]:
    """A redis-server over TLS only; its ``url`` is a ``rediss://`` URL trusting the test authority."""
    _need_tls_binaries()
    server = RedisServer(tls=tls_files)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster_tls(tls_files: TlsFiles) -> Iterator[RedisClusterSet]:
    """:func:`redis_cluster` over TLS only (clients and cluster bus); ``url``: ``rediss+cluster://``."""
    _need_tls_binaries()
    yield from _running(RedisClusterSet(tls=tls_files))


@pytest.fixture(scope="session")
def redis_sentinel_tls(tls_files: TlsFiles) -> Iterator[SentinelSet]:
    """:func:`redis_sentinel` over TLS only (clients, replication, sentinels); ``rediss+sentinel://``."""
    _need_tls_binaries()
    yield from _running(SentinelSet(tls=tls_files))


@pytest.fixture(params=["cluster", "sentinel", "cluster-tls", "sentinel-tls"])
def topology_url(request: pytest.FixtureRequest) -> str:
    """The ``redis+cluster://`` URL of the shared cluster, the ``redis+sentinel://`` one, then the same
    over TLS (``rediss+cluster://``, ``rediss+sentinel://``)."""
    kind, _, tls = request.param.partition("-")
    suffix = "_tls" if tls else ""
    if kind == "cluster":
        cluster: RedisClusterSet = request.getfixturevalue(f"redis_cluster{suffix}")
        return cluster.url
    sentinels: SentinelSet = request.getfixturevalue(f"redis_sentinel{suffix}")
    return sentinels.url()


# -- FakeProvider and a router in front of it --------------------------------------------------------


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def router(fake: FakeProvider) -> ProviderRouter:
    return ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})


@pytest.fixture
async def client(router: ProviderRouter) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the router in process (whole bodies: use ApplicationCommunicator for SSE)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        yield c
    await router.aclose()


# -- chDB: one data directory per process --------------------------------------------------------------


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The chDB URL every test shares: chDB hosts one data directory per process (a second one is
    refused while the first is open), so tests keep apart by table, not by directory."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"
