"""Mount the router under a prefix in front of an app that has no mounting of its own (Django)."""

from __future__ import annotations

from typing import Any

import orjson

from .http import send_json_bytes
from .lifespan import lifespan_passthrough, serve_lifespan
from .types import ASGIApp, Message, Receive, Scope, Send


class PrefixMount:
    """Send requests under ``prefix`` to ``router`` and everything else to ``app``.

    The router sees ``root_path`` extended by the prefix and the full ``path`` (Starlette's convention).
    Lifespan goes to ``app`` (a FastAPI or Starlette app runs its own startup and shutdown) and the
    router's clients are closed once ``app`` has shut down; an app that does not speak lifespan
    (Django raises, others return at once) gets none: it is answered here instead.
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
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path", "")
            path: str = scope.get("path", "")
            local = path[len(root) :] if root and path.startswith(root) else path
            if local == self.prefix or local.startswith(self._prefix_slash):
                await self.router({**scope, "root_path": root + self.prefix}, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        consumed: list[str] = []
        answered: list[str] = []

        async def app_receive() -> Message:
            message = await receive()
            consumed.append(message["type"])
            return message

        async def app_send(message: Message) -> None:
            answered.append(message["type"])
            await send(message)

        try:
            await lifespan_passthrough(self.app, scope, app_receive, app_send, on_shutdown=self._close_router)
        except Exception:
            if answered:  # the app speaks lifespan and failed: the server reports it
                raise
        if answered:
            return
        # The app does not speak lifespan: answer it here, including a startup the app read and dropped.
        if consumed and consumed[-1] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await serve_lifespan(receive, send, on_shutdown=self._close_router)

    async def _close_router(self) -> None:
        aclose = getattr(self.router, "aclose", None)
        if aclose is not None:
            await aclose()


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
