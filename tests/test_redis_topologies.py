"""Every Redis-backed store on a real Redis Cluster (three masters) and a real Sentinel set: budgets
reserve and settle atomically under concurrency with tenants spread over the cluster's slots, the exact
cache stores, reads and purges across nodes, API keys are added, read and revoked, the CLIs take the
URLs, and after a sentinel failover the stores reach the new master."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import yaml

from asgi_aigw.budget import RedisBudgetStore, StoreError
from asgi_aigw.budget.windows import WINDOW_NAMES, SlotClock
from asgi_aigw.cache.exact import RedisExactStore
from asgi_aigw.cache.keys import tenant_tag
from asgi_aigw.cli import main
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.stores.redis_clients import LoopRedisClients
from asgi_aigw.stores.redis_topology import (
    ClusterFastRedis,
    RedisPyCalls,
    SentinelFastRedis,
    parse_topology,
    routing_key,
    server_url,
    unpack,
)
from asgi_aigw.stores.registry import BUDGET_STORES, EXACT_STORES, KEY_STORES
from asgi_aigw.stores.resp import ConnectionLost, RespError, pack
from asgi_aigw.tenant.key_store import RedisKeyStore
from asgi_aigw.tenant.keys import KeyRecord, hash_key, key_id, new_key

from .redis_topologies import SERVICE, RedisClusterSet, SentinelSet

pytestmark = pytest.mark.e2e

TENANTS = [f"tenant-{i}" for i in range(8)]


@pytest.fixture
def prefix() -> str:
    return f"aigw-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_py(topology_url: str) -> AsyncIterator[Any]:
    """A redis-py client of the topology, to look at what the stores wrote and clean up after."""
    clients = LoopRedisClients(topology_url)
    yield clients.redis()
    await clients.aclose()


async def _clean(client: Any, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


# -- URLs --------------------------------------------------------------------------------------------


def test_url_forms() -> None:
    cluster = parse_topology("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert cluster.kind == "cluster"
    assert cluster.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (cluster.password, cluster.username, cluster.db) == ("s3cret", None, 0)
    sentinel = parse_topology("redis+sentinel://app:pw@s1:26380,s2/mymaster/3?sentinel_password=spw")
    assert sentinel.kind == "sentinel"
    assert sentinel.nodes == (("s1", 26380), ("s2", 26379))
    assert (sentinel.service, sentinel.db) == ("mymaster", 3)
    assert (sentinel.username, sentinel.password, sentinel.sentinel_password) == ("app", "pw", "spw")
    assert parse_topology("redis+sentinel://s1?service_name=mymaster&db=2").db == 2


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://127.0.0.1:26379", "no service name"),
        ("redis+sentinel://127.0.0.1:26379/svc/x", "bad database number"),
        ("redis+cluster://127.0.0.1:7000/1", "database 0 only"),
        ("redis+cluster://127.0.0.1:70x0", "bad port"),
        ("redis+cluster://", "no nodes"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, says: str) -> None:
    for registry in (BUDGET_STORES, EXACT_STORES, KEY_STORES):
        with pytest.raises(ConfigError, match=says):
            registry.check(url)


def test_every_redis_store_takes_both_schemes() -> None:
    for registry in (BUDGET_STORES, EXACT_STORES, KEY_STORES):
        assert {"redis+cluster", "redis+sentinel"} <= set(registry.schemes)


def test_server_urls_keep_credentials_and_ipv6() -> None:
    from asgi_aigw.stores.resp import Endpoint

    topology = parse_topology("redis+sentinel://app:p%40ss:w@s1/mymaster/2")
    endpoint = Endpoint.from_url(server_url(topology, "::1", 7000, topology.db))
    assert (endpoint.host, endpoint.port, endpoint.db) == ("::1", 7000, 2)
    assert (endpoint.username, endpoint.password) == ("app", "p@ss:w")


def test_routing_keys() -> None:
    assert routing_key(pack([b"GET", b"a{t}"])) == b"a{t}"
    assert routing_key(pack([b"SET", b"k", b"v", b"PX", b"10"])) == b"k"
    assert routing_key(pack([b"EVALSHA", b"0" * 40, b"2", b"k1", b"k2", b"arg"])) == b"k1"
    assert routing_key(pack([b"EVALSHA", b"0" * 40, b"0", b"arg"])) is None
    assert routing_key(pack([b"SCRIPT", b"LOAD", b"return 1"])) is None


def test_unpack_is_the_inverse_of_pack() -> None:
    args = [b"SET", b"k\r\n{x}", b"\x00\r\n$3\r\n" * 3, b"", b"PX", b"100"]
    assert unpack(pack(args)) == args


# -- budgets -----------------------------------------------------------------------------------------


def _limits(**values: int) -> list[int]:
    return [values.get(name, -1) for name in WINDOW_NAMES]


def _amounts(tokens: int) -> list[int]:
    return [1, tokens, tokens, tokens, tokens, 0, 0]


async def test_tenants_spread_over_every_master(redis_cluster: RedisClusterSet, prefix: str) -> None:
    """The atomicity test below covers every node of the cluster, not one."""
    store = RedisBudgetStore(redis_cluster.url, key_prefix=prefix)
    client = store.client()
    await client.initialize()  # learn the slot map
    slots = SlotClock().slots(time.time())
    nodes = {client.get_node_from_key(store._keys(tenant, slots)[0]).port for tenant in TENANTS}
    assert nodes == set(redis_cluster.ports)
    await store.aclose()


async def test_budget_reserve_and_settle_are_atomic_under_concurrency(
    topology_url: str, prefix: str, redis_py: Any
) -> None:
    store = BUDGET_STORES.open(topology_url, key_prefix=prefix)
    assert isinstance(store, RedisBudgetStore)
    slots = SlotClock().slots(time.time())
    limits = _limits(tokens_per_minute=100)

    async def reserve(tenant: str, index: int) -> tuple[str, str, bool]:
        token = f"{index:04d}"
        reservation = await store.reserve(tenant, slots, _amounts(10), limits, 60, token=token)
        assert all(used <= 100 for used in reservation.used[1:2])
        return tenant, token, reservation.allowed

    # 30 calls per tenant for room for 10, all in flight together, 8 tenants over three masters
    results = await asyncio.gather(*(reserve(tenant, i) for tenant in TENANTS for i in range(30)))
    for tenant in TENANTS:
        allowed = [token for name, token, ok in results if name == tenant and ok]
        assert len(allowed) == 10
        assert (await store.usage(tenant, slots))[1] == 100
    # each accepted request used half its estimate: settling gives the rest back, once per token
    deltas = [0, -5, -5, -5, -5, 0, 0]
    settles = [
        store.settle(name, slots, deltas, token=token) for name, token, ok in results if ok for _ in (1, 2)
    ]
    await asyncio.gather(*settles)
    for tenant in TENANTS:
        assert (await store.usage(tenant, slots))[1] == 50
        # the settlement marker is gone, the counters expire with their window
        assert await redis_py.ttl(store.counter_key(tenant, slots[1])) > 0
    await _clean(redis_py, prefix)
    await store.aclose()


async def test_budget_overrides_usage_and_reset(topology_url: str, prefix: str, redis_py: Any) -> None:
    store = BUDGET_STORES.open(topology_url, key_prefix=prefix)
    slots = SlotClock().slots(time.time())
    await store.set_overrides("acme", {"requests_per_minute": 1, "tokens_per_day": None})
    assert await store.get_overrides("acme") == {"requests_per_minute": 1}
    first = await store.reserve("acme", slots, _amounts(3), _limits(requests_per_minute=50), 60)
    second = await store.reserve("acme", slots, _amounts(3), _limits(requests_per_minute=50), 60)
    assert (first.allowed, second.allowed) == (True, False)  # the override, read by the script
    assert (await store.usage("acme", slots))[:2] == [1, 3]
    await store.reset_usage("acme", slots)
    await store.clear_overrides("acme")
    assert await store.usage("acme", slots) == [0] * len(slots)
    assert await store.get_overrides("acme") == {}
    await _clean(redis_py, prefix)
    await store.aclose()


async def test_scripts_are_loaded_again_after_a_flush(topology_url: str, prefix: str, redis_py: Any) -> None:
    store = BUDGET_STORES.open(topology_url, key_prefix=prefix)
    slots = SlotClock().slots(time.time())
    assert (await store.reserve("acme", slots, _amounts(1), _limits(), 60)).allowed
    await redis_py.script_flush()  # every master forgets the scripts (a restart, a failover)
    assert (await store.reserve("acme", slots, _amounts(1), _limits(), 60)).used[1] == 2
    await _clean(redis_py, prefix)
    await store.aclose()


async def test_an_unreachable_topology_is_a_store_error(prefix: str) -> None:
    """A cluster or sentinel set that does not answer fails the call within the timeout: the budget
    layer's outage policy (``on_store_error``) then decides, as for ``redis://``."""
    from asgi_aigw.testing.server import free_port

    slots = SlotClock().slots(time.time())
    for url in (
        f"redis+cluster://127.0.0.1:{free_port()}",
        f"redis+sentinel://127.0.0.1:{free_port()}/nothing",
    ):
        store = BUDGET_STORES.open(url, key_prefix=prefix, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StoreError):
            await store.reserve("acme", slots, _amounts(1), _limits(), 60)
        assert time.monotonic() - started < 3
        await store.aclose()


# -- the exact cache ---------------------------------------------------------------------------------


async def test_exact_cache_get_set_and_purge_across_nodes(
    topology_url: str, prefix: str, redis_py: Any
) -> None:
    store = EXACT_STORES.open(topology_url, prefix=prefix)
    assert isinstance(store, RedisExactStore)
    keys = {tenant: [f"{tenant_tag(tenant)}:{i:064x}" for i in range(5)] for tenant in TENANTS}
    assert await store.get(keys["tenant-0"][0]) is None
    answer = b'{"id":"chatcmpl-1","choices":[]}\r\n'
    await asyncio.gather(*(store.set(key, answer + key.encode(), 60) for ks in keys.values() for key in ks))
    for ks in keys.values():
        assert [await store.get(key) for key in ks] == [answer + key.encode() for key in ks]
    # a short TTL expires
    await store.set("short:0", b"x", 0.05)
    await asyncio.sleep(0.15)
    assert await store.get("short:0") is None

    assert await store.purge(tenant_tag("tenant-3")) == 5
    assert await store.get(keys["tenant-3"][0]) is None
    assert await store.get(keys["tenant-4"][0]) is not None
    assert await store.purge() == 5 * (len(TENANTS) - 1)
    assert [key async for key in redis_py.scan_iter(match=f"{prefix}*")] == []
    await store.aclose()


# -- API keys ----------------------------------------------------------------------------------------


async def test_key_store_add_get_list_revoke(topology_url: str, prefix: str, redis_py: Any) -> None:
    store = KEY_STORES.open(topology_url, prefix=prefix)
    assert isinstance(store, RedisKeyStore)
    records = []
    for i in range(4):
        ident, key = new_key()
        record = KeyRecord(id=ident, hash=hash_key(key), tenant="acme", name=f"k{i}")
        await store.add(record)
        records.append(record)
    assert [r.id for r in await store.list_keys("acme")] == [r.id for r in records]
    got = await store.get(records[0].id)
    assert got is not None
    assert (got.tenant, got.revoked) == ("acme", False)
    revoked = await store.revoke(records[0].id)
    assert revoked is not None
    assert revoked.revoked
    assert await store.revoke("0" * 12) is None
    assert await store.get("0" * 12) is None
    await _clean(redis_py, prefix)
    await store.aclose()


# -- the CLIs ----------------------------------------------------------------------------------------


async def test_the_clis_take_the_urls(
    topology_url: str, prefix: str, redis_py: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def cli(*argv: str) -> int:
        # the command runs its own event loop (asyncio.run), as it does from a shell
        return await anyio.to_thread.run_sync(main, list(argv))

    store = ("--store", topology_url, "--key-prefix", prefix)
    assert await cli("budget", "set", "acme", *store, "--requests-per-minute", "7") == 0
    capsys.readouterr()
    assert await cli("budget", "show", "acme", *store, "--json") == 0
    windows = {w["window"]: w for w in orjson.loads(capsys.readouterr().out)["windows"]}
    assert windows["requests_per_minute"]["limit"] == 7

    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "tenant": {"key_store": topology_url, "key_store_prefix": f"{prefix}keys:"},
                "cache": {"store": topology_url, "key_prefix": f"{prefix}cache:", "vector_store": None},
            }
        )
    )
    assert await cli("keys", "create", "acme", "--config", str(config)) == 0
    ident = key_id(capsys.readouterr().out.strip())
    assert await cli("keys", "list", "acme", "--config", str(config), "--json") == 0
    assert ident in capsys.readouterr().out

    exact = EXACT_STORES.open(topology_url, prefix=f"{prefix}cache:")
    await exact.set(f"{tenant_tag('acme')}:{0:064x}", b"{}", 60)
    await exact.aclose()
    assert await cli("cache", "purge", "--config", str(config), "--tenant", "acme") == 0
    assert "1 exact entries" in capsys.readouterr().out
    await _clean(redis_py, prefix)


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_the_clis_say_when_a_topology_cannot_be_reached(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from asgi_aigw.testing.server import free_port

    port = free_port()  # nothing listens there
    url = (
        f"redis+cluster://127.0.0.1:{port}" if kind == "cluster" else f"redis+sentinel://127.0.0.1:{port}/svc"
    )
    assert main(["budget", "show", "acme", "--store", url]) == 2
    assert main(["keys", "list", "acme", "--store", url]) == 2
    err = capsys.readouterr().err
    assert "aigw budget: the budget store cannot be reached" in err
    assert "aigw keys: the key store cannot be reached" in err
    assert "Traceback" not in err
    if kind == "sentinel":  # short: redis-py's own message holds the repr of every sentinel client
        assert f"no sentinel names a master for 'svc' (asked 127.0.0.1:{port}" in err
        assert "ConnectionPool" not in err


# -- the request path's client over redis-py ---------------------------------------------------------


async def test_error_replies_and_outages_map_to_the_minimal_clients_errors(
    redis_cluster: RedisClusterSet,
) -> None:

    clients = LoopRedisClients(redis_cluster.url)
    fast = clients.fast()
    assert isinstance(fast, ClusterFastRedis)
    calls = fast.slow
    assert isinstance(calls, RedisPyCalls)
    with pytest.raises(RespError, match=r"^NOSCRIPT"):
        await calls.call(pack([b"EVALSHA", b"0" * 40, b"1", b"{a}x"]))
    await calls.call(pack([b"SET", b"aigw-test:{a}:s", b"1"]))
    with pytest.raises(RespError, match="WRONGTYPE"):
        await calls.call(pack([b"HGET", b"aigw-test:{a}:s", b"f"]))
    await calls.call(pack([b"DEL", b"aigw-test:{a}:s"]))
    await clients.aclose()

    down = LoopRedisClients(f"redis+cluster://127.0.0.1:{redis_cluster.ports[0] + 1}", timeout=0.5)
    with pytest.raises((ConnectionLost, TimeoutError)):
        await down.fast().call(pack([b"GET", b"x"]))
    await down.aclose()


@pytest.fixture(params=["plain", "tls"])
def any_sentinel(request: pytest.FixtureRequest) -> SentinelSet:
    """The shared Sentinel set, then the one over TLS."""
    return request.getfixturevalue("redis_sentinel" if request.param == "plain" else "redis_sentinel_tls")


@pytest.fixture(params=["plain", "tls"])
def any_cluster(request: pytest.FixtureRequest) -> RedisClusterSet:
    """The shared cluster, then the one over TLS."""
    return request.getfixturevalue("redis_cluster" if request.param == "plain" else "redis_cluster_tls")


async def test_a_sentinel_set_gets_the_minimal_client_at_its_master(any_sentinel: SentinelSet) -> None:
    redis_sentinel = any_sentinel
    clients = LoopRedisClients(redis_sentinel.url())
    calls = clients.fast()
    assert isinstance(calls, SentinelFastRedis)
    assert await calls.call(pack([b"SET", b"aigw-test:fast", b"1", b"PX", b"5000"])) == b"OK"
    assert calls._address == redis_sentinel.master_address()
    assert calls._fast is not None
    # over TLS with the URL's authority (the servers listen over TLS only: plain TCP would have failed)
    assert (calls._fast.endpoint.tls is not None) == (redis_sentinel.tls is not None)
    # sent to the replica (as if the master had just been demoted): READONLY, ask again, and succeed
    [replica] = redis_sentinel.sentinel_client().sentinel_slaves(SERVICE)
    calls.pool.master_address = (replica["ip"], int(replica["port"]))
    assert await calls.call(pack([b"SET", b"aigw-test:fast", b"2", b"PX", b"5000"])) == b"OK"
    assert calls._address == redis_sentinel.master_address()
    assert await clients.redis().get("aigw-test:fast") == b"2"
    await clients.aclose()


async def test_a_cluster_gets_the_minimal_client_at_each_master(any_cluster: RedisClusterSet) -> None:
    redis_cluster = any_cluster
    clients = LoopRedisClients(redis_cluster.url)
    calls = clients.fast()
    assert isinstance(calls, ClusterFastRedis)
    keys = [f"aigw-test:{{t{i}}}:fast".encode() for i in range(12)]
    for key in keys:  # the first goes through redis-py, which learns the slot map
        await calls.call(pack([b"SET", key, b"1", b"PX", b"5000"]))
    assert {port for _, port in calls._nodes} == set(redis_cluster.ports)
    tls = redis_cluster.tls is not None
    assert all((node.endpoint.tls is not None) == tls for node in calls._nodes.values())
    with pytest.raises(RespError, match=r"^NOSCRIPT"):  # an error reply is the caller's, not a redirect
        await calls.call(pack([b"EVALSHA", b"0" * 40, b"1", keys[0]]))

    # a stale slot map (a slot moved): MOVED, redis-py follows it and corrects the map
    cluster = clients.redis()
    slot = cluster.keyslot(keys[0])
    right = cluster.nodes_manager.slots_cache[slot][0]
    wrong = next(node for node in cluster.nodes_manager.nodes_cache.values() if node.port != right.port)
    cluster.nodes_manager.slots_cache[slot] = [wrong]
    assert await calls.call(pack([b"SET", keys[0], b"2", b"PX", b"5000"])) in (True, b"OK")
    assert cluster.nodes_manager.slots_cache[slot][0].port == right.port
    assert await calls.call(pack([b"GET", keys[0]])) == b"2"
    await clients.aclose()


# -- sentinel failover -------------------------------------------------------------------------------


async def test_stores_reach_the_new_master_after_a_sentinel_failover(
    redis_sentinel: SentinelSet, prefix: str
) -> None:
    """Once the sentinels name the new master, the next call of every store reaches it: a connection
    to the demoted master answers READONLY, redis-py drops it and asks the sentinels again (the one
    retry), and a script the new master lacks is loaded on NOSCRIPT. Calls made during the election
    fail as store errors, and the layers' outage policies decide (as for any Redis outage)."""
    url = redis_sentinel.url()
    budget = BUDGET_STORES.open(url, key_prefix=prefix)
    exact = EXACT_STORES.open(url, prefix=prefix)
    keys = KEY_STORES.open(url, prefix=prefix)
    slots = SlotClock().slots(time.time())
    limits = _limits(requests_per_minute=5)
    assert (await budget.reserve("acme", slots, _amounts(1), limits, 60)).allowed
    await exact.set("t:1", b"answer", 60)
    ident, key = new_key()
    await keys.add(KeyRecord(id=ident, hash=hash_key(key), tenant="acme"))
    old = redis_sentinel.master_address()
    # the writes reached the replica before the failover (WAIT: one replica acknowledged)
    assert await exact.client.execute_command("WAIT", 1, 2000) == 1

    # meanwhile another store keeps reserving: each call succeeds or fails as a StoreError (what the
    # budget's failure_mode then handles) within its timeout, never anything else, never a hang
    during = BUDGET_STORES.open(url, key_prefix=prefix, timeout=1.0)
    outcomes: list[tuple[str, float]] = []
    stop = asyncio.Event()

    async def keep_reserving() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await during.reserve("busy", slots, _amounts(1), _limits(), 60)
                outcomes.append(("ok", time.monotonic() - started))
            except StoreError:
                outcomes.append(("store error", time.monotonic() - started))
            await asyncio.sleep(0.01)

    background = asyncio.create_task(keep_reserving())
    new = await anyio.to_thread.run_sync(redis_sentinel.failover)
    stop.set()
    await background
    await during.aclose()
    assert new != old
    assert outcomes
    assert {kind for kind, _ in outcomes} <= {"ok", "store error"}
    assert max(seconds for _, seconds in outcomes) < 2.5  # the timeout, plus a busy machine's slack
    # the old master took writes until the client learnt of the new one (MasterWatch: within a second
    # or two), and those were lost when it became a replica; without the watch, nearly all of them
    # (the ten seconds until the sentinels demote it)
    accepted = sum(1 for kind, _ in outcomes if kind == "ok")
    assert (await budget.usage("busy", slots))[0] > accepted / 2

    # the very next calls succeed, on the new master, with the data written before
    fast = budget._loop_clients.fast()
    assert isinstance(fast, SentinelFastRedis)
    reservation = await budget.reserve("acme", slots, _amounts(1), limits, 60)
    assert reservation.allowed
    assert reservation.used[0] == 2
    assert fast._address == new
    assert await exact.get("t:1") == b"answer"
    await exact.set("t:2", b"after", 60)
    record = await keys.get(ident)
    assert record is not None
    assert record.tenant == "acme"
    assert await keys.revoke(ident) is not None
    client = exact.client
    info = await client.info("server")
    assert int(info["tcp_port"]) == new[1]
    await _clean(client, prefix)
    for store in (budget, exact, keys):
        await store.aclose()
