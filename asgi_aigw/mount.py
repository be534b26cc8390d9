"""Mount the router under a prefix in front of an app that has no mounting of its own (Django)."""

from __future__ import annotations

from typing import Any

import orjson

from ._types import ASGIApp, Receive, Scope, Send
from .http import send_json_bytes


class PrefixMount:
    """Send requests under ``prefix`` to ``router`` and everything else to ``app``.

    The router sees ``root_path`` extended by the prefix and the full ``path`` (Starlette's convention).
    Lifespan events are answered here and close the router's clients at shutdown; they are not passed
    to ``app``, since Django and other lifespan-less apps reject them.
    """

    def __init__(self, app: ASGIApp, router: Any, *, prefix: str = "/ai") -> None:
        if not prefix.startswith("/") or prefix == "/":
            raise ValueError("prefix must start with '/' and name a sub-path, such as '/ai'")
        self.app = app
        self.router = router
        self.prefix = prefix.rstrip("/")
        self._prefix_slash = self.prefix + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path", "")
            path: str = scope.get("path", "")
            local = path[len(root) :] if root and path.startswith(root) else path
            if local == self.prefix or local.startswith(self._prefix_slash):
                await self.router({**scope, "root_path": root + self.prefix}, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                aclose = getattr(self.router, "aclose", None)
                if aclose is not None:
                    await aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def mount_router(app: ASGIApp, router: Any, *, prefix: str = "/ai") -> PrefixMount:
    """``app`` with ``router`` mounted at ``prefix``: ``application = mount_router(django_app, router)``."""
    return PrefixMount(app, router, prefix=prefix)


class NotFoundApp:
    """The app behind the router when the gateway runs standalone: an index, a health check, 404s."""

    def __init__(self, prefix: str) -> None:
        self._index = orjson.dumps(
            {
                "name": "asgi_aigw",
                "openai_base_url": f"{prefix}/v1",
                "endpoints": [
                    f"POST {prefix}/v1/chat/completions",
                    f"POST {prefix}/v1/embeddings",
                    f"GET {prefix}/v1/models",
                ],
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path in ("", "/"):
            await send_json_bytes(send, 200, self._index)
        elif path == "/healthz":
            await send_json_bytes(send, 200, b'{"status":"ok"}')
        else:
            body = orjson.dumps(
                {
                    "error": {
                        "message": f"There is no route {path}; the gateway's API is described at /.",
                        "type": "invalid_request_error",
                        "code": "unknown_route",
                        "param": None,
                    }
                }
            )
            await send_json_bytes(send, 404, body)
