"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import redis.asyncio as aredis

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.config import GatewayConfig
from asgi_aigw.kernel.context import RequestContext, ensure_context
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.redact import RedactConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig, Timeouts
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, ServerThread, StreamingASGITransport, serve
from asgi_aigw.testing.server import free_port, wait_for_server

FAKE_URL = "http://fake-upstream.test/v1"
#: FakeProvider's origin, where Anthropic and Gemini deployments find it.
FAKE_ORIGIN = "http://fake-upstream.test"


def fake_config(
    *names: str, base_url: str = FAKE_URL, timeouts: Timeouts | None = None, api_key: str = "sk-test-fake"
) -> GatewayConfig:
    """A configuration whose model names all route to FakeProvider at ``base_url``."""
    return GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name=name,
                    deployments=[
                        DeploymentConfig(model=name, base_url=base_url, api_key=api_key, timeouts=timeouts)  # type: ignore[arg-type]
                    ],
                )
                for name in names or ("gpt-4o-mini", "text-embedding-3-small")
            ]
        )
    )


def sse_payloads(text: str) -> list[Any]:
    """The ``data`` of every SSE event, JSON-decoded (``"[DONE]"`` kept as a string)."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def post_scope(path: str, body: bytes) -> dict[str, Any]:
    """The HTTP scope of a JSON ``POST`` of ``body`` to ``path``, for an ``ApplicationCommunicator``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }


def response_object(model: str, text: str, usage: Any, status: str = "completed") -> dict[str, Any]:
    """A Responses API ``response`` of one message item with ``text`` (no item when there is none yet,
    as in ``response.created``)."""
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": "msg_1", "type": "message", "status": status, "role": "assistant", "content": [part]}
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": model,
        "output": [item] if text else [],
        "usage": usage,
    }


def responses_sse(events: list[dict[str, Any]]) -> list[bytes]:
    """Responses API events as SSE, each named by its ``type`` and numbered by ``sequence_number``."""
    return [
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps({**e, "sequence_number": n}) + b"\n\n"
        for n, e in enumerate(events)
    ]


class ContextSpy:
    """An outer layer that keeps each request's context so a test can read what inner layers recorded."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.contexts: list[RequestContext] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope, ctx = ensure_context(scope)
            self.contexts.append(ctx)
        await self.app(scope, receive, send)


def router_to(fake: Any, name: str, provider: str, model: str, base_url: str = FAKE_ORIGIN) -> Any:
    """A ProviderRouter (no retries) routing the model ``name`` to ``fake`` (FakeProvider) as one
    ``provider`` deployment of ``model`` at ``base_url``."""
    from asgi_aigw.router import ProviderRouter
    from asgi_aigw.testing import StreamingASGITransport

    deployment = DeploymentConfig(
        provider=provider, model=model, base_url=base_url, api_key="test-key-not-real"
    )  # type: ignore[arg-type]
    config = RouterConfig(
        models=[ModelConfig(name=name, deployments=[deployment])], retry=RetryConfig(retries=0)
    )
    return ProviderRouter(config, transports={base_url: StreamingASGITransport(fake)}, env={})


@contextlib.contextmanager
def gateway_over(fake: Any, models: Callable[[str], list[ModelConfig]]) -> Iterator[str]:
    """``fake`` (FakeProvider) on one uvicorn, the gateway routing the ``models(upstream_base_url)``
    (no retries) on another; yields the gateway's base URL (the router is mounted at ``/ai``)."""
    from asgi_aigw.app import build_app  # here: most tests never build the whole gateway

    with serve(fake) as upstream:
        config = GatewayConfig(router=RouterConfig(models=models(upstream), retry=RetryConfig(retries=0)))
        with serve(build_app(config, env={})) as gateway:
            yield gateway


class served:
    """``async with served(app) as base_url``: a real uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, app: Any, lifespan: str = "auto") -> None:
        self.server = ServerThread(app, lifespan=lifespan)

    async def __aenter__(self) -> str:
        self.server.start()
        return self.server.base_url

    async def __aexit__(self, *exc: object) -> None:
        self.server.stop()


async def eventually(predicate: Any, seconds: float = 5.0, interval: float = 0.02) -> bool:
    """Wait until ``predicate()`` is true (another thread or server is catching up); its final value."""
    import anyio

    for _ in range(max(1, int(seconds / interval))):
        if predicate():
            return True
        await anyio.sleep(interval)
    return bool(predicate())


@contextlib.contextmanager
def aigw_serve(*args: str, cwd: Path, env: Mapping[str, str]) -> Iterator[str]:
    """``aigw serve ARGS --port P`` in a subprocess, as a user runs it; yields ``http://127.0.0.1:P``
    once it accepts connections (a start that fails shows its output)."""
    port = free_port()
    command = [sys.executable, "-m", "asgi_aigw.cli", "serve", *args, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if not wait_for_server(port, process):
        output = process.stdout.read().decode() if process.stdout else ""
        process.kill()
        pytest.fail(f"aigw serve {' '.join(args)} did not start:\n{output}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)


# -- the whole stack (tenant, budget, redaction, cache, log, router) over FakeProvider ---------------------


def layer(app: Any, kind: type) -> Any:
    """The middleware of type ``kind`` in the stack ``app``."""
    while not isinstance(app, kind):
        app = app.app
    return app


def whole_stack_config(
    model: str, deployment: DeploymentConfig, redis_url: str, prefix: str, tmp_path: Path, tokens: int
) -> GatewayConfig:
    """Every layer on: the tenant from ``x-tenant-id``, a ``tokens`` per minute budget and the cache in
    Redis under ``prefix``, redaction, bodies logged in memory; ``model`` served by ``deployment``."""
    return GatewayConfig(
        router=RouterConfig(models=[ModelConfig(name=model, deployments=[deployment])]),
        tenant=TenantConfig(header="x-tenant-id"),
        budget=BudgetConfig(
            store=redis_url, key_prefix=f"{prefix}budget:", limits=Limits(tokens_per_minute=tokens)
        ),
        redact=RedactConfig(),
        cache=CacheConfig(
            store=redis_url,
            key_prefix=f"{prefix}cache:",
            vector_store=f"qdrant+local://{tmp_path / 'qdrant'}",
        ),
        log=LogConfig(store="memory://", spool_dir=None, flush_interval=3600, log_bodies=True),
    )


class WholeStack:
    """The app and the FakeProvider behind it; a subclass adds its SDK ``client`` over ``http``."""

    http: Any

    def __init__(self, app: Any, fake: FakeProvider) -> None:
        self.app = app
        self.fake = fake

    async def rows(self) -> list[dict[str, Any]]:
        """The request log's rows so far."""
        log = layer(self.app, RequestLogMiddleware)
        assert await log.writer.flush()
        return list(log.writer.sink.rows)


S = TypeVar("S", bound=WholeStack)


async def whole_stack(
    make: Callable[[Any, FakeProvider], S], config: GatewayConfig, upstream: str, redis_url: str, prefix: str
) -> AsyncIterator[S]:
    """The stack ``make`` builds over the app of ``config`` (FakeProvider at ``upstream``); closed, and
    its Redis keys deleted, after."""
    fake = FakeProvider()
    app = build_app(config, transports={upstream: StreamingASGITransport(fake)}, env={})
    stack = make(app, fake)
    yield stack
    await stack.http.aclose()
    await layer(app, SemanticCacheMiddleware).aclose()
    client = aredis.Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


#: A request log row with a value of every kind its columns take (non-ASCII strings, a string longer
#: than 127 bytes, maxima of the integer types, floats, booleans, maps), for the sinks' encoders.
LOG_ROW_EVERY_KIND: dict[str, Any] = {
    "timestamp": 1765000000123,
    "request_id": "req-é-🙂",
    "tenant": "acme",
    "user_id": "ü",
    "stream": True,
    "attempts": 255,
    "status": 65535,
    "client_disconnected": 1,
    "cache_score": 0.1,  # Float32: rounded as clickhouse-connect rounds it
    "prompt_tokens": 4294967295,
    "usage_estimated": False,
    "token_estimate": 0,
    "cost": 1e-9,
    "latency_ms": 12.345678901234567,
    "ttfb_ms": 3.5,
    "pii_entities": {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1},
    "budget_remaining": {"tokens": 99.5},
    "request_body": "x" * 300,  # a length over 127: a two-byte varint
}
