"""Cross-site request checks for identities that come from cookies.

A browser attaches a site's cookies to any request to it, whoever wrote the page that sends it. A form or
a ``fetch`` with ``mode: "no-cors"`` on another site can POST ``text/plain`` to the gateway without a
CORS preflight, so a gateway that trusts the session cookie alone spends the victim's budget (cross-site
request forgery). Requiring a JSON content type forces a preflight on cross-site senders, and the
``Origin`` (or ``Referer``) header, which scripts cannot forge, must name the request's own host or an
origin the deployment trusts.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from ..kernel.errors import Forbidden
from ..kernel.types import Scope

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Methods with no side effects: a cross-site GET cannot spend anything.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@lru_cache(maxsize=1024)  # a site sees few distinct origins and hosts; parsing each is most of the cost
def normalise_origin(value: str) -> str | None:
    """``scheme://host:port`` in lower case with the port always written, or None if ``value`` is not
    an http(s) origin (``null``, a path, garbage)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def has_cookie(scope: Scope) -> bool:
    """Whether the request carries a ``Cookie`` header (the browser sent the site's cookies)."""
    return _header(scope, b"cookie") is not None


class CrossSiteCheck:
    """Refuses (403, OpenAI shape) cookie-authenticated requests that a foreign page could have sent."""

    __slots__ = ("trusted",)

    def __init__(self, trusted_origins: Iterable[str] = ()) -> None:
        trusted = set()
        for origin in trusted_origins:
            normal = normalise_origin(origin)
            if normal is None:
                raise ValueError(f"trusted origin {origin!r} must look like 'https://host[:port]'")
            trusted.add(normal)
        self.trusted = frozenset(trusted)

    def own_origin(self, scope: Scope) -> str | None:
        """The origin the request was addressed to: its scheme and ``Host`` header."""
        host = _header(scope, b"host")
        if host is None:
            server = scope.get("server")
            if not server:
                return None
            host = f"{server[0]}:{server[1]}"
        return normalise_origin(f"{scope.get('scheme', 'http')}://{host}")

    def __call__(self, scope: Scope) -> None:
        """Raise :class:`Forbidden` unless the request could only have come from a same-origin page."""
        if scope.get("method", "GET") in _SAFE_METHODS:
            return
        content_type = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise Forbidden(
                "Cookie-authenticated requests must be sent as JSON (Content-Type: application/json): "
                "a form or plain-text body could come from another site.",
                code="csrf_content_type",
            )
        origin_header = _header(scope, b"origin")
        source = "Origin"
        if origin_header is None:
            origin_header = _header(scope, b"referer")
            source = "Referer"
        if origin_header is None:
            raise Forbidden(
                "Cookie-authenticated requests must carry an Origin or Referer header naming this site; "
                "use a bearer token for calls from servers and scripts.",
                code="csrf_origin_missing",
            )
        origin = normalise_origin(origin_header)
        if origin is None or (origin != self.own_origin(scope) and origin not in self.trusted):
            raise Forbidden(
                f"Cross-site request refused: the {source} header does not name this site or a trusted "
                "origin (add it to tenant.trusted_origins if it is yours).",
                code="csrf_origin_mismatch",
            )
