"""End to end over a real uvicorn: the official openai SDK (key as ``Authorization: Bearer``) through the
whole gateway to FakeProvider, which never sees the client's key, and the official anthropic SDK (key as
``x-api-key``) through TenantMiddleware to a Messages endpoint; a bad key is each SDK's own
AuthenticationError."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.kernel.context import get_context
from asgi_aigw.tenant import TenantConfig, TenantMiddleware
from asgi_aigw.tenant.config import APIKeyEntry
from asgi_aigw.tenant.keys import hash_key, key_id, new_key
from asgi_aigw.testing import FakeProvider, ServerThread, serve

from .support import ContextSpy, fake_config

pytestmark = pytest.mark.e2e

DEPLOYMENT_KEY = "sk-test-fake"


def entry(key: str, tenant: str, **extra: Any) -> APIKeyEntry:
    return APIKeyEntry(id=key_id(key), hash=hash_key(key), tenant=tenant, **extra)


class Recorder:
    """Keeps the identity and the credential headers each request reached the inner app with."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str | None, str | None, str | None]] = []
        self.headers: list[set[str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            ctx = get_context(scope)
            assert ctx is not None
            self.seen.append((ctx.tenant_id, ctx.user_id, ctx.identity_source))
            self.headers.append({k.decode() for k, _ in scope["headers"]})
        await self.app(scope, receive, send)


@pytest.fixture
def upstream(fake: FakeProvider) -> Iterator[str]:
    with serve(fake) as base_url:
        yield base_url


async def test_openai_sdk_with_a_gateway_key_and_the_key_never_reaches_the_provider(
    fake: FakeProvider, upstream: str
) -> None:
    _, key = new_key()
    _, revoked = new_key()
    config = fake_config(base_url=upstream + "/v1", api_key=DEPLOYMENT_KEY)
    config.tenant = TenantConfig(
        api_keys=[entry(key, "acme", user="ci"), entry(revoked, "acme", revoked=True)]
    )
    spy = ContextSpy(build_app(config, env={}))
    gateway = ServerThread(spy)
    gateway.start()
    try:
        client = openai.AsyncOpenAI(base_url=f"{gateway.base_url}/ai/v1", api_key=key, max_retries=0)
        bad = openai.AsyncOpenAI(base_url=f"{gateway.base_url}/ai/v1", api_key=revoked, max_retries=0)
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}]
        )
        assert completion.choices[0].message.content == "Echo: Say hi"
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream it"}], stream=True
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert text == "Echo: Stream it"
        assert [(c.tenant_id, c.user_id, c.identity_source) for c in spy.contexts] == [
            ("acme", "ci", "api_key")
        ] * 2

        # the provider got the deployment's own key, and the client's key in no header at all
        assert len(fake.requests) == 2
        secret = key.rsplit("_", 1)[1]
        for request in fake.requests:
            assert request.headers["authorization"] == f"Bearer {DEPLOYMENT_KEY}"
            assert not any(secret in value for value in request.headers.values())
            assert secret.encode() not in request.body

        with pytest.raises(openai.AuthenticationError) as refused:
            await bad.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
            )
        assert refused.value.code == "revoked_api_key"
        assert len(fake.requests) == 2
        await client.close()
        await bad.close()
    finally:
        gateway.stop()


@pytest.mark.parametrize("sent_as", ["api_key", "x-api-key"])
async def test_anthropic_sdk_with_a_gateway_key_gets_anthropic_errors(
    fake: FakeProvider, sent_as: str
) -> None:
    """``api_key=``: however this SDK version sends it (anthropic 2.17 sends ``Authorization: Bearer``);
    ``x-api-key``: the header Claude Code and earlier SDK versions send, set explicitly."""
    _, key = new_key()
    _, unknown = new_key()
    recorder = Recorder(fake)
    app = TenantMiddleware(recorder, config=TenantConfig(api_keys=[entry(key, "acme")]))
    server = ServerThread(app)
    server.start()

    def sdk(credential: str) -> anthropic.AsyncAnthropic:
        if sent_as == "api_key":
            return anthropic.AsyncAnthropic(base_url=server.base_url, api_key=credential, max_retries=0)
        return anthropic.AsyncAnthropic(
            base_url=server.base_url, api_key=None, default_headers={"x-api-key": credential}, max_retries=0
        )

    try:
        async with sdk(key) as client:
            message = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Say hi"}]
            )
        assert message.content[0].type == "text"
        assert recorder.seen == [("acme", f"key-{key_id(key)}", "api_key")]
        if sent_as == "x-api-key":
            assert "x-api-key" in recorder.headers[0]
            assert "authorization" not in recorder.headers[0]

        async with sdk(unknown) as stranger:
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await stranger.messages.create(
                    model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "Say hi"}]
                )
        # the SDK parsed Anthropic's error shape: its type and message, not a generic failure
        assert refused.value.body == {
            "type": "error",
            "error": {
                "type": "authentication_error",
                "message": "The API key is not valid: check it, or ask for a new one.",
            },
        }
        assert len(recorder.seen) == 1
    finally:
        server.stop()
