"""Starlette: the gateway as routes of the app, after its own middleware (CORS, sessions, auth).

```python
app = Starlette(routes=[Mount("/ai", routes=gateway_routes(endpoint, identity=who_is_it))],
                middleware=[Middleware(CORSMiddleware, ...), Middleware(AuthenticationMiddleware, ...)])
```

``identity(request)`` (sync or async) returns an :class:`~asgi_aigw.kernel.context.Identity`, a tenant id
or ``None`` (401). FastAPI apps use :mod:`asgi_aigw.integrations.fastapi`, which shares this code.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..kernel.errors import GatewayError
from .core import GatewayEndpoint, GatewayRequest, IdentityResult, as_identity, error_response, not_logged_in

__all__ = ["gateway_routes", "read_limited", "serve"]

StarletteIdentity = Callable[[Request], "IdentityResult | Awaitable[IdentityResult]"]

#: The methods the gateway's routes use; anything else is answered by the stack (405 with Allow).
METHODS = ["GET", "POST"]


def _error(exc: GatewayError) -> Response:
    status, headers, body = error_response(exc)
    return Response(body, status_code=status, headers=dict(headers))


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` once it exceeds ``limit`` (read once, never twice)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def serve(endpoint: GatewayEndpoint, request: Request, who: IdentityResult) -> Response:
    """Answer ``request`` with the gateway as ``who`` (what the app's identity callable returned)."""
    identity = as_identity(who)
    if identity is None:
        return _error(not_logged_in())
    body = await read_limited(request, endpoint.max_body_bytes)
    if body is None:
        return _error(endpoint.too_large())
    scope = request.scope
    path: str = scope["path"]
    # the gateway is mounted where the route's {path} starts: a Mount puts that in root_path, an
    # include_router prefix does not, so it is computed from the path the route matched
    sub = "/" + str(request.path_params.get("path", ""))
    root_path = path[: -len(sub)] if path.endswith(sub) else scope.get("root_path", "")
    gateway_request = GatewayRequest(
        method=request.method,
        path=path,
        root_path=root_path,
        query_string=scope.get("query_string", b""),
        headers=scope.get("headers", []),
        body=body,
        scheme=scope.get("scheme", "http"),
        client=scope.get("client"),
        server=scope.get("server"),
        http_version=scope.get("http_version", "1.1"),
    )
    response = await endpoint.handle(gateway_request, identity)
    answer: Response
    if response.streaming:
        answer = StreamingResponse(_chunks(response.chunks()), status_code=response.status)
    else:
        answer = Response(await response.read(), status_code=response.status)
    # appended one by one: a header the stack sends twice stays twice
    for name, value in response.forward_headers():
        answer.headers.append(name, value)
    return answer


async def _chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    # a named generator, so a client that leaves closes it and the stack gets http.disconnect
    async for chunk in chunks:
        yield chunk


def gateway_routes(endpoint: GatewayEndpoint, *, identity: StarletteIdentity) -> list[Route]:
    """Routes serving the gateway below the ``Mount`` they are put in; ``identity(request)`` says who
    is calling, after the app's middleware ran."""

    async def gateway(request: Request) -> Response:
        who = identity(request)
        if inspect.isawaitable(who):
            who = await who
        return await serve(endpoint, request, who)

    return [Route("/{path:path}", gateway, methods=METHODS, include_in_schema=False)]
