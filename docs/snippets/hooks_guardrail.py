"""A guardrail that refuses a keyword, and an audit hook, on a gateway served in process.

FakeProvider stands in for OpenAI so this runs offline as it is; drop ``transports=`` (and set
OPENAI_API_KEY) for the real one.
"""

import asyncio

import openai

from asgi_aigw import GatewayConfig, Identity, build_stack
from asgi_aigw.client import openai_client
from asgi_aigw.hooks import HookFailure, HookRefusal, HookRequest, HookResponse, Hooks
from asgi_aigw.router import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

BLOCKED_WORDS = ("project-x",)


async def guardrail(request: HookRequest) -> None:
    """Refuse requests that mention a blocked word (the body is already redacted when a RedactMiddleware
    is in front: a hook never sees the PII it replaced)."""
    text = str(request.body.get("messages") or request.body.get("input") or "").lower()
    for word in BLOCKED_WORDS:
        if word in text:
            raise HookRefusal(f"Requests about {word} are not allowed.", status=403)


async def audit(response: HookResponse) -> None:
    """Runs once the answer has gone out: it never delays the client."""
    tokens = response.usage.total_tokens if response.usage else 0
    print(f"audit: {response.request.tenant_id} {response.model} {tokens} tokens: {response.text!r}")


async def on_error(failure: HookFailure) -> None:
    print(f"error: {failure.status} {failure.error.code} after {failure.attempts} upstream attempts")


hooks = Hooks(before_request=[guardrail], after_response=[audit], on_error=[on_error])


async def main() -> None:
    deployment = DeploymentConfig(
        provider="openai",
        model="gpt-4o-mini",
        base_url="http://fake.test/v1",
        api_key="sk-test-not-a-real-key",
    )
    config = GatewayConfig(router=RouterConfig(models=[ModelConfig(name="gpt", deployments=[deployment])]))
    fake = StreamingASGITransport(FakeProvider())
    stack = build_stack(config, transports={"http://fake.test/v1": fake}, hooks=hooks)
    client = openai_client(stack, Identity("acme"))

    await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "Hello"}])
    try:
        await client.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "What is project-x?"}]
        )
    except openai.PermissionDeniedError as exc:
        print(f"refused: {exc.status_code} {exc.code}")
    await hooks.drain()  # at shutdown the router's lifespan does this: let running hooks finish


if __name__ == "__main__":
    asyncio.run(main())
