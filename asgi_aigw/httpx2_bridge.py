"""The in-process transport for SDKs built on ``httpx2`` (the ``anthropic`` SDK from 2.x).

``httpx2`` is a fork of ``httpx`` with the same transport interface in another package, and such SDKs
refuse an ``httpx`` client. :class:`Httpx2Transport` converts each request to ``httpx``, sends it through
:class:`~asgi_aigw.client.StreamingASGITransport` and converts the answer back, streaming chunk by chunk.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .kernel.optional import require


def httpx2_client(transport: httpx.AsyncBaseTransport, **options: Any) -> Any:
    """An ``httpx2.AsyncClient`` whose requests go through ``transport`` (an ``httpx`` one)."""
    httpx2 = require("httpx2", "anthropic")
    return httpx2.AsyncClient(transport=_transport_type()(transport), **options)


@functools.cache
def _transport_type() -> type:
    """The bridge's transport class, built once: ``httpx2`` is imported only when a bridge is made."""
    httpx2 = require("httpx2", "anthropic")

    class _Stream(httpx2.AsyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, response: httpx.Response) -> None:
            self._response = response

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._response.aiter_raw():
                    yield chunk
            except httpx.TransportError as exc:
                raise httpx2.ReadError(str(exc)) from exc

        async def aclose(self) -> None:
            await self._response.aclose()

    class Httpx2Transport(httpx2.AsyncBaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self._inner = inner

        async def handle_async_request(self, request: Any) -> Any:
            forwarded = httpx.Request(
                request.method,
                str(request.url),
                headers=list(request.headers.raw),
                content=await request.aread(),
            )
            try:
                response = await self._inner.handle_async_request(forwarded)
            except httpx.TransportError as exc:
                raise httpx2.RemoteProtocolError(str(exc)) from exc
            return httpx2.Response(
                status_code=response.status_code,
                headers=list(response.headers.raw),
                stream=_Stream(response),
                request=request,
            )

        async def aclose(self) -> None:
            await self._inner.aclose()

    return Httpx2Transport
