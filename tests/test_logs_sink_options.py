"""The request log's sink URL options: each scheme takes its own and refuses any other, values are
checked when the URL is read (not at the first insert, in the writer thread), and ``clickhouses://``
passes its TLS options to the connection. The TLS tests run a real TLS server on loopback with a
private authority: the connection reaches it when the URL trusts that authority (or says not to
verify), not otherwise, and shows the URL's client certificate when the server asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from asgi_aigw.config import GatewayConfig
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.logs.clickhouse import ClickHouseSink
from asgi_aigw.logs.sink_url import parse_sink_url

from .tls_certs import TlsFiles, https_recorder


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("chdb://:memory:?tabel=requests", "unknown option 'tabel': chdb:// takes table, ttl_days, database"),
        ("jsonl:///tmp/requests.jsonl?fsync=sometimes", "fsync in the log sink URL"),
        ("clickhouse://h:8123/db?ca_cert=/etc/ca.pem", "ca_cert in the log sink URL"),
        ("clickhouses://h:8443/db?verify=maybe", "verify in the log sink URL"),
        ("clickhouse://h:8123/db?connect_timeout=soon", "connect_timeout in the log sink URL"),
        ("clickhouses://h:8443/db?send_receive_timeout=-1", "must be a number of seconds"),
        ("memory://?table=t&extra=1", "unknown option 'extra'"),
    ],
)
def test_options_a_scheme_does_not_take_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sink_url(url)
    assert says in str(info.value)


def test_options_a_scheme_takes() -> None:
    url = (
        "clickhouses://u:pw@ch.internal:8443/logs?ca_cert=/etc/ca.pem&verify=true"
        "&client_cert=/etc/me.crt&client_cert_key=/etc/me.key&connect_timeout=3"
    )
    parsed = parse_sink_url(url)
    assert parsed.options == {
        "ca_cert": "/etc/ca.pem",
        "verify": "true",
        "client_cert": "/etc/me.crt",
        "client_cert_key": "/etc/me.key",
        "connect_timeout": "3",
    }
    assert parse_sink_url("jsonl:///tmp/r.jsonl?fsync=1").options == {"fsync": "1"}


@pytest.fixture
def https_server(tls_files: TlsFiles) -> Iterator[tuple[int, list[str]]]:
    with https_recorder(tls_files) as server:
        yield server


@pytest.fixture
def https_server_asking(tls_files: TlsFiles) -> Iterator[tuple[int, list[str]]]:
    with https_recorder(tls_files, ask_client=True) as server:
        yield server


def _connect(url: str) -> str:
    """What connecting the sink to ``url`` raised (the test server is no ClickHouse: it always raises)."""
    sink = ClickHouseSink(url)
    with pytest.raises(Exception) as info:
        sink.client()
    return str(info.value)


def test_a_private_authority_from_the_url_is_trusted(
    https_server: tuple[int, list[str]], tls_files: TlsFiles
) -> None:
    port, seen = https_server
    base = f"clickhouses://default:@127.0.0.1:{port}/db?connect_timeout=3&send_receive_timeout=3"
    error = _connect(f"{base}&ca_cert={tls_files.other_ca}")
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert seen == []  # the handshake failed: no request came through
    error = _connect(f"{base}&ca_cert={tls_files.ca}")
    assert "CERTIFICATE_VERIFY_FAILED" not in error
    assert seen  # through TLS, verified against the URL's authority
    seen.clear()
    _connect(f"{base}&verify=false")  # no verification at all: only when the URL says so
    assert seen


def test_a_client_certificate_from_the_url_is_shown(
    https_server_asking: tuple[int, list[str]], tls_files: TlsFiles
) -> None:
    port, seen = https_server_asking
    base = f"clickhouses://default:@127.0.0.1:{port}/db?connect_timeout=3&send_receive_timeout=3"
    _connect(f"{base}&ca_cert={tls_files.ca}")
    assert seen == []  # the server asked for a certificate and got none
    _connect(
        f"{base}&ca_cert={tls_files.ca}&client_cert={tls_files.client_cert}&client_cert_key={tls_files.client_key}"
    )
    assert seen


def test_the_configuration_refuses_them_when_it_is_read() -> None:
    """Through the gateway's configuration, not only when the sink opens: the same checks, the same
    words, for the log sink, the vector store and the Redis stores."""
    cases = [
        ({"log": {"store": "chdb://:memory:?tabel=x"}}, "unknown option 'tabel': chdb:// takes"),
        ({"cache": {"vector_store": "qdrant+http://q:6333?ca_cert=/x"}}, "need qdrant+https://"),
        ({"budget": {"store": "redis://h/0?socket_timeout=1"}}, "unknown option 'socket_timeout'"),
    ]
    for data, says in cases:
        with pytest.raises(ValidationError) as info:
            GatewayConfig.model_validate(data)
        assert says in str(info.value)
        assert "Bad log store URL: The log sink URL" not in str(info.value)  # said once
