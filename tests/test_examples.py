"""The examples, run as their READMEs say: uvicorn in a subprocess, FakeProvider as the OpenAI and
Anthropic upstream (through OPENAI_BASE_URL / ANTHROPIC_BASE_URL), requests through the whole stack."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import openai
import pytest

from asgi_aigw.testing import FakeProvider, serve

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn(
    app_dir: Path, target: str, cwd: Path, env: dict[str, str], *extra: str, stop: int = signal.SIGTERM
) -> Iterator[str]:
    """``uvicorn TARGET`` from the example's directory, as its README runs it; yields the base URL.
    Stopped with ``stop``: SIGTERM (a process manager) or SIGINT (Ctrl+C in a terminal)."""
    port = _free_port()
    log = (cwd / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--app-dir", str(app_dir), "--port", str(port), *extra],
        cwd=cwd,
        # REDIS_URL is left out: the examples then keep budgets and the exact cache in their own
        # memory, so other users of a shared Redis cannot touch this test's counters or answers
        env={**{k: v for k, v in os.environ.items() if k != "REDIS_URL"}, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"{target} did not start:\n{(cwd / 'server.log').read_text()}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(stop)  # uvicorn shuts down gracefully either way
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def fake_upstream() -> Iterator[tuple[FakeProvider, dict[str, str]]]:
    """FakeProvider on a real port, and the environment that points both providers at it."""
    fake = FakeProvider()
    with serve(fake) as base_url:
        yield fake, {"OPENAI_BASE_URL": f"{base_url}/v1", "ANTHROPIC_BASE_URL": base_url}


def _last_user_message(fake: FakeProvider) -> str:
    messages = fake.requests[-1].json["messages"]
    return str(messages[-1]["content"])


async def test_fastapi_example(tmp_path: Path, fake_upstream: tuple[FakeProvider, dict[str, str]]) -> None:
    fake, env = fake_upstream
    question = f"Is the teapot in stock? ({uuid.uuid4().hex[:8]})"
    with uvicorn(EXAMPLES / "fastapi", "app:app", tmp_path, env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            # the shop's own route, filled by the FastAPI app's own lifespan
            products = await http.get("/products")
            assert [p["name"] for p in products.json()] == ["Teapot", "Kettle"]

            client = openai.AsyncOpenAI(
                base_url=f"{base}/ai/v1",
                api_key="unused",
                http_client=http,
                default_headers={"x-tenant-id": "acme"},
            )
            first = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
            )
            assert first.parse().choices[0].message.content == f"Echo: {question}"
            assert first.headers["x-aigw-cache"] == "miss"
            assert first.headers["x-aigw-provider"] == "openai"
            assert first.headers["x-request-id"]
            assert int(first.headers["x-ratelimit-limit-requests"]) == 120  # the budget's default limits
            # the answer is stored once it has been sent: ask again until the store has caught up
            for _ in range(50):
                again = await client.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
                )
                if again.headers["x-aigw-cache"] != "miss":
                    break
                await anyio.sleep(0.05)
            assert again.headers["x-aigw-cache"] == "hit-exact"
            assert again.parse().choices[0].message.content == f"Echo: {question}"

            # streaming through the whole stack, PII replaced upstream and restored in the answer
            pii = f"Write to jane.doe@example.com about order {uuid.uuid4().hex[:6]}"
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": pii}], stream=True
            )
            pieces = [
                c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content
            ]
            assert len(pieces) > 3
            assert "".join(pieces) == f"Echo: {pii}"
            upstream = _last_user_message(fake)
            assert "jane.doe@example.com" not in upstream
            assert "<EMAIL_ADDRESS_1>" in upstream

            # the shop's route that calls its own gateway through the openai SDK, JSON and streamed
            described = await http.get("/describe/1")
            assert described.json() == {
                "product": "Teapot",
                "description": "Echo: Describe the Teapot in one line.",
            }
            async with http.stream("GET", "/describe/2/stream") as response:
                chunks = [chunk async for chunk in response.aiter_text()]
            assert "".join(chunks) == "Echo: Describe the Kettle in one line."

            # no tenant: refused before anything is spent; a small budget: 429 with the limits
            anonymous = await http.post(
                "/ai/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert anonymous.status_code == 401
            assert anonymous.json()["error"]["code"] == "missing_tenant"
            too_much = await http.post(
                "/ai/v1/chat/completions",
                headers={"x-tenant-id": "trial"},
                json={
                    "model": "gpt-4o-mini",
                    "max_tokens": 2000,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert too_much.status_code == 429
            assert too_much.headers["x-ratelimit-limit-tokens"] == "1000"

            metrics = await http.get("/ai/metrics")
            assert 'aigw_requests_total{model="gpt-4o-mini",route="chat",status="200"}' in metrics.text
    assert (tmp_path / ".aigw" / "chdb").is_dir()  # the request log's embedded ClickHouse


@pytest.mark.parametrize(
    ("lifespan", "stop"),
    [
        # Django sends no lifespan, so nothing in the stack may depend on it; Ctrl+C stops the server
        # and the request log is flushed at exit
        ("off", signal.SIGINT),
        # uvicorn's default: the stack answers lifespan itself and flushes the log at shutdown (SIGTERM
        # from a process manager)
        ("auto", signal.SIGTERM),
    ],
)
async def test_django_example(
    tmp_path: Path, fake_upstream: tuple[FakeProvider, dict[str, str]], lifespan: str, stop: int
) -> None:
    fake, env = fake_upstream
    question = f"Hello from bob@example.com ({uuid.uuid4().hex[:8]})"
    with uvicorn(
        EXAMPLES / "django", "shop.asgi:application", tmp_path, env, "--lifespan", lifespan, stop=stop
    ) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert "/ask/" in page.text

            # Django's view calls the gateway on the same server through the openai SDK
            asked = await http.get("/ask/", params={"q": question})
            assert asked.status_code == 200, asked.text
            assert asked.json() == {"question": question, "answer": f"Echo: {question}"}
            assert "bob@example.com" not in _last_user_message(fake)

            async with http.stream("GET", "/ask/stream/", params={"q": "Tell me more please"}) as response:
                assert response.headers["content-type"].startswith("text/plain")
                chunks = [chunk async for chunk in response.aiter_text()]
            assert "".join(chunks) == "Echo: Tell me more please"

            # and any OpenAI client reaches the gateway mounted at /ai/
            client = openai.AsyncOpenAI(
                base_url=f"{base}/ai/v1",
                api_key="unused",
                http_client=http,
                default_headers={"x-tenant-id": "acme"},
            )
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream it"}], stream=True
            )
            text = "".join(
                [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
            )
            assert text == "Echo: Stream it"
            blocked = await http.post(
                "/ai/v1/chat/completions",
                headers={"x-tenant-id": "acme"},
                json={
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "My SSN is 536-22-1234"}],
                },
            )
            assert blocked.status_code == 422
    # every row reached the log when the server stopped
    rows = [json.loads(line) for line in (tmp_path / ".aigw" / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert {row["status"] for row in rows} == {200, 422}
    assert all(row["route"] == "chat" for row in rows)
    assert {row["tenant"] for row in rows} == {"django-site", "acme"}
