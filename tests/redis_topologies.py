"""A real Redis Cluster (three masters) and a real Sentinel set (a master, a replica, three sentinels),
started on free loopback ports in a temporary directory and stopped afterwards, in plain TCP or over
TLS only (every link: clients, cluster bus, replication, sentinels). The fixtures in ``conftest.py``
start each once per test run."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from asgi_aigw.testing.server import free_port

from .redis_server import TLS_HINT, redis_binary, tls_client, tls_redis_binaries, tls_server_args
from .tls_certs import TlsFiles

SERVICE = "aigw-test"


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, the only choice before Redis 7) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def redis_cli() -> str | None:
    """The redis-cli that comes with the redis-server the tests start."""
    server = redis_binary()
    if server is None:
        return None
    beside = Path(server).parent / "redis-cli"
    return str(beside) if beside.exists() else shutil.which("redis-cli")


def _wait(what: str, ready: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Processes:
    """redis-server processes in one temporary directory, stopped and removed by :meth:`close`; with
    ``tls``, each listens over TLS only."""

    def __init__(self, prefix: str, tls: TlsFiles | None = None) -> None:
        binary, self.cli = redis_binary(), redis_cli()
        if tls is not None:
            binaries = tls_redis_binaries()
            if binaries is None:
                raise RuntimeError(f"no redis-server built with TLS: {TLS_HINT}")
            binary, self.cli = binaries
        if binary is None:
            raise RuntimeError("no redis-server to start")
        self.binary = binary
        self.tls = tls
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls is not None else "redis"

    @property
    def query(self) -> str:
        """The URL query trusting the test authority (``""`` in plain TCP)."""
        return f"?ssl_ca_certs={self.tls.ca}" if self.tls is not None else ""

    def client(self, port: int, host: str = "127.0.0.1") -> redis.Redis:
        """A redis-py client of one of the processes."""
        if self.tls is not None:
            return tls_client(self.tls, port, host=host)
        return redis.Redis(host=host, port=port, socket_timeout=1)

    def spawn(self, port: int, args: list[str]) -> None:
        workdir = self.dir / str(port)
        workdir.mkdir()
        listen = ["--port", str(port)] if self.tls is None else tls_server_args(self.tls, port)
        base = [*listen, "--bind", "127.0.0.1", "--dir", str(workdir)]
        self.processes[port] = subprocess.Popen(
            [self.binary, *args, *base], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir
        )

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterSet(_Processes):
    """Three masters, slots spread by ``redis-cli --cluster create``, no replicas."""

    def __init__(self, masters: int = 3, tls: TlsFiles | None = None) -> None:
        super().__init__("aigw-test-cluster-", tls)
        self.ports = [cluster_port() for _ in range(masters)]

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"{self.scheme}+cluster://{nodes}{self.query}"

    def start(self) -> None:
        cli = self.cli
        if cli is None:
            raise RuntimeError("no redis-cli to create the cluster with")
        tls_cluster = ["--tls-cluster", "yes"] if self.tls is not None else []
        for port in self.ports:
            self.spawn(
                port,
                [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", "2000",
                    "--save", "", "--appendonly", "no",
                    *tls_cluster,
                ],
            )  # fmt: skip
        for port in self.ports:
            _wait(f"node {port}", lambda port=port: bool(self.client(port).ping()))
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        cli_tls = ["--tls", "--cacert", str(self.tls.ca)] if self.tls is not None else []
        subprocess.run(
            [cli, *cli_tls, "--cluster", "create", *nodes, "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        for port in self.ports:
            _wait(f"cluster state ok on {port}", lambda port=port: self._ok(port))

    def _ok(self, port: int) -> bool:
        info = self.client(port).execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text and "cluster_known_nodes:3" in text


class SentinelSet(_Processes):
    """A master, its replica, and three sentinels watching them as :data:`SERVICE` (quorum two)."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        super().__init__("aigw-test-sentinel-", tls)
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    def url(self, db: int = 0) -> str:
        sentinels = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"{self.scheme}+sentinel://{sentinels}/{SERVICE}/{db}{self.query}"

    def start(self) -> None:
        plain = ["--save", "", "--appendonly", "no"]
        if self.tls is not None:  # the replica and the sentinels reach the master over TLS too
            plain += ["--tls-replication", "yes"]
        self.spawn(self.master_port, plain)
        self.spawn(self.replica_port, [*plain, "--replicaof", "127.0.0.1", str(self.master_port)])
        replica = self.client(self.replica_port)
        _wait("the replica in sync", lambda: replica.info("replication").get("master_link_status") == "up")
        # the sentinels start once the replica is in sync: their first look at the master lists it (the
        # next one is ten seconds later)
        for port in self.sentinel_ports:
            config = self.dir / f"sentinel-{port}.conf"
            config.write_text(
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            # the config file comes first: redis-server reads its first argument as one
            tls_replication = ["--tls-replication", "yes"] if self.tls is not None else []
            self.spawn(port, [str(config), "--sentinel", *tls_replication])
        for port in self.sentinel_ports:
            _wait(f"sentinel {port} to know the replica and the others", lambda port=port: self._ready(port))

    def _ready(self, port: int) -> bool:
        client = self.sentinel_client(port)
        replicas = client.sentinel_slaves(SERVICE)
        others = client.sentinel_sentinels(SERVICE)
        return bool(replicas) and len(others) == 2

    def sentinel_client(self, port: int | None = None) -> redis.Redis:
        return self.client(port or self.sentinel_ports[0])

    def master_address(self) -> tuple[str, int]:
        host, port = self.sentinel_client().sentinel_get_master_addr_by_name(SERVICE)
        return host.decode() if isinstance(host, bytes) else str(host), int(port)

    def failover(self, timeout: float = 15.0) -> tuple[str, int]:
        """``SENTINEL FAILOVER``; returns once the sentinels name the new master, it takes writes, and
        the old master has been turned into its replica (which also closes the old master's client
        connections: until then a client still connected to it could write there)."""
        before = self.master_address()
        self.sentinel_client().execute_command("SENTINEL", "FAILOVER", SERVICE)
        _wait("a new master", lambda: self.master_address() != before, timeout)
        host, port = self.master_address()
        _wait("the new master to take writes", lambda: self._role(host, port) == "master", timeout)
        _wait("the old master to be a replica", lambda: self._role(*before) == "slave", timeout)
        return host, port

    def _role(self, host: str, port: int) -> str:
        return str(self.client(port, host).info("replication")["role"])
