"""The in-process client: the official SDKs calling the gateway stack inside this process.

A view or route of the host app calls the stack as the user it has already authenticated, with no
socket, no second authentication and no header anyone could forge: the identity is put into the
request context by the transport itself (``source="app"``), before the first layer runs.

```python
stack = build_stack(config)
client = openai_client(stack, Identity(tenant="acme", user="alice"))
stream = await client.chat.completions.create(model="gpt-4o-mini", messages=[...], stream=True)
claude = anthropic_client(stack, Identity(tenant="acme", user="alice"))
message = await claude.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=[...])
```

:class:`StreamingASGITransport` is the httpx transport under it. Unlike ``httpx.ASGITransport``, which
collects the whole body first (httpx #2186), it returns as soon as the app sends its status line and
yields each body chunk as it is sent; closing the response early sends ``http.disconnect``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from .integrations.core import GatewayRequest, GatewayResponse, run_asgi
from .kernel.context import Identity, ensure_context, set_identity
from .kernel.optional import require
from .kernel.types import ASGIApp

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = ["IN_PROCESS_URL", "StreamingASGITransport", "anthropic_client", "http_client", "openai_client"]

#: The base URL in-process clients use; the host name never reaches a resolver.
IN_PROCESS_URL = "http://aigw.in-process"


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: GatewayResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.chunks():
                yield chunk
        except RuntimeError as exc:
            raise httpx.ReadError(str(exc)) from exc.__cause__

    async def aclose(self) -> None:
        await self._response.aclose()


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Call ``app`` in process; the response streams as the app sends it.

    With ``identity``, every request runs as that identity, set in the request context (never sent as
    a header), so the gateway's layers meter and log it as the app's own authenticated user.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        identity: Identity | None = None,
        client: tuple[str, int] = ("127.0.0.1", 50000),
        root_path: str = "",
    ) -> None:
        self.app = app
        self.identity = identity
        self.client = client
        self.root_path = root_path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        url = request.url
        scope = GatewayRequest(
            method=request.method,
            path=url.path,
            root_path=self.root_path,
            query_string=url.query,
            headers=list(request.headers.raw),
            body=body,
            scheme=url.scheme,
            client=self.client,
            server=(url.host, url.port or (443 if url.scheme == "https" else 80)),
        ).scope()
        if self.identity is not None:
            scope, ctx = ensure_context(scope)
            set_identity(ctx, self.identity, "app")
        try:
            response = await run_asgi(self.app, scope, body)
        except RuntimeError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            request=request,
        )


def http_client(app: ASGIApp, identity: Identity | None = None, **options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` into ``app`` as ``identity`` (``options`` go to the client)."""
    options.setdefault("base_url", IN_PROCESS_URL)
    options.setdefault("timeout", httpx.Timeout(600.0, connect=5.0))
    return httpx.AsyncClient(transport=StreamingASGITransport(app, identity=identity), **options)


def openai_client(app: ASGIApp, identity: Identity, **options: Any) -> openai.AsyncOpenAI:
    """``openai.AsyncOpenAI`` calling the gateway stack ``app`` in process as ``identity``.

    The API key is a placeholder: the gateway holds the provider keys and the identity travels in the
    request context. ``options`` go to ``AsyncOpenAI`` (``max_retries``, ``timeout``...). Without
    options, the client of a recent identity is reused: a new SDK client runs a thread on its first
    request (the SDK's platform probe), which would cost every request that makes one.
    """
    if not options:
        client: openai.AsyncOpenAI = _reused("openai", app, identity, _new_openai_client)
        return client
    return _new_openai_client(app, identity, options)


def anthropic_client(app: ASGIApp, identity: Identity, **options: Any) -> anthropic.AsyncAnthropic:
    """``anthropic.AsyncAnthropic`` calling the gateway stack ``app`` in process as ``identity``, on
    Anthropic's Messages routes (``/v1/messages``, ``/v1/messages/count_tokens``). As
    :func:`openai_client`: a placeholder key, ``options`` go to ``AsyncAnthropic``, and without options
    the client of a recent identity is reused."""
    if not options:
        client: anthropic.AsyncAnthropic = _reused("anthropic", app, identity, _new_anthropic_client)
        return client
    return _new_anthropic_client(app, identity, options)


#: SDK clients of recent (sdk, app, identity), oldest first; a client holds no socket or task.
_RECENT_CLIENTS = 1024
_recent: dict[tuple[str, ASGIApp, Identity], Any] = {}
_recent_lock = threading.Lock()


def _reused(sdk: str, app: ASGIApp, identity: Identity, new: Any) -> Any:
    key = (sdk, app, identity)
    with _recent_lock:  # event loops in several threads may share the stack
        client = _recent.pop(key, None) or new(app, identity, {})
        _recent[key] = client  # most recent last
        if len(_recent) > _RECENT_CLIENTS:
            del _recent[next(iter(_recent))]
    return client


def _new_openai_client(app: ASGIApp, identity: Identity, options: dict[str, Any]) -> openai.AsyncOpenAI:
    sdk = require("openai", "openai")
    options.setdefault("max_retries", 0)  # retries and fallbacks are the router's job
    transport = http_client(app, identity)
    client: openai.AsyncOpenAI = sdk.AsyncOpenAI(
        base_url=f"{IN_PROCESS_URL}/v1", api_key="in-process", http_client=transport, **options
    )
    return client


def _new_anthropic_client(
    app: ASGIApp, identity: Identity, options: dict[str, Any]
) -> anthropic.AsyncAnthropic:
    sdk = require("anthropic", "anthropic")
    options.setdefault("max_retries", 0)  # retries and fallbacks are the router's job
    transport: Any = http_client(app, identity)
    if not issubclass(sdk.DefaultAsyncHttpxClient, httpx.AsyncClient):
        # the SDK is built on httpx2 (anthropic 2.x) and refuses an httpx client
        from .httpx2_bridge import httpx2_client

        transport = httpx2_client(
            StreamingASGITransport(app, identity=identity),
            base_url=IN_PROCESS_URL,
            timeout=600.0,
        )
    # the SDK adds /v1/messages itself
    client: anthropic.AsyncAnthropic = sdk.AsyncAnthropic(
        base_url=IN_PROCESS_URL, api_key="in-process", http_client=transport, **options
    )
    return client
