"""Redis Cluster and Sentinel URLs, opened with redis-py, for every Redis-backed store.

The forms are those of the ``limits`` package and of Redis-Sentinel-Url:

- ``redis+cluster://[[user]:password@]host:port[,host2:port2...]``: seed nodes (any reachable one is
  enough, the client learns the rest of the cluster from it). Database 0 only: a cluster has no other.
- ``redis+sentinel://[[user]:password@]host:port[,host2:port2...]/service_name[/db]``: the sentinels,
  then the name they monitor the master under. The password is the master's; sentinels that require
  one take ``?sentinel_password=...``.

``rediss+cluster://`` and ``rediss+sentinel://`` are the same over TLS, to every node (the sentinels
too), with the ``ssl_*`` options of :mod:`.redis_tls` in the query.

The port defaults to 6379 for cluster nodes and 26379 for sentinels. A store's scripts touch only keys
of one hash tag (``{tenant}``), so each runs on one cluster slot.

The request path's commands go through the minimal client of :mod:`.resp`, as with ``redis://``: at the
master the sentinels name (:class:`SentinelFastRedis`), at the master of each key's slot in a cluster
(:class:`ClusterFastRedis`); redis-py (:class:`RedisPyCalls`) carries what needs more (learning the slot
map, redirects, failovers): through it alone a call costs about three times the client CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote

from ..kernel.optional import require
from ..kernel.url_text import hide_password
from .redis_tls import TLS_OPTIONS, TlsOptions, tls_options
from .resp import ConnectionLost, Endpoint, FastRedis, RespCaller, RespError

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: Schemes whose clients come from this module rather than from a single server's URL.
TOPOLOGY_SCHEMES = CLUSTER_SCHEMES + SENTINEL_SCHEMES


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL."""

    kind: Literal["cluster", "sentinel"]
    nodes: tuple[tuple[str, int], ...]
    service: str | None
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    #: TLS to every node (``rediss+...``), else None.
    tls: TlsOptions | None = None


def _node(text: str, default_port: int, url: str) -> tuple[str, int]:
    """``host:port`` of one node (``url``, shown in errors, has its password hidden already)."""
    host, port = text, ""
    if text.startswith("["):  # [::1]:7000
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"a node with a bad address ({text!r}) in {url!r}")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"a node without a host in {url!r}")
    try:
        number = int(port) if port else default_port
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise ValueError(f"a node with a bad port ({text!r}) in {url!r}")
    return host, number


def parse_topology(url: str) -> RedisTopology:
    """The URL's parts; a :class:`ValueError` that says what is wrong and the expected form (and shows
    the URL with its passwords hidden: the message ends up in logs)."""
    shown = hide_password(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in TOPOLOGY_SCHEMES:
        raise ValueError(f"not a Redis Cluster or Sentinel URL: {shown!r}")
    cluster = scheme in CLUSTER_SCHEMES
    form = (
        f"{scheme}://[:password@]host:port[,host:port...]"
        if cluster
        else f"{scheme}://[:password@]host:port[,host:port...]/service_name[/db]"
    )
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(n.strip(), 6379 if cluster else 26379, shown) for n in hosts.split(",") if n.strip())
    if not nodes:
        raise ValueError(f"no nodes in {shown!r}: use {form}")
    query = parse_qs(query_text)
    segments = [unquote(s) for s in path.split("/") if s]
    service: str | None = None
    if cluster:
        db_text = segments[0] if segments else query.get("db", ["0"])[0]
        if len(segments) > 1:
            raise ValueError(f"unexpected path in {shown!r}: use {form}")
    else:
        service = segments[0] if segments else query.get("service_name", [""])[0]
        if not service:
            raise ValueError(f"no service name in {shown!r}: use {form}")
        if len(segments) > 2:
            raise ValueError(f"unexpected path in {shown!r}: use {form}")
        db_text = segments[1] if len(segments) > 1 else query.get("db", ["0"])[0]
    try:
        db = int(db_text)
    except ValueError:
        db = -1
    if db < 0:
        raise ValueError(f"a bad database number ({db_text!r}) in {shown!r}: use {form}")
    if cluster and db != 0:
        raise ValueError(f"a Redis Cluster has database 0 only, not {db} ({shown!r})")
    sentinel_password = query.get("sentinel_password", [None])[0]
    kind: Literal["cluster", "sentinel"] = "cluster" if cluster else "sentinel"
    tls = tls_options(query, shown) if scheme.startswith("rediss+") else None
    if tls is None and any(name.startswith("ssl_") for name in query):
        raise ValueError(f"ssl_* options need a rediss+{kind}:// URL (TLS), not {shown!r}")
    unknown = sorted(set(query) - {"db", "service_name", "sentinel_password", *TLS_OPTIONS})
    if unknown:  # dropped silently otherwise: timeouts and pool sizes are the store's own settings
        raise ValueError(
            f"unknown option {unknown[0]!r} in {shown!r}: it takes db, service_name, sentinel_password "
            "and the ssl_* options"
        )
    if cluster and tls is not None and tls.ca_path:  # redis-py's cluster client has no such option
        raise ValueError(f"a cluster takes ssl_ca_certs (a file), not ssl_ca_path (in {shown!r})")
    return RedisTopology(kind, nodes, service, db, username, password, sentinel_password, tls)


def check_redis_url(url: str) -> None:
    """A :class:`ValueError` for a Redis URL (one server, a cluster or a sentinel set) that cannot work,
    found when the configuration is read rather than on the first request: a sentinel URL without its
    service name, an option no client would apply, a TLS certificate file that cannot be read."""
    topology = url.partition("://")[0].lower() in TOPOLOGY_SCHEMES
    tls = parse_topology(url).tls if topology else Endpoint.from_url(url).tls
    if tls is not None:
        try:
            tls.context()
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"its TLS files ({hide_password(url)!r}): {exc}") from None


def open_topology_client(url: str, *, timeout: float, max_connections: int) -> tuple[Any, list[Any]]:
    """A ``redis.asyncio`` client for the URL, and the other clients it opened (sentinels) to close.

    Calls fail fast like those of ``redis://`` stores: one retry without back-off (a stale connection,
    a moved slot, a master that was just demoted), then the store's caller decides what an outage means.
    """
    topology = parse_topology(url)
    retry = require("redis.asyncio.retry", "redis").Retry(require("redis.backoff", "redis").NoBackoff(), 1)
    common: dict[str, Any] = {
        "username": topology.username,
        "password": topology.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
        "retry": retry,
    }
    tls = topology.tls.redis_py() if topology.tls is not None else {}
    if topology.kind == "cluster":
        cluster = require("redis.asyncio.cluster", "redis")
        client = cluster.RedisCluster(
            startup_nodes=[cluster.ClusterNode(host, port) for host, port in topology.nodes],
            # per node, well above what the gates let through (the request path's calls and a budget
            # store's redis-py calls, max_connections each): past it redis-py raises rather than queues
            max_connections=4 * max_connections,
            **common,
            **tls,
        )
        return client, []
    sentinel = _sentinel_class()(
        list(topology.nodes),
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "password": topology.sentinel_password,
            **tls,
        },
    )
    # ssl=True: redis-py's pool opens its sentinel-managed connections to the master over TLS
    client = sentinel.master_for(topology.service, db=topology.db, **common, **tls)
    return client, [MasterWatch(client.connection_pool), *sentinel.sentinels]


@functools.cache
def _sentinel_class() -> Any:
    module = require("redis.asyncio.sentinel", "redis")
    base: Any = module.Sentinel  # imported lazily (an optional dependency), so untyped here

    class Sentinel(base):  # type: ignore[misc]
        """redis-py's, with a short error when no sentinel names a master (redis-py's own holds the
        repr of every sentinel's client, a screenful in a log line or a CLI message)."""

        async def discover_master(self, service_name: str) -> Any:
            try:
                return await super().discover_master(service_name)
            except module.MasterNotFoundError as exc:
                where = ", ".join(
                    f"{s.connection_pool.connection_kwargs.get('host')}:"
                    f"{s.connection_pool.connection_kwargs.get('port')}"
                    for s in self.sentinels
                )
                raise module.MasterNotFoundError(
                    f"no sentinel names a master for {service_name!r} (asked {where}: down, or not "
                    "monitoring that name)"
                ) from exc

    return Sentinel


class MasterWatch:
    """Asks the sentinels every ``interval`` seconds which server is the master, and when that changed,
    closes redis-py's connections to the old one (the calls in flight on them are retried once, on the
    new); :class:`SentinelFastRedis` reads the address it records and moves on its next call.

    Without it a client learns of a failover only when its connection fails: the old master, while it
    is still up (``SENTINEL FAILOVER``, a partition), keeps taking writes until the sentinels turn it
    into a replica, some ten seconds later, and those writes are then lost (measured: a thousand budget
    reservations in the test's failover). Started on the running event loop; :meth:`aclose` stops it.
    """

    def __init__(self, pool: Any, interval: float = 1.0) -> None:
        self.pool = pool
        self.interval = interval
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            before = self.pool.master_address
            try:
                # redis-py's pool records the new address and closes its idle connections itself
                after = await self.pool.get_master_address()
            except Exception:  # no sentinel answers: the calls fail and report it; ask again later
                continue
            if before is not None and tuple(after) != tuple(before):
                await self.pool.disconnect(inuse_connections=True)

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def open_fast_client(url: str, client: Any, *, timeout: float, max_connections: int) -> RespCaller:
    """The request path's client for a cluster or sentinel URL, over ``client`` (redis-py's for the URL):
    the minimal client at the master of a Sentinel set, at each key's master in a cluster."""
    topology = parse_topology(url)
    if topology.kind == "sentinel":
        return SentinelFastRedis(client, topology, timeout=timeout, max_connections=max_connections)
    return ClusterFastRedis(client, topology, timeout=timeout, max_connections=max_connections)


def server_url(topology: RedisTopology, host: str, port: int, db: int = 0) -> str:
    """A ``redis://`` URL of one server of the topology, with its credentials (``rediss://`` and its TLS
    options for a ``rediss+`` topology)."""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    auth = ""
    if topology.password is not None:
        auth = f"{quote(topology.username or '', safe='')}:{quote(topology.password, safe='')}@"
    if topology.tls is None:
        return f"redis://{auth}{host}:{port}/{db}"
    query = topology.tls.query()
    return f"rediss://{auth}{host}:{port}/{db}" + (f"?{query}" if query else "")


#: Where the key is in the request path's commands (``EVALSHA sha numkeys key...``).
_KEY_INDEX = {b"GET": 1, b"SET": 1, b"EVALSHA": 3, b"EVAL": 3}
#: Replies that mean "not here, not now": the slot moved, or the cluster is resharding or failing over.
_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def routing_key(packed: bytes) -> bytes | None:
    """The key a packed ``GET``, ``SET`` or ``EVALSHA`` (with keys) routes by; ``None`` for others."""
    end = packed.index(b"\r\n")
    count = int(packed[1:end])
    position = end + 2
    wanted: int | None = None
    for index in range(count):
        end = packed.index(b"\r\n", position)
        size = int(packed[position + 1 : end])
        start = end + 2
        value = packed[start : start + size]
        position = start + size + 2
        if index == 0:
            wanted = _KEY_INDEX.get(value.upper())
            if wanted is None:
                return None
        elif index == 2 and wanted == 3 and value == b"0":  # a script without keys
            return None
        elif index == wanted:
            return value
    return None


class ClusterFastRedis:
    """The minimal client at each master, a call sent to the master of its key's slot as redis-py's
    slot map has it; redis-py (:class:`RedisPyCalls`) for everything else.

    Everything else: a command without a key (``SCRIPT LOAD`` goes to every master), the first calls
    (redis-py learns the slot map), a redirect (``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``: the
    command did not run; redis-py follows it and corrects its map, which the next calls use), and a
    closed connection (a master gone: redis-py finds the new one).
    """

    def __init__(self, client: Any, topology: RedisTopology, *, timeout: float, max_connections: int) -> None:
        self.client = client
        self.topology = topology
        self.timeout = timeout
        self.max_connections = max_connections
        self.slow = RedisPyCalls(client, timeout=timeout, max_connections=max_connections)
        self._nodes: dict[tuple[str, int], FastRedis] = {}
        self._key_slot = require("redis.crc", "redis").key_slot

    def _node(self, key: bytes) -> FastRedis | None:
        owners = self.client.nodes_manager.slots_cache.get(self._key_slot(key))
        if not owners:
            return None
        address = (str(owners[0].host), int(owners[0].port))
        fast = self._nodes.get(address)
        if fast is None:
            url = server_url(self.topology, *address)
            fast = self._nodes[address] = FastRedis(
                url, timeout=self.timeout, max_connections=self.max_connections
            )
        return fast

    async def call(self, packed: bytes) -> Any:
        key = routing_key(packed)
        fast = self._node(key) if key is not None else None
        if fast is None:
            return await self.slow.call(packed)
        try:
            return await fast.call(packed)
        except RespError as exc:
            if not str(exc).startswith(_REDIRECTS):
                raise
        except ConnectionError:
            pass
        return await self.slow.call(packed)

    async def aclose(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for fast in nodes:
            await fast.aclose()


def unpack(packed: bytes) -> list[bytes]:
    """The arguments of a command packed by :func:`.resp.pack`."""
    if not packed.startswith(b"*"):
        raise ValueError("not a packed command")
    end = packed.index(b"\r\n")
    count = int(packed[1:end])
    position = end + 2
    args: list[bytes] = []
    for _ in range(count):
        end = packed.index(b"\r\n", position)
        size = int(packed[position + 1 : end])
        start = end + 2
        args.append(packed[start : start + size])
        position = start + size + 2
    return args


class SentinelFastRedis:
    """The minimal client, pointed at the master the sentinels name: a Sentinel set's request path
    costs what one server's does.

    The master's address is the one redis-py's pool of the same URL holds (kept current by
    :class:`MasterWatch` and by every new connection); when it changes, calls go to a minimal client of
    the new master and the old one is closed. A call that fails on a closed connection or is refused
    with ``READONLY`` (the master it reached was demoted) asks the sentinels again and is sent once more.
    """

    def __init__(self, client: Any, topology: RedisTopology, *, timeout: float, max_connections: int) -> None:
        self.pool = client.connection_pool
        self.topology = topology
        self.timeout = timeout
        self.max_connections = max_connections
        self._address: tuple[str, int] | None = None
        self._fast: FastRedis | None = None
        self._asking = asyncio.Lock()  # one question to the sentinels at a time, not one per call
        self._errors = require("redis.exceptions", "redis").RedisError

    async def _client(self, *, ask: bool = False) -> FastRedis:
        address = self.pool.master_address
        if address is None or ask:
            known = self._address
            async with self._asking:
                address = self.pool.master_address
                # another call may have asked while this one waited: its answer will do
                if address is None or (ask and tuple(address) == known):
                    async with asyncio.timeout(self.timeout):
                        address = await self.pool.get_master_address()
        host, port = str(address[0]), int(address[1])
        if self._fast is None or (host, port) != self._address:
            old, self._address = self._fast, (host, port)
            url = server_url(self.topology, host, port, self.topology.db)
            self._fast = FastRedis(url, timeout=self.timeout, max_connections=self.max_connections)
            if old is not None:
                await old.aclose()
        return self._fast

    async def call(self, packed: bytes) -> Any:
        try:
            fast = await self._client()
        except self._errors as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        try:
            return await fast.call(packed)
        except ConnectionError:
            pass
        except RespError as exc:
            if not str(exc).startswith("READONLY"):
                raise
        try:
            fast = await self._client(ask=True)
        except self._errors as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        return await fast.call(packed)

    async def aclose(self) -> None:
        if self._fast is not None:
            await self._fast.aclose()
            self._fast = None


class RedisPyCalls:
    """The minimal client's ``call(packed)`` over a redis-py client (cluster or sentinel): one interface
    for the stores' request path whatever the topology.

    Replies are redis-py's (a ``SET`` answers ``True``, not ``b"OK"``); its errors are mapped to those of
    the minimal client: an error reply is a :class:`RespError` (``NOSCRIPT`` kept in front, so a script
    is loaded and the call retried), anything else a :class:`ConnectionLost`. At most
    ``max_connections`` calls are in flight per event loop (redis-py's pools refuse a burst beyond their
    size instead of queueing it), and each waits at most ``timeout`` seconds in all.
    """

    def __init__(self, client: Any, *, timeout: float, max_connections: int) -> None:
        self.client = client
        self.timeout = timeout
        self._gate = asyncio.Semaphore(max_connections)
        self._exceptions = require("redis.exceptions", "redis")

    async def call(self, packed: bytes) -> Any:
        args: list[Any] = unpack(packed)
        # redis-py routes (slot, all primaries for SCRIPT LOAD) and parses by the command's name as str
        args[0] = args[0].decode().upper()
        if args[0] == "SCRIPT" and len(args) > 1:
            args[1] = args[1].decode().upper()
        exceptions = self._exceptions
        async with self._gate:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self.client.execute_command(*args)
            except exceptions.NoScriptError as exc:
                raise RespError(f"NOSCRIPT {exc}") from exc
            except exceptions.ResponseError as exc:
                raise RespError(str(exc)) from exc
            except (exceptions.RedisError, exceptions.RedisClusterException) as exc:
                raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Nothing: the redis-py client is closed by its owner."""
