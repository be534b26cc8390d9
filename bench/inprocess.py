"""A route of the app calling its own gateway: in process (``asgi_aigw.client.openai_client``) vs over
HTTP to the app's own uvicorn (the gateway served by ``gateway_router``, the user's bearer token).

    python bench/inprocess.py [--calls 300]

Both run in one process and one event loop, as a view of the app would: uvicorn serves the FastAPI app
in the same loop that makes the calls. The upstream is FakeProvider in process, so the figures are the
cost of reaching the gateway, not of a provider. Calls are sequential (p50 per call, one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import openai
import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer

from asgi_aigw import build_stack
from asgi_aigw.budget import BudgetConfig, Limits
from asgi_aigw.client import openai_client
from asgi_aigw.config import GatewayConfig
from asgi_aigw.integrations import GatewayEndpoint, Identity
from asgi_aigw.integrations.fastapi import gateway_router
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.testing.server import free_port

FAKE_URL = "http://fake-upstream.bench/v1"
MESSAGES = [{"role": "user", "content": "Hello, how are you today?"}]
TOKEN = "bench-token-alice"
oauth2 = OAuth2PasswordBearer(tokenUrl="login", auto_error=False)


def make_app() -> tuple[FastAPI, object]:
    config = GatewayConfig(
        router=RouterConfig(
            models=[
                ModelConfig(
                    name="gpt-4o-mini",
                    deployments=[
                        DeploymentConfig(model="gpt-4o-mini", base_url=FAKE_URL, api_key="sk-bench-fake")
                    ],  # type: ignore[arg-type]
                )
            ]
        ),
        budget=BudgetConfig(limits=Limits(requests_per_minute=10**9, tokens_per_minute=10**12)),
    )
    stack = build_stack(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})

    def identity(token: Annotated[str | None, Depends(oauth2)]) -> Identity:
        if token != TOKEN:
            raise HTTPException(401, "Log in first")
        return Identity(tenant="alice", user="alice")

    app = FastAPI()
    app.include_router(gateway_router(GatewayEndpoint(stack), identity=Depends(identity)), prefix="/ai")
    return app, stack


async def timed(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    for _ in range(30):  # warm up: pools, caches, first-use imports
        await call()
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def main(calls: int) -> None:
    app, stack = make_app()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.01)
    alice = Identity(tenant="alice", user="alice")
    shared = openai_client(stack, alice)  # type: ignore[arg-type]
    over_http = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/ai/v1",
        api_key=TOKEN,
        max_retries=0,
        http_client=httpx.AsyncClient(),
    )

    async def in_process() -> None:
        await shared.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    async def in_process_new_client() -> None:
        # what a view does when it makes a client per request for the current user
        client = openai_client(stack, alice)  # type: ignore[arg-type]
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    async def http() -> None:
        await over_http.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]

    rows = []
    for name, call in [
        ("in process, one client", in_process),
        ("in process, a client per call", in_process_new_client),
        ("over HTTP to the app's own uvicorn", http),
    ]:
        samples = await timed(call, calls)
        qs = statistics.quantiles(samples, n=100)
        rows.append(f"| {name} | {statistics.median(samples):.3f} | {qs[89]:.3f} | {qs[98]:.3f} |")
    server.should_exit = True
    await serving
    table = "\n".join(
        [
            f"Sequential chat completions through the gateway (FakeProvider in process), {calls} calls each.",
            "",
            "| call | p50 ms | p90 ms | p99 ms |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    (Path(__file__).resolve().parent / "results" / "inprocess.md").write_text(table + "\n")  # noqa: ASYNC240


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    asyncio.run(main(parser.parse_args().calls))
