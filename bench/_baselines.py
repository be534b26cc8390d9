"""Baseline ASGI apps the benchmarks compare the gateway with, each as bare as it can be.

- ``fixed_json``: answers a fixed chat completion without reading anything (the ceiling of the server).
- ``httpx_proxy`` / ``aiohttp_proxy``: forward the body to ``BENCH_UPSTREAM`` with one shared client and
  return the answer (streaming it through), no parsing: the cost of proxying alone.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9001/v1/chat/completions")

FIXED = orjson.dumps(
    {
        "id": "chatcmpl-fixed",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Echo: hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
    }
)


async def _read(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def fixed_json(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await _read(receive)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(FIXED)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": FIXED})


class _HttpxProxy:
    def __init__(self) -> None:
        self.client: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        import httpx

        if self.client is None:
            self.client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
            )
        body = await _read(receive)
        request = self.client.build_request(
            "POST", UPSTREAM, content=body, headers={"content-type": "application/json"}
        )
        response = await self.client.send(request, stream=True)
        try:
            headers = [(b"content-type", response.headers.get("content-type", "application/json").encode())]
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


class _AiohttpProxy:
    def __init__(self) -> None:
        self.session: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        body = await _read(receive)
        async with self.session.post(
            UPSTREAM, data=body, headers={"content-type": "application/json"}
        ) as response:
            headers = [(b"content-type", response.headers.get("content-type", "application/json").encode())]
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


httpx_proxy = _HttpxProxy()
aiohttp_proxy = _AiohttpProxy()


def gateway(transport: str) -> Any:
    """The router mounted at /ai in front of ``BENCH_UPSTREAM``'s FakeProvider."""
    from asgi_aigw import build_app
    from asgi_aigw.config import GatewayConfig
    from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig

    base_url = UPSTREAM.rsplit("/chat/completions", 1)[0]
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="gpt-4o-mini",
                    deployments=[
                        DeploymentConfig(model="gpt-4o-mini", base_url=base_url, api_key="sk-bench-fake")
                    ],  # type: ignore[arg-type]
                )
            ],
            transport=transport,  # type: ignore[arg-type]
        )
    )
    return build_app(config, env={})


def gateway_aiohttp() -> Any:
    return gateway("aiohttp")


def gateway_httpx() -> Any:
    return gateway("httpx")


def gateway_lean() -> Any:
    return gateway("lean")


def gateway_dialects() -> Any:
    """The router mounted at /ai with one OpenAI model (``gpt-4o-mini``, serving the Responses API) and
    one Anthropic model (``claude-sonnet-4-5``), both in front of ``BENCH_UPSTREAM``'s FakeProvider."""
    from asgi_aigw import build_app
    from asgi_aigw.config import GatewayConfig
    from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig

    origin = UPSTREAM.rsplit("/v1/", 1)[0]
    openai_model = DeploymentConfig(
        model="gpt-4o-mini",
        base_url=f"{origin}/v1",
        api_key="sk-bench-fake",  # type: ignore[arg-type]
        responses_api=True,
    )
    anthropic_model = DeploymentConfig(
        provider="anthropic",
        model="claude-sonnet-4-5",
        base_url=origin,
        api_key="sk-bench-fake",  # type: ignore[arg-type]
    )
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(name="gpt-4o-mini", deployments=[openai_model]),
                ModelConfig(name="claude-sonnet-4-5", deployments=[anthropic_model]),
            ]
        )
    )
    return build_app(config, env={})
