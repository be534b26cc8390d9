"""A Starlette app with the router mounted at /ai and two middlewares added the Starlette way.

uvicorn app:app --port 8000          # from this directory, with gateway.yaml beside it
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from asgi_aigw import ProviderRouter, load_config
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.redact import RedactMiddleware

config = load_config(Path(__file__).with_name("gateway.yaml"))
router = ProviderRouter(config.router)


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


app = Starlette(
    routes=[Route("/hello", hello), Mount("/ai", app=router)],
    # outermost first; both act on the gateway's routes only, /hello passes through
    middleware=[
        Middleware(RedactMiddleware, config=config.redact),
        Middleware(SemanticCacheMiddleware, config=config.cache),
    ],
    # Starlette does not pass lifespan to mounted apps: this closes the router's connections
    lifespan=router.lifespan,
)
