"""SSE through the router, message by message (ASGITransport would hide buffering)."""

from __future__ import annotations

import orjson
from asgiref.testing import ApplicationCommunicator

from asgi_aigw import ProviderRouter
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, post_scope

BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "alpha beta gamma delta"}],
    }
)


async def test_each_event_leaves_as_the_provider_sends_it() -> None:
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.05))
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    communicator = ApplicationCommunicator(router, post_scope("/v1/chat/completions", BODY))
    await communicator.send_input({"type": "http.request", "body": BODY, "more_body": False})
    start = await communicator.receive_output(5)
    assert start["type"] == "http.response.start"
    assert dict(start["headers"])[b"content-type"].startswith(b"text/event-stream")
    bodies: list[bytes] = []
    while True:
        message = await communicator.receive_output(5)
        bodies.append(message["body"])
        if len(bodies) == 2:
            # the first content piece is out while the fake still has pieces to generate
            assert fake.completed_streams == 0
        if not message.get("more_body"):
            break
    events = [b for b in bodies if b]
    # role chunk, 5 content pieces, finish chunk, [DONE]: one message each, none merged by buffering
    assert len(events) == 8
    assert events[1].startswith(b"data: ")
    assert b'"content":"Echo:"' in events[1]
    assert events[-1] == b"data: [DONE]\n\n"
    await router.aclose()


async def test_disconnect_mid_stream_closes_the_upstream() -> None:
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.2))
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    communicator = ApplicationCommunicator(router, post_scope("/v1/chat/completions", BODY))
    await communicator.send_input({"type": "http.request", "body": BODY, "more_body": False})
    assert (await communicator.receive_output(5))["type"] == "http.response.start"
    await communicator.receive_output(5)  # the role chunk
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)  # the router returns promptly instead of streaming on
    assert fake.disconnects == 1
    assert fake.completed_streams == 0
