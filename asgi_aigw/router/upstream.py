"""One pooled client per upstream, and the one place transport errors are mapped.

httpx's request, response and transport types are kept (tests swap in ``httpx.MockTransport`` or an
ASGI transport), but requests go straight to the transport: ``httpx.AsyncClient``'s per-request extras
(a cookie jar, auth flows, redirects, URL merging) cost more than the proxying itself, and a shared
cookie jar would carry one tenant's upstream cookies into another tenant's requests. By default the
transport is aiohttp's connection pool (``httpx-aiohttp``): under concurrency httpx's own pool was the
bottleneck (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

import httpx

from ..errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ..providers.base import Deployment


@lru_cache(maxsize=256)
def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _aiohttp_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=max_connections,
            keepalive_timeout=30,
            ssl=ssl.create_default_context(),
            # the gateway talks to a handful of upstreams: cache their DNS answers
            ttl_dns_cache=300,
        )
        # trust_env=False: with it aiohttp reads ~/.netrc and the proxy variables in a thread on every request
        return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)

    return AiohttpTransport(client=session)


class UpstreamClient:
    """``build_request`` and ``send`` over one transport, with parsed URLs cached."""

    __slots__ = ("_transport", "_urls")

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._urls: dict[str, httpx.URL] = {}

    def build_request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes,
        timeout: httpx.Timeout,
    ) -> httpx.Request:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        # Host and Content-Length given up front spare httpx a linear header scan for each.
        full = {"host": parsed.netloc.decode("ascii"), "content-length": str(len(content)), **headers}
        return httpx.Request(
            method, parsed, headers=full, content=content, extensions={"timeout": timeout.as_dict()}
        )

    async def send(self, request: httpx.Request, *, stream: bool = True) -> httpx.Response:
        """The response with its body unread (``stream`` is accepted for httpx compatibility)."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class UpstreamClients:
    """Clients keyed by upstream origin, opened lazily on first use, closed by :meth:`aclose`.

    A client belongs to the event loop that opened it; a router used from another loop (tests, or
    Django's sync-to-async threads) gets its own clients instead of a broken pool.
    """

    def __init__(
        self,
        *,
        transport: Literal["aiohttp", "httpx"] = "aiohttp",
        max_connections: int = 256,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self._kind = transport
        self._max_connections = max_connections
        self._fixed = {origin_of(url): t for url, t in (transports or {}).items()}
        self._clients: dict[tuple[int, str], UpstreamClient] = {}

    def get(self, base_url: str) -> UpstreamClient:
        loop_id = id(asyncio.get_running_loop())
        origin = origin_of(base_url)
        client = self._clients.get((loop_id, origin))
        if client is None:
            client = UpstreamClient(self._open(origin))
            self._clients[(loop_id, origin)] = client
        return client

    def _open(self, origin: str) -> httpx.AsyncBaseTransport:
        fixed = self._fixed.get(origin)
        if fixed is not None:
            return fixed
        if self._kind == "aiohttp":
            return _aiohttp_transport(self._max_connections)
        limits = httpx.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        return httpx.AsyncHTTPTransport(limits=limits)

    async def aclose(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        for key in [key for key in self._clients if key[0] == loop_id]:
            client = self._clients.pop(key)
            with contextlib.suppress(Exception):
                await client.aclose()


def httpx_timeout(deployment: Deployment) -> httpx.Timeout:
    t = deployment.timeout
    return httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool)


def _aiohttp_kind(exc: BaseException) -> str | None:
    """Classify the aiohttp error behind an httpx one (httpx-aiohttp maps several to ConnectTimeout)."""
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp is a core dependency
        return None
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(cause, aiohttp.ClientError):
        return "broken"
    return None


def map_transport_error(exc: Exception, deployment: Deployment) -> GatewayError:
    """The gateway error for a failure to talk to an upstream (never includes the API key)."""
    where = f"{deployment.provider} ({origin_of(deployment.base_url)})"
    kind = _aiohttp_kind(exc)
    if kind is None:
        if isinstance(exc, httpx.ConnectError):
            kind = "connect"
        elif isinstance(exc, httpx.TimeoutException):
            kind = "timeout"
        else:
            kind = "broken"
    if kind == "connect":
        return UpstreamUnavailable(f"Could not connect to {where}.")
    if kind == "timeout":
        return UpstreamTimeout(f"{where} did not answer in time.")
    return UpstreamError(f"{where} closed the connection or sent a malformed answer.")


@contextlib.contextmanager
def mapped_transport_errors(deployment: Deployment) -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        raise map_transport_error(exc, deployment) from exc
    except OSError as exc:  # a transport that does not map its errors
        raise UpstreamUnavailable(f"Could not reach {deployment.provider}: {exc.strerror or exc}") from exc
