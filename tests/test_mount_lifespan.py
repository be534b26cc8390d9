"""Lifespan through ``build_app(app=...)`` / ``mount_router``: the app's own startup and shutdown run,
the router is closed after the app, and an app that does not speak lifespan is answered for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from asgiref.testing import ApplicationCommunicator
from fastapi import FastAPI

from asgi_aigw import ProviderRouter, build_app, mount_router
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config


def _router(fake: FakeProvider, events: list[str]) -> ProviderRouter:
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    original = router.aclose

    async def aclose() -> None:
        events.append("router closed")
        await original()

    router.aclose = aclose  # type: ignore[method-assign]
    return router


async def test_a_fastapi_app_gets_its_lifespan_under_build_app(fake: FakeProvider) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append("app started")
        yield {"greeting": "hello"}
        events.append("app stopped")

    api = FastAPI(lifespan=lifespan)

    @api.get("/greeting")
    async def greeting(request: Any) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {"greeting": request.state.greeting}

    app = build_app(fake_config(), app=api, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    async with LifespanManager(app) as manager:
        assert events == ["app started"]
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post(
                "/ai/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
    assert answer.json()["choices"][0]["message"]["content"] == "Echo: hi"
    assert events == ["app started", "app stopped"]


async def test_the_router_closes_after_the_app_has_shut_down(fake: FakeProvider) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        events.append("app stopped")

    app = mount_router(FastAPI(lifespan=lifespan), _router(fake, events))
    async with LifespanManager(app):
        pass
    assert events == ["app stopped", "router closed"]


async def test_an_app_that_returns_at_once_is_answered_for(fake: FakeProvider) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # reads the startup event and returns without answering
            return

    events: list[str] = []
    app = mount_router(silent, _router(fake, events))
    communicator = ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await communicator.send_input({"type": "lifespan.startup"})
    assert (await communicator.receive_output(2))["type"] == "lifespan.startup.complete"
    await communicator.send_input({"type": "lifespan.shutdown"})
    assert (await communicator.receive_output(2))["type"] == "lifespan.shutdown.complete"
    assert events == ["router closed"]


async def test_a_failing_startup_of_the_app_is_reported(fake: FakeProvider) -> None:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield

    app = mount_router(FastAPI(lifespan=lifespan), _router(fake, []))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # as Starlette alone does: startup.failed for the server, then the exception for its log
    with pytest.raises(RuntimeError, match="database unreachable"):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "database unreachable" in sent[0]["message"]
