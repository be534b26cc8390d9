"""A Qdrant server over HTTPS: the vector store URL's ``ca_cert`` (a private authority) and
``verify=false`` reach qdrant-client's connection, checked with a real TLS server on loopback (the
requests that get through the handshake are noted); options qdrant-client would drop are refused."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from asgi_aigw.cache.qdrant_server import open_store, server_target
from asgi_aigw.kernel.errors import ConfigError

from .tls_certs import TlsFiles, https_recorder


@pytest.fixture
def https_server(tls_files: TlsFiles) -> Iterator[tuple[int, list[str]]]:
    with https_recorder(tls_files) as server:
        yield server


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("qdrant+https://q:6333?timeout=5", "unknown option 'timeout': it takes ca_cert, verify"),
        ("qdrant+http://q:6333?ca_cert=/etc/ca.pem", "need qdrant+https://"),
        ("qdrant+https://q:6333?verify=maybe", "must be true or false"),
        ("qdrant+https://q:6333?ca_cert=/nonexistent/ca.pem", "cannot be read"),
    ],
)
def test_options_it_does_not_take_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        server_target(url)
    assert says in str(info.value)


def test_the_target_and_its_verification(tls_files: TlsFiles) -> None:
    assert server_target("qdrant+http://q:6333") == ("http://q:6333", None)
    assert server_target("qdrant+https://q:6333?verify=false") == ("https://q:6333", False)
    target, verify = server_target(f"qdrant+https://q:6333?ca_cert={tls_files.ca}")
    assert target == "https://q:6333"
    assert isinstance(verify, ssl.SSLContext)
    assert verify.verify_mode == ssl.CERT_REQUIRED


async def _reach(url: str) -> str:
    """What the store's first call raised (the test server is no Qdrant: it always fails)."""
    store = open_store(url, collection="c")
    with pytest.raises(Exception) as info:
        await store.client.collection_exists("c")
    await store.aclose()
    return repr(info.value)


async def test_the_urls_authority_is_trusted_and_only_it(
    https_server: tuple[int, list[str]], tls_files: TlsFiles
) -> None:
    port, seen = https_server
    error = await _reach(f"qdrant+https://127.0.0.1:{port}?ca_cert={tls_files.other_ca}")
    assert "CERTIFICATE_VERIFY_FAILED" in error
    error = await _reach(f"qdrant+https://127.0.0.1:{port}")  # the system's authorities did not sign it
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert seen == []
    await _reach(f"qdrant+https://127.0.0.1:{port}?ca_cert={tls_files.ca}")
    assert seen  # through the handshake, verified against the URL's authority
    seen.clear()
    await _reach(f"qdrant+https://127.0.0.1:{port}?verify=false")
    assert seen
