"""The one lifespan helper: every layer that owns resources opens and closes them through it.

A middleware passes lifespan through to the app inside it (:func:`lifespan_passthrough`); the app at
the bottom of the stack answers it (:func:`serve_lifespan`). Either way the layer's ``on_startup`` runs
once the app inside has started, and ``on_shutdown`` once it has shut down, so the inner app's last
requests can still use what is closed. A hook's failure is logged with its traceback, never swallowed,
and never fails the server's startup or shutdown. Nothing depends on lifespan: servers that send none
(Django) simply never call the hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("asgi_aigw")

Hook = Callable[[], Awaitable[None]]


async def run_hook(hook: Hook | None, what: str) -> None:
    """Await ``hook``; a failure is logged with its traceback and goes no further."""
    if hook is None:
        return
    try:
        await hook()
    except Exception:  # a layer's resources must never fail the server's startup or shutdown
        logger.exception("error while %s a layer's resources (%s)", what, getattr(hook, "__qualname__", hook))


async def lifespan_passthrough(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
) -> None:
    """Run ``app``'s lifespan untouched, calling ``on_startup`` as its startup completes and
    ``on_shutdown`` as its shutdown completes."""

    async def send_wrapper(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete":
            await run_hook(on_startup, "starting")
        elif message["type"] == "lifespan.shutdown.complete":
            await run_hook(on_shutdown, "closing")
        await send(message)

    await app(scope, receive, send_wrapper)


async def serve_lifespan(
    receive: Receive, send: Send, *, on_startup: Hook | None = None, on_shutdown: Hook | None = None
) -> None:
    """Answer lifespan as the innermost app: ``on_startup`` before startup completes, ``on_shutdown``
    before shutdown completes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await run_hook(on_startup, "starting")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await run_hook(on_shutdown, "closing")
            await send({"type": "lifespan.shutdown.complete"})
            return
