"""TLS options of a Redis URL, read the same way by the minimal client and by redis-py.

A ``rediss://``, ``rediss+cluster://`` or ``rediss+sentinel://`` URL is verified against the system's
certificate authorities by default. Its query may say otherwise, with redis-py's own option names, so
one URL means the same to both clients (the request path's and the CLIs'):

- ``ssl_ca_certs=/path/ca.pem`` (a private authority), ``ssl_ca_path=/path/dir``;
- ``ssl_certfile=...&ssl_keyfile=...`` (a client certificate, for servers that ask for one);
- ``ssl_cert_reqs=required|optional|none`` (``none``: no verification, for providers with self-signed
  certificates; anyone on the path can then read the traffic);
- ``ssl_check_hostname=true|false`` (whether the certificate must name the host; on by default).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..kernel.url_text import url_flag

#: ``ssl_cert_reqs`` values, as redis-py names them.
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
#: The query options read here.
TLS_OPTIONS = (
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How to open a TLS connection to a Redis server (see the module's docstring)."""

    ca_certs: str | None = None
    ca_path: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str = "required"
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        """The context for a connection, built as redis-py builds its own from the same options."""
        context = ssl.create_default_context()
        verify = _CERT_REQS[self.cert_reqs]
        context.check_hostname = self.check_hostname and verify != ssl.CERT_NONE
        context.verify_mode = verify
        if self.certfile or self.keyfile:
            context.load_cert_chain(certfile=self.certfile or "", keyfile=self.keyfile)
        if self.ca_certs or self.ca_path:
            context.load_verify_locations(cafile=self.ca_certs, capath=self.ca_path)
        return context

    def redis_py(self) -> dict[str, Any]:
        """The same options as redis-py's client keyword arguments (``ssl=True`` and ``ssl_*``)."""
        files = {
            "ssl_ca_certs": self.ca_certs,
            "ssl_ca_path": self.ca_path,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
        }
        return {
            "ssl": True,
            # only those given: redis-py's cluster client takes no ssl_ca_path
            **{name: value for name, value in files.items() if value},
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_check_hostname": self.check_hostname and self.cert_reqs != "none",
        }

    def query(self) -> str:
        """The options that differ from the defaults, as a URL query (``""`` when none do)."""
        values = {
            "ssl_ca_certs": self.ca_certs,
            "ssl_ca_path": self.ca_path,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_cert_reqs": None if self.cert_reqs == "required" else self.cert_reqs,
            "ssl_check_hostname": None if self.check_hostname else "false",
        }
        return "&".join(f"{name}={quote(value, safe='/')}" for name, value in values.items() if value)


def tls_options(query: Mapping[str, Sequence[str]], shown: str) -> TlsOptions:
    """The TLS options of a parsed URL query (``urllib.parse.parse_qs``); a :class:`ValueError` naming the
    option and the URL ``shown`` (its password hidden) for a value no client would take."""

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    cert_reqs = (one("ssl_cert_reqs") or "required").lower()
    if cert_reqs not in _CERT_REQS:
        raise ValueError(
            f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, not {cert_reqs!r} (in {shown!r})"
        )
    check = url_flag(one("ssl_check_hostname") or "true")
    if check is None:
        raise ValueError(f"ssl_check_hostname must be true or false (in {shown!r})")
    keyfile = one("ssl_keyfile")
    certfile = one("ssl_certfile")
    if keyfile and not certfile:
        raise ValueError(f"ssl_keyfile without ssl_certfile (in {shown!r}): give the certificate too")
    return TlsOptions(
        ca_certs=one("ssl_ca_certs"),
        ca_path=one("ssl_ca_path"),
        certfile=certfile,
        keyfile=keyfile,
        cert_reqs=cert_reqs,
        check_hostname=check,
    )
