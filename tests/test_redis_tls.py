"""Redis over TLS: a ``rediss://`` URL's ``ssl_*`` options mean the same to the request path's minimal
client and to redis-py (the CLIs, scans), against a real redis-server listening over TLS only. A
private authority is trusted when the URL names it, and only then; a server that asks for a client
certificate gets the URL's; verification is off only when the URL says so; options that no client
would take are configuration errors, found when the configuration is read."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from asgi_aigw.budget import RedisBudgetStore, StoreError
from asgi_aigw.budget.windows import WINDOW_NAMES, WINDOWS, SlotClock
from asgi_aigw.cli import main
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.stores.redis_clients import LoopRedisClients
from asgi_aigw.stores.redis_tls import TlsOptions, tls_options
from asgi_aigw.stores.redis_topology import parse_topology, server_url
from asgi_aigw.stores.registry import BUDGET_STORES, EXACT_STORES
from asgi_aigw.stores.resp import Endpoint

from .redis_server import RedisServer
from .tls_certs import TlsFiles

pytestmark = pytest.mark.e2e


def _limits(**values: int) -> list[int]:
    return [values.get(window.name, -1) for window in WINDOWS]


def _amounts(tokens: int) -> list[int]:
    return [
        1 if window.metric == "requests" else tokens if window.metric == "tokens" else 0 for window in WINDOWS
    ]


async def _reserve(url: str, prefix: str, tokens: int = 10) -> bool:
    """One reservation through the minimal client (the request path), the store closed after."""
    store = BUDGET_STORES.open(url, key_prefix=prefix, timeout=3)
    try:
        slots = SlotClock().slots(time.time())
        return (
            await store.reserve("acme", slots, _amounts(tokens), _limits(tokens_per_minute=100), 60)
        ).allowed
    finally:
        await store.aclose()


@pytest.fixture
def prefix() -> str:
    return f"aigw-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(scope="module")
def mutual_tls(tls_files: TlsFiles) -> Iterator[RedisServer]:
    """A TLS server that asks every client for a certificate signed by the test authority."""
    from .conftest import _need_tls_binaries

    _need_tls_binaries()
    server = RedisServer(tls=tls_files, auth_clients=True)
    server.start()
    yield server
    server.close()


# -- the URL's options -------------------------------------------------------------------------------


def test_options_are_read_from_the_query() -> None:
    url = (
        "rediss://cache:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/etc/me.crt&ssl_keyfile=/etc/me.key"
        "&ssl_check_hostname=false"
    )
    tls = Endpoint.from_url(url).tls
    assert tls == TlsOptions("/etc/ca.pem", None, "/etc/me.crt", "/etc/me.key", "required", False)
    assert Endpoint.from_url("rediss://cache/0").tls == TlsOptions()  # verified against the system's CAs
    assert Endpoint.from_url("rediss://cache/0?ssl_cert_reqs=none").tls == TlsOptions(cert_reqs="none")
    # what redis-py's cluster and sentinel clients are given: the same options
    assert tls is not None
    assert tls.redis_py() == {
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_certfile": "/etc/me.crt",
        "ssl_keyfile": "/etc/me.key",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": False,
    }
    # no verification, no hostname check (a context cannot check a name it does not verify)
    none = TlsOptions(cert_reqs="none")
    assert none.redis_py()["ssl_check_hostname"] is False
    context = none.context()
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
    default = TlsOptions().context()
    assert (default.verify_mode, default.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_topology_urls_over_tls_reach_every_node_over_tls() -> None:
    cluster = parse_topology("rediss+cluster://:pw@a:7000,b:7001?ssl_ca_certs=/etc/ca%20dir/ca.pem")
    assert cluster.kind == "cluster"
    assert cluster.tls == TlsOptions(ca_certs="/etc/ca dir/ca.pem")
    # a node the cluster names is reached with the same TLS options
    assert (
        server_url(cluster, "10.0.0.5", 7002)
        == "rediss://:pw@10.0.0.5:7002/0?ssl_ca_certs=/etc/ca%20dir/ca.pem"
    )
    assert Endpoint.from_url(server_url(cluster, "10.0.0.5", 7002)).tls == cluster.tls
    sentinel = parse_topology("rediss+sentinel://s1,s2/main/2?ssl_cert_reqs=none")
    assert (sentinel.kind, sentinel.service, sentinel.db) == ("sentinel", "main", 2)
    assert server_url(sentinel, "m", 6379, 2) == "rediss://m:6379/2?ssl_cert_reqs=none"
    plain = parse_topology("redis+cluster://a:7000")
    assert plain.tls is None
    assert server_url(plain, "a", 7000) == "redis://a:7000/0"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://cache/0?ssl_ca_certs=/etc/ca.pem", "ssl_* options need a rediss:// URL"),
        ("redis+cluster://a:7000?ssl_cert_reqs=none", "ssl_* options need a rediss+cluster:// URL"),
        ("rediss://cache/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of required, optional, none"),
        ("rediss://cache/0?ssl_check_hostname=perhaps", "ssl_check_hostname must be true or false"),
        ("rediss://cache/0?ssl_keyfile=/etc/me.key", "ssl_keyfile without ssl_certfile"),
        ("rediss+cluster://a:7000?ssl_ca_path=/etc/certs", "a cluster takes ssl_ca_certs"),
        ("rediss://:hunter2@cache/0?ssl_ca_certs=/nonexistent/ca.pem", "its TLS files"),
        ("redis://cache:port/0", "Bad budget store URL"),
        # options the request path's client would drop (redis-py would apply them): refused too
        ("redis://cache/0?socket_timeout=5", "unknown option 'socket_timeout'"),
        ("redis+sentinel://s1/main?health_check_interval=3", "unknown option 'health_check_interval'"),
    ],
)
def test_bad_options_are_configuration_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="Bad budget store URL") as info:
        BUDGET_STORES.check(url)
    assert says in str(info.value)
    assert "hunter2" not in str(info.value)


def test_options_parse_as_redis_py_names_them() -> None:
    assert tls_options({"ssl_cert_reqs": ["OPTIONAL"]}, "u").cert_reqs == "optional"
    assert tls_options({"ssl_check_hostname": ["0"]}, "u").check_hostname is False
    assert tls_options({}, "u") == TlsOptions()


# -- a real server over TLS --------------------------------------------------------------------------


async def test_both_clients_take_a_private_authority_from_the_url(
    redis_tls: RedisServer, prefix: str
) -> None:
    url = redis_tls.url
    assert "ssl_ca_certs=" in url
    assert await _reserve(url, prefix, tokens=30)
    # redis-py, opened from the same URL, reads what the minimal client wrote
    clients = LoopRedisClients(url)
    keys = [key async for key in clients.redis().scan_iter(match=f"{prefix}*", count=1000)]
    assert keys
    store = RedisBudgetStore(url, key_prefix=prefix)
    usage = await store.usage("acme", SlotClock().slots(time.time()))
    assert usage[WINDOW_NAMES.index("tokens_per_minute")] == 30
    # the exact cache's set and get on the request path
    exact = EXACT_STORES.open(url, prefix=prefix)
    await exact.set("{acme}:entry", b"answer", 60)
    assert await exact.get("{acme}:entry") == b"answer"
    await exact.aclose()
    await store.aclose()
    if keys:
        await clients.redis().delete(*keys)
    await clients.aclose()


async def test_an_authority_that_did_not_sign_the_server_is_refused(
    redis_tls: RedisServer, tls_files: TlsFiles, prefix: str
) -> None:
    url = f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={tls_files.other_ca}"
    with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
        await _reserve(url, prefix)
    # the system's authorities did not sign it either
    with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
        await _reserve(f"rediss://127.0.0.1:{redis_tls.port}/0", prefix)


async def test_verification_is_off_only_when_the_url_says_so(redis_tls: RedisServer, prefix: str) -> None:
    assert await _reserve(f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_cert_reqs=none", prefix)


async def test_a_server_that_asks_for_a_client_certificate_gets_the_urls(
    mutual_tls: RedisServer, tls_files: TlsFiles, prefix: str
) -> None:
    base = f"rediss://127.0.0.1:{mutual_tls.port}/0?ssl_ca_certs={tls_files.ca}"
    with pytest.raises(StoreError):  # no certificate: the server ends the handshake
        await _reserve(base, prefix)
    url = f"{base}&ssl_certfile={tls_files.client_cert}&ssl_keyfile={tls_files.client_key}"
    assert await _reserve(url, prefix)
    clients = LoopRedisClients(url)  # redis-py presents it too
    assert await clients.redis().ping()
    await clients.aclose()


def test_the_cli_takes_the_same_url(
    redis_tls: RedisServer, tls_files: TlsFiles, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ("--store", redis_tls.url, "--key-prefix", prefix)
    assert main(["budget", "set", "acme", *store, "--requests-per-minute", "7"]) == 0
    capsys.readouterr()
    assert main(["budget", "show", "acme", *store, "--json"]) == 0
    windows = {w["window"]: w for w in orjson.loads(capsys.readouterr().out)["windows"]}
    assert windows["requests_per_minute"]["limit"] == 7
    wrong = f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={tls_files.other_ca}"
    assert main(["budget", "show", "acme", "--store", wrong, "--key-prefix", prefix]) == 2
    err = capsys.readouterr().err
    assert "the budget store cannot be reached" in err
    assert "Traceback" not in err
    assert main(["budget", "reset", "acme", *store]) == 0


def test_a_tls_file_given_relative_is_read_from_the_working_directory(
    tls_files: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ca.pem").write_bytes(tls_files.ca.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert BUDGET_STORES.check("rediss://cache/0?ssl_ca_certs=ca.pem")
