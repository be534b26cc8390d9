"""build_app and mount_router: the router under a prefix, everything else to the app behind it."""

from __future__ import annotations

from typing import Any

import httpx
from asgiref.testing import ApplicationCommunicator

from asgi_aigw import ProviderRouter, build_app, mount_router
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def plain_app(scope: Any, receive: Any, send: Any) -> None:
    """Stands for Django: rejects lifespan, answers every HTTP path with its own text."""
    if scope["type"] != "http":
        raise ValueError("Django can only handle ASGI/HTTP connections")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"app saw {scope['path']}".encode()})


async def test_mount_router_sends_the_prefix_to_the_router(fake: FakeProvider) -> None:
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    app = mount_router(plain_app, router, prefix="/ai")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        answer = await client.post("/ai/v1/chat/completions", json=HELLO)
        other = await client.get("/admin/")
        lookalike = await client.get("/aide")
    assert answer.json()["choices"][0]["message"]["content"] == "Echo: hi"
    assert other.text == "app saw /admin/"
    assert lookalike.text == "app saw /aide"  # /aide is not under /ai


async def test_lifespan_is_answered_without_the_app_and_closes_the_router(fake: FakeProvider) -> None:
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    closed: list[bool] = []
    original = router.aclose

    async def aclose() -> None:
        closed.append(True)
        await original()

    router.aclose = aclose  # type: ignore[method-assign]
    app = mount_router(plain_app, router)
    communicator = ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await communicator.send_input({"type": "lifespan.startup"})
    assert (await communicator.receive_output(2))["type"] == "lifespan.startup.complete"
    await communicator.send_input({"type": "lifespan.shutdown"})
    assert (await communicator.receive_output(2))["type"] == "lifespan.shutdown.complete"
    assert closed == [True]


async def test_build_app_standalone_has_an_index_health_and_json_404(fake: FakeProvider) -> None:
    app = build_app(fake_config(), transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        index = await client.get("/")
        health = await client.get("/healthz")
        missing = await client.get("/nope")
        answer = await client.post("/ai/v1/chat/completions", json=HELLO)
    assert index.json()["openai_base_url"] == "/ai/v1"
    assert health.json() == {"status": "ok"}
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_route"
    assert answer.status_code == 200
