"""Scale-out: two gateway processes of two workers each (``aigw serve --workers 2``, as on two hosts)
share one Redis budget, on one server, on a Redis Cluster and on a cluster over TLS. Hammered together, they never let a tenant past its limit: every sample of the
counters stays within it, some requests are refused, and what is charged in the end equals what the
provider reported using."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from asgi_aigw.stores.redis_clients import LoopRedisClients
from asgi_aigw.testing.server import free_port

from .budget_helpers import minute_counter_keys
from .test_budget_concurrency import stop, wait_for_port

pytestmark = pytest.mark.e2e

LIMIT = 6_000
REQUESTS = 300
PROCESSES = 2
WORKERS = 2
MAX_TOKENS = 100


@pytest.fixture
def provider_url() -> Iterator[str]:
    """FakeProvider in its own process."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "asgi_aigw.testing.fake_provider:app", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning", "--no-access-log"])
    try:
        wait_for_port(process, port)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


@pytest.fixture(params=["redis", "cluster", "cluster-tls"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The shared Redis server, the shared Redis Cluster, then a cluster over TLS only."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    if request.param == "cluster-tls":
        return str(request.getfixturevalue("redis_cluster_tls").url)
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def gateways(tmp_path: Path, provider_url: str, store_url: str, redis_prefix: str) -> Iterator[list[str]]:
    """Two ``aigw serve --workers 2`` processes, one configuration: budgets in the same Redis."""
    model = {"model": "gpt-4o-mini", "base_url": provider_url, "api_key": "sk-test-not-a-real-key"}
    config = {
        "router": {"models": [{"name": "gpt-4o-mini", "deployments": [model]}]},
        "tenant": {"header": "x-tenant-id"},
        "budget": {
            "store": store_url,
            "key_prefix": redis_prefix,
            "limits": {"tokens_per_minute": LIMIT},
            # exact accounting across processes is the point: on a small machine running four workers,
            # the provider and the client at once, a loop may stall past the default 2 s store timeout,
            # which (by design) lets a request through unmetered; failing open has its own tests
            "store_timeout": 30,
        },
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(PROCESSES):
            port = free_port()
            command = [sys.executable, "-m", "asgi_aigw.cli", "serve", "--config", str(path)]
            options = ["--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"]
            log = open(tmp_path / f"gateway-{index}.log", "wb")  # noqa: SIM115
            processes.append(subprocess.Popen([*command, *options], env={**os.environ}, stderr=log))
            urls.append(f"http://127.0.0.1:{port}/ai/v1")
        for process, url in zip(processes, urls, strict=True):
            wait_for_port(process, int(url.split(":")[2].split("/")[0]))
        yield urls
    finally:
        for process in processes:
            stop(process)


async def test_two_processes_of_two_workers_never_overspend(
    gateways: list[str], store_url: str, redis_prefix: str
) -> None:
    clients = LoopRedisClients(store_url)
    redis = clients.redis()
    pattern = f"{redis_prefix}{{load}}:tpm:*"
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        """Sample the token counters while the load runs: a reservation past the limit would show."""
        nonlocal peak
        while not done.is_set():
            keys = minute_counter_keys(redis_prefix, "load")
            peak = max([peak, *(int(v or 0) for v in await redis.mget(keys))])
            await asyncio.sleep(0.005)

    words = " ".join(f"w{i}" for i in range(30))

    async def one(client: httpx.AsyncClient, index: int) -> httpx.Response:
        body = {
            "model": "gpt-4o-mini",
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": f"request {index}: {words}"}],
        }
        url = gateways[index % len(gateways)]  # every other request to the other process
        return await client.post(f"{url}/chat/completions", json=body, headers={"x-tenant-id": "load"})

    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        watcher = asyncio.create_task(watch())
        responses = await asyncio.gather(*(one(client, i) for i in range(REQUESTS)))
        done.set()
        await watcher

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, {s for s in statuses if s not in (200, 429)}
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert refused
    assert all("tokens per minute" in r.json()["error"]["message"] for r in refused)
    # both processes answered (which of them wins the race for the last tokens varies)
    assert {str(r.url).split("/ai/")[0] for r in responses} == {url.split("/ai/")[0] for url in gateways}
    assert all(0 <= int(r.headers["x-ratelimit-remaining-tokens"]) <= LIMIT for r in ok)
    assert 0 < peak <= LIMIT

    provider_usage = sum(r.json()["usage"]["total_tokens"] for r in ok)
    # a request settles just after its last byte is sent: on a busy machine the client may read every
    # answer before the last settlements reach Redis, so give them a few seconds
    for _ in range(100):
        keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
        values = [int(v) for v in await redis.mget(keys)]
        if sum(values) == provider_usage:
            break
        await asyncio.sleep(0.1)
    # the run may straddle a minute boundary: each window stays within the limit, and together they
    # hold exactly what the provider reported
    assert all(value <= LIMIT for value in values)
    assert sum(values) == provider_usage

    stale = [key async for key in redis.scan_iter(match=f"{redis_prefix}*")]
    if stale:
        await redis.delete(*stale)
    await clients.aclose()
