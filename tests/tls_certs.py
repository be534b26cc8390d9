"""A private certificate authority for the TLS tests: the authority, a certificate for the servers
(``localhost`` and ``127.0.0.1``), and one for a client, written as PEM files in a directory; and an
HTTPS server that notes the requests that reached it (a handshake that failed leaves none)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from asgi_aigw.testing.server import ServerThread


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: An authority that signed none of them: a client trusting only it must refuse the servers.
    other_ca: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _authority(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    common: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, usage: list[x509.ObjectIdentifier]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(
    directory: Path, name: str, key: ec.EllipticCurvePrivateKey | None, cert: x509.Certificate
) -> Path:
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    return path


def make_tls_files(directory: Path) -> TlsFiles:
    """A fresh authority and certificates in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _authority("aigw test CA")
    # servers present theirs to clients and, in a cluster or a replica set, to each other
    server_key, server = _leaf(
        "aigw test redis", ca_key, ca, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    client_key, client = _leaf("aigw test client", ca_key, ca, [ExtendedKeyUsageOID.CLIENT_AUTH])
    _, other = _authority("aigw test other CA")
    return TlsFiles(
        ca=_write(directory, "ca", None, ca),
        server_cert=_write(directory, "server", server_key, server),
        server_key=directory / "server.key",
        client_cert=_write(directory, "client", client_key, client),
        client_key=directory / "client.key",
        other_ca=_write(directory, "other-ca", None, other),
    )


@contextlib.contextmanager
def https_recorder(tls: TlsFiles, *, ask_client: bool = False) -> Iterator[tuple[int, list[str]]]:
    """An HTTPS server on loopback with the test authority's certificate (asking clients for theirs
    when ``ask_client``): its port, and the paths of the requests that came through the handshake.
    Every request is answered with an error (HTTP 500, worded as ClickHouse words them)."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope["path"])
        body = b"Code: 999. DB::Exception: a TLS test server, not ClickHouse"
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    settings: dict[str, Any] = {"ssl_certfile": str(tls.server_cert), "ssl_keyfile": str(tls.server_key)}
    if ask_client:
        settings |= {"ssl_ca_certs": str(tls.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    server = ServerThread(app, lifespan="off", tls=settings)
    server.start()
    try:
        yield server.port, seen
    finally:
        server.stop()
