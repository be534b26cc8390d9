"""Pass lifespan through to the inner app while closing a layer's own resources at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("asgi_aigw")


async def lifespan_passthrough(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]]
) -> None:
    """Run ``app``'s lifespan untouched; call ``on_shutdown`` just before shutdown completes.

    The layer's clients (Redis, HTTP) are closed after the inner app finished its own shutdown, so the
    inner app's last requests could still use them. Nothing depends on lifespan: servers that send none
    (Django) simply never close these clients before exit.
    """

    async def send_wrapper(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            try:
                await on_shutdown()
            except Exception:  # closing must never fail the shutdown
                logger.exception("error while closing a middleware's resources at shutdown")
        await send(message)

    await app(scope, receive, send_wrapper)
