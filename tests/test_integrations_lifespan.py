"""``WithGatewayLifespan``: an app that speaks no lifespan (Django) gets the gateway's lifespan answered
around it, so the stack is closed (the request log flushed) when the server shuts down."""

from __future__ import annotations

from typing import Any

from asgi_lifespan import LifespanManager

from asgi_aigw.integrations import GatewayEndpoint, WithGatewayLifespan


class RecordingStack:
    """A gateway stack that records the lifespan messages it receives."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            self.seen.append(message["type"])
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return


async def django_like(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_the_stack_is_started_and_closed_with_the_server() -> None:
    stack = RecordingStack()
    app = WithGatewayLifespan(django_like, GatewayEndpoint(stack))
    async with LifespanManager(app):
        assert stack.seen == ["lifespan.startup"]
    assert stack.seen == ["lifespan.startup", "lifespan.shutdown"]


async def test_http_goes_to_the_app() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    await WithGatewayLifespan(django_like, GatewayEndpoint(RecordingStack()))(
        {"type": "http", "path": "/"}, receive, send
    )
    assert sent[0]["status"] == 204
