"""FastAPI: the gateway as an ``APIRouter`` whose identity comes from the app's own dependencies.

```python
def current_identity(user: User = Depends(current_active_user)) -> Identity:
    return Identity(tenant=user.org, user=user.name)

app.include_router(gateway_router(endpoint, identity=Depends(current_identity)), prefix="/ai")
```

The route is an ordinary route of the app: its CORS middleware, its dependencies (and their
sub-dependencies, database sessions included) and its exception handlers apply. A dependency that
raises (``HTTPException(401)``) answers as the app answers; one that returns ``None`` gets the
gateway's 401 in the OpenAI error shape. Streams pass through as ``StreamingResponse``, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from .core import GatewayEndpoint, IdentityResult
from .starlette import METHODS, serve

__all__ = ["gateway_router"]


def gateway_router(endpoint: GatewayEndpoint, *, identity: Any, **router_options: Any) -> APIRouter:
    """An ``APIRouter`` serving ``endpoint``; ``identity`` is a ``Depends(...)`` (or the dependency
    callable itself) returning an Identity, a tenant id or None."""
    dependency = identity if hasattr(identity, "dependency") else Depends(_callable(identity))
    router = APIRouter(**router_options)

    async def gateway(request: Request, who: IdentityResult = dependency) -> Response:
        return await serve(endpoint, request, who)

    router.add_api_route("/{path:path}", gateway, methods=METHODS, include_in_schema=False)
    return router


def _callable(identity: Any) -> Callable[..., Any]:
    if not callable(identity):
        raise TypeError("identity must be Depends(callable) or a callable returning an Identity")
    return identity  # type: ignore[no-any-return]
