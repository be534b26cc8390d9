"""The gateway as a route of a FastAPI app (``gateway_router``) on a real uvicorn: the app's OAuth2
bearer dependency says who is calling, its CORS middleware answers preflights, budgets in Redis are
per user, and a route of the app calls the stack in process as its user, streaming."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import openai
import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordBearer

from asgi_aigw import build_stack
from asgi_aigw.client import openai_client
from asgi_aigw.config import GatewayConfig
from asgi_aigw.integrations import GatewayEndpoint, Identity
from asgi_aigw.integrations.fastapi import gateway_router
from asgi_aigw.testing import FakeBehaviour, FakeProvider, ServerThread, StreamingASGITransport

from .support import FAKE_URL, fake_config

pytestmark = pytest.mark.e2e

ORIGIN = "https://shop.example"


@dataclass
class User:
    name: str
    org: str
    active: bool = True


#: The app's own users, by bearer token (test tokens, nothing like real ones).
USERS = {
    "token-alice": User("alice", "alice"),
    "token-bob": User("bob", "bob"),
    "token-carol": User("carol", "carol", active=False),
}

oauth2 = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)


def current_user(token: Annotated[str | None, Depends(oauth2)]) -> User | None:
    return USERS.get(token or "")


def current_active_user(user: Annotated[User | None, Depends(current_user)]) -> User | None:
    # the app's own rule, as in FastAPI's tutorial: a disabled account is refused
    if user is not None and not user.active:
        raise HTTPException(status_code=403, detail="Inactive user")
    return user


def current_identity(user: Annotated[User | None, Depends(current_active_user)]) -> Identity | None:
    return None if user is None else Identity(tenant=user.org, user=user.name)


def make_app(fake: FakeProvider, log_file: Path, redis_url: str, redis_prefix: str) -> FastAPI:
    config = fake_config().model_copy(
        update={
            "budget": GatewayConfig.model_validate(
                {
                    "budget": {
                        "store": redis_url,
                        "key_prefix": redis_prefix,
                        "limits": {"tokens_per_minute": 100000},
                        "tenants": {"bob": {"tokens_per_minute": 1000}},
                    }
                }
            ).budget,
            "log": GatewayConfig.model_validate(
                {"log": {"store": f"jsonl://{log_file}", "spool_dir": None, "flush_interval": 0.05}}
            ).log,
        }
    )
    stack = build_stack(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    endpoint = GatewayEndpoint(stack)
    app = FastAPI(lifespan=endpoint.lifespan)
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["*"], allow_headers=["*"])
    app.include_router(gateway_router(endpoint, identity=Depends(current_identity)), prefix="/ai")

    @app.get("/ask/stream")
    async def ask_stream(
        q: str, user: Annotated[User | None, Depends(current_active_user)]
    ) -> StreamingResponse:
        if user is None:
            raise HTTPException(status_code=401, detail="Not authenticated")
        client = openai_client(stack, Identity(tenant=user.org, user=user.name))
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": q}], stream=True
        )

        async def pieces() -> AsyncIterator[str]:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content

        return StreamingResponse(pieces(), media_type="text/plain")

    return app


@pytest.fixture
def served_app(
    fake: FakeProvider, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[tuple[str, Path]]:
    log_file = tmp_path / "requests.jsonl"
    server = ServerThread(make_app(fake, log_file, redis_url, redis_prefix))
    server.start()
    try:
        yield server.base_url, log_file
    finally:
        server.stop()


def sdk(base: str, token: str | None, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/ai/v1", api_key=token or "", http_client=http, max_retries=0)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_each_user_has_their_own_budget(served_app: tuple[str, Path]) -> None:
    base, _ = served_app
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        alice = await sdk(base, "token-alice", http).chat.completions.create(**chat(max_tokens=2000))
        assert alice.choices[0].message.content == "Echo: hi"
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk(base, "token-bob", http).chat.completions.create(**chat(max_tokens=2000))
        assert refused.value.response.headers["x-ratelimit-limit-tokens"] == "1000"
        # bob's 429 spent nothing of alice's budget, and bob's small request still passes
        again = await sdk(base, "token-alice", http).chat.completions.create(**chat(max_tokens=2000))
        assert again.choices[0].message.content == "Echo: hi"
        small = await sdk(base, "token-bob", http).chat.completions.create(**chat(max_tokens=10))
        assert small.choices[0].message.content == "Echo: hi"


async def test_anonymous_gets_401_and_a_disabled_user_is_refused(
    served_app: tuple[str, Path], fake: FakeProvider
) -> None:
    base, _ = served_app
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        anonymous = await http.post("/ai/v1/chat/completions", json=chat())
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "not_authenticated"
        # an unknown token is nobody, whatever tenant header it sends
        forged = await http.post(
            "/ai/v1/chat/completions",
            json=chat(),
            headers={"authorization": "Bearer token-mallory", "x-tenant-id": "alice"},
        )
        assert forged.status_code == 401
        disabled = await http.post(
            "/ai/v1/chat/completions", json=chat(), headers={"authorization": "Bearer token-carol"}
        )
        # the app's own dependency refused, answered by the app's exception handler
        assert disabled.status_code == 403
        assert disabled.json() == {"detail": "Inactive user"}
    assert fake.requests == []


async def test_cors_preflight_and_response_headers_come_from_the_app(served_app: tuple[str, Path]) -> None:
    base, _ = served_app
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        preflight = await http.options(
            "/ai/v1/chat/completions",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        answer = await http.post(
            "/ai/v1/chat/completions",
            json=chat(),
            headers={"authorization": "Bearer token-alice", "origin": ORIGIN},
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        other = await http.options(
            "/ai/v1/chat/completions",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert other.status_code == 400


async def test_log_rows_carry_the_tenant_and_user(served_app: tuple[str, Path]) -> None:
    base, log_file = served_app
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for token in ("token-alice", "token-bob"):
            answer = await http.post(
                "/ai/v1/chat/completions",
                json=chat(max_tokens=10),
                headers={"authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(rows) < 2:
        if log_file.exists():
            rows = [json.loads(line) for line in log_file.read_text().splitlines()]
        await anyio.sleep(0.05)
    assert sorted(row["tenant"] for row in rows) == ["alice", "bob"]
    assert sorted(row["user_id"] for row in rows) == ["alice", "bob"]


async def test_a_route_streams_from_the_gateway_in_process(
    served_app: tuple[str, Path], fake: FakeProvider
) -> None:
    base, _ = served_app
    fake.behaviour = FakeBehaviour(chunk_delay=0.3)
    question = "one two three four five six"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        started = time.monotonic()
        async with http.stream(
            "GET", "/ask/stream", params={"q": question}, headers={"authorization": "Bearer token-alice"}
        ) as response:
            assert response.status_code == 200
            arrivals: list[tuple[float, str]] = []
            async for text in response.aiter_text():
                arrivals.append((time.monotonic() - started, text))
    assert "".join(text for _, text in arrivals) == f"Echo: {question}"
    # 8 pieces 0.3 s apart: the first reached the browser long before the provider generated the last
    assert len(arrivals) > 3
    assert arrivals[0][0] < 1.0
    assert arrivals[-1][0] - arrivals[0][0] > 1.2
    # the in-process call ran as the app's user: metered and sent upstream as alice's request
    assert fake.requests[-1].json["messages"][-1]["content"] == question


async def test_the_gateway_route_streams_chunk_by_chunk(
    served_app: tuple[str, Path], fake: FakeProvider
) -> None:
    base, _ = served_app
    fake.behaviour = FakeBehaviour(chunk_delay=0.3)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        started = time.monotonic()
        stream = await sdk(base, "token-alice", http).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "one two three four five six"}],
            stream=True,
        )
        arrivals = [
            time.monotonic() - started async for c in stream if c.choices and c.choices[0].delta.content
        ]
    assert len(arrivals) > 3
    assert arrivals[0] < 1.0
    assert arrivals[-1] - arrivals[0] > 1.2
