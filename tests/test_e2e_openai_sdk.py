"""End to end: the official openai SDK against the router mounted at /ai on a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.testing import FakeBehaviour, FakeProvider, ServerThread

from .support import eventually, fake_config

pytestmark = pytest.mark.e2e


@pytest.fixture
async def stack(fake: FakeProvider) -> AsyncIterator[tuple[str, FakeProvider]]:
    """FakeProvider on one uvicorn, the gateway (router mounted at /ai) on another."""
    upstream = ServerThread(fake)
    upstream.start()
    gateway = ServerThread(build_app(fake_config(base_url=upstream.base_url + "/v1"), env={}))
    gateway.start()
    try:
        yield gateway.base_url, fake
    finally:
        gateway.stop()
        upstream.stop()


def sdk(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/ai/v1", api_key="sk-test-client", max_retries=0)


async def test_openai_sdk_json_and_stream(stack: tuple[str, FakeProvider]) -> None:
    base_url, _ = stack
    client = sdk(base_url)
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}]
    )
    assert completion.choices[0].message.content == "Echo: Say hi"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3

    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream this please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Echo: Stream this please"
    assert usage is not None
    assert usage.completion_tokens == 4

    embedding = await client.embeddings.create(model="text-embedding-3-small", input="vector me")
    assert len(embedding.data[0].embedding) == 64  # the SDK asked for base64 and decoded it
    models = await client.models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    await client.close()


async def test_first_chunk_arrives_while_the_provider_is_still_generating(
    stack: tuple[str, FakeProvider],
) -> None:
    base_url, fake = stack
    fake.behaviour = FakeBehaviour(chunk_delay=0.25)
    client = sdk(base_url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three four five six"}],
        stream=True,
    )
    seen = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == 1:
                # a buffering gateway could only deliver this after the fake finished its stream
                assert fake.completed_streams == 0
    assert seen == 7
    assert fake.completed_streams == 1
    await client.close()


async def test_client_disconnect_cancels_the_upstream_stream(stack: tuple[str, FakeProvider]) -> None:
    base_url, fake = stack
    fake.behaviour = FakeBehaviour(chunk_delay=0.3)
    client = sdk(base_url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": " ".join(["word"] * 40)}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()  # the client goes away after the first piece
    assert await eventually(lambda: fake.disconnects == 1)
    assert fake.completed_streams == 0
    await client.close()


async def test_sdk_sees_a_mid_stream_failure_as_an_api_error(stack: tuple[str, FakeProvider]) -> None:
    base_url, fake = stack
    fake.behaviour = FakeBehaviour(cut_after=2)
    client = sdk(base_url)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d e"}], stream=True
    )
    with pytest.raises(openai.APIError, match="ended the stream"):
        async for _ in stream:
            pass
    await client.close()


async def test_sdk_gets_status_errors(stack: tuple[str, FakeProvider]) -> None:
    base_url, fake = stack
    client = sdk(base_url)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    fake.behaviour = FakeBehaviour(status=500)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    await client.close()
