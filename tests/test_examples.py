"""The examples, run as their READMEs say: uvicorn in a subprocess, FakeProvider as the OpenAI and
Anthropic upstream (through OPENAI_BASE_URL / ANTHROPIC_BASE_URL), requests through the whole stack."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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

from asgi_aigw.testing import FakeBehaviour, FakeProvider, serve
from asgi_aigw.testing.server import free_port, wait_for_server

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@contextlib.contextmanager
def uvicorn(
    app_dir: Path, target: str, cwd: Path, env: dict[str, str], *extra: str, stop: int = signal.SIGTERM
) -> Iterator[str]:
    """``uvicorn TARGET`` from the example's directory, as its README runs it; yields the base URL.
    Stopped with ``stop``: SIGTERM (a process manager) or SIGINT (Ctrl+C in a terminal)."""
    port = free_port()
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
        if not wait_for_server(port, process):
            log.flush()
            pytest.fail(f"{target} did not start:\n{(cwd / 'server.log').read_text()}")
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


async def _fastapi_login(http: httpx.AsyncClient, username: str) -> str:
    done = await http.post("/login", json={"username": username, "password": "example-only"})
    assert done.status_code == 200, done.text
    return str(done.json()["access_token"])


async def test_fastapi_example(tmp_path: Path, fake_upstream: tuple[FakeProvider, dict[str, str]]) -> None:
    fake, env = fake_upstream
    env = {**env, "CORS_ALLOWED_ORIGINS": "https://app.example"}
    question = f"Is the teapot in stock? ({uuid.uuid4().hex[:8]})"
    with uvicorn(EXAMPLES / "fastapi", "app:app", tmp_path, env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            # the shop's own route, filled by the FastAPI app's own lifespan
            products = await http.get("/products")
            assert [p["name"] for p in products.json()] == ["Teapot", "Kettle"]
            alice_token = await _fastapi_login(http, "alice")
            bob_token = await _fastapi_login(http, "bob")

            # a client of the gateway at /ai: the user's token is the API key
            client = openai.AsyncOpenAI(
                base_url=f"{base}/ai/v1", api_key=alice_token, http_client=http, max_retries=0
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

            # the shop's routes call the gateway in process as the logged-in user, JSON and streamed
            as_alice = {"authorization": f"Bearer {alice_token}"}
            described = await http.get("/describe/1", headers=as_alice)
            assert described.json() == {
                "product": "Teapot",
                "description": "Echo: Describe the Teapot in one line.",
            }
            fake.behaviour = FakeBehaviour(chunk_delay=0.3)
            started = time.monotonic()
            arrivals: list[tuple[float, str]] = []
            async with http.stream("GET", "/describe/2/stream", headers=as_alice) as response:
                async for text in response.aiter_text():
                    arrivals.append((time.monotonic() - started, text))
            fake.behaviour = FakeBehaviour()
            assert "".join(text for _, text in arrivals) == "Echo: Describe the Kettle in one line."
            assert arrivals[-1][0] - arrivals[0][0] > 0.9  # the first piece came before the last was made

            # nobody logged in: the app's own 401, at /ai and at its routes; bob's small budget: 429
            anonymous = await http.post(
                "/ai/v1/chat/completions",
                headers={"x-tenant-id": "alice"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert anonymous.status_code == 401
            assert (await http.get("/describe/1")).status_code == 401
            too_much = await http.post(
                "/ai/v1/chat/completions",
                headers={"authorization": f"Bearer {bob_token}"},
                json={
                    "model": "gpt-4o-mini",
                    "max_tokens": 2000,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert too_much.status_code == 429
            assert too_much.headers["x-ratelimit-limit-tokens"] == "1000"

            # a page of the allowed origin may call /ai from the browser (the app's CORS middleware)
            preflight = await http.options(
                "/ai/v1/chat/completions",
                headers={
                    "origin": "https://app.example",
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization, content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"

            metrics = await http.get("/ai/metrics", headers=as_alice)
            assert 'aigw_requests_total{model="gpt-4o-mini",route="chat",status="200"}' in metrics.text
    assert (tmp_path / ".aigw" / "chdb").is_dir()  # the request log's embedded ClickHouse


def _manage(tmp_path: Path, env: dict[str, str], *args: str) -> None:
    """``python manage.py ARGS`` for the Django example, with its database in ``tmp_path``."""
    subprocess.run(
        [sys.executable, str(EXAMPLES / "django" / "manage.py"), *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


async def _django_login(http: httpx.AsyncClient, username: str) -> str:
    """Log in through the site's form as a browser would; returns the CSRF token for later POSTs."""
    await http.get("/login/")
    token = http.cookies["csrftoken"]
    done = await http.post(
        "/login/",
        data={"username": username, "password": "example-only"},
        headers={"x-csrftoken": token},
    )
    assert done.status_code == 200, done.text
    assert "sessionid" in http.cookies
    return http.cookies["csrftoken"]  # Django rotates the token at login


def _chat(content: str = "hi", **extra: object) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


@pytest.mark.parametrize(
    ("lifespan", "stop"),
    [
        # Django sends no lifespan, so nothing in the stack may depend on it; Ctrl+C stops the server
        # and the request log is flushed at exit
        ("off", signal.SIGINT),
        # uvicorn's default with a process manager's SIGTERM: uvicorn re-raises it after its graceful
        # shutdown and the default action skips the exit hook, so the log is flushed by the lifespan
        # that WithGatewayLifespan answers around Django (shop/asgi.py)
        ("auto", signal.SIGTERM),
    ],
)
async def test_django_example(
    tmp_path: Path, fake_upstream: tuple[FakeProvider, dict[str, str]], lifespan: str, stop: int
) -> None:
    fake, env = fake_upstream
    env = {**env, "DJANGO_DB": str(tmp_path / "db.sqlite3"), "CORS_ALLOWED_ORIGINS": "https://app.example"}
    _manage(tmp_path, env, "migrate", "--noinput")
    _manage(tmp_path, env, "seed_demo")
    question = f"Hello from bob@example.com ({uuid.uuid4().hex[:8]})"
    with uvicorn(
        EXAMPLES / "django", "shop.asgi:application", tmp_path, env, "--lifespan", lifespan, stop=stop
    ) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=60) as alice,
            httpx.AsyncClient(base_url=base, timeout=60) as bob,
            httpx.AsyncClient(base_url=base, timeout=60) as anonymous,
        ):
            page = await anonymous.get("/")
            assert page.status_code == 200
            assert "/login/" in page.text
            alice_csrf = await _django_login(alice, "alice")
            bob_csrf = await _django_login(bob, "bob")

            # Django's view calls the gateway in process, as alice
            asked = await alice.get("/ask/", params={"q": question})
            assert asked.status_code == 200, asked.text
            assert asked.json() == {"question": question, "answer": f"Echo: {question}"}
            assert "bob@example.com" not in _last_user_message(fake)

            # streamed as the provider generates it: the first piece arrives before the last is made
            fake.behaviour = FakeBehaviour(chunk_delay=0.3)
            started = time.monotonic()
            arrivals: list[tuple[float, str]] = []
            async with alice.stream("GET", "/ask/stream/", params={"q": "Tell me more please"}) as response:
                assert response.headers["content-type"].startswith("text/plain")
                async for text in response.aiter_text():
                    arrivals.append((time.monotonic() - started, text))
            fake.behaviour = FakeBehaviour()
            assert "".join(text for _, text in arrivals) == "Echo: Tell me more please"
            assert len(arrivals) > 3
            assert arrivals[-1][0] - arrivals[0][0] > 0.9

            # the browser's own calls to /ai/, with its session and the CSRF token: streamed as made...
            fake.behaviour = FakeBehaviour(chunk_delay=0.3)
            started = time.monotonic()
            arrivals = []
            async with alice.stream(
                "POST",
                "/ai/v1/chat/completions",
                json=_chat("one two three four five", stream=True),
                headers={"x-csrftoken": alice_csrf},
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async for text in response.aiter_text():
                    arrivals.append((time.monotonic() - started, text))
            fake.behaviour = FakeBehaviour()
            assert "data: [DONE]" in arrivals[-1][1]
            assert arrivals[-1][0] - arrivals[0][0] > 0.9
            # ...and one budget per user
            served = await alice.post(
                "/ai/v1/chat/completions", json=_chat(max_tokens=2000), headers={"x-csrftoken": alice_csrf}
            )
            assert served.status_code == 200, served.text
            limited = await bob.post(
                "/ai/v1/chat/completions", json=_chat(max_tokens=2000), headers={"x-csrftoken": bob_csrf}
            )
            assert limited.status_code == 429
            assert limited.json()["error"]["code"] == "rate_limit_exceeded"
            assert limited.headers["x-ratelimit-limit-tokens"] == "1000"
            blocked = await alice.post(
                "/ai/v1/chat/completions",
                json=_chat("My SSN is 536-22-1234"),
                headers={"x-csrftoken": alice_csrf},
            )
            assert blocked.status_code == 422

            # nobody logged in: 401 in the OpenAI shape, whatever tenant header is sent
            nobody = await anonymous.post(
                "/ai/v1/chat/completions", json=_chat(), headers={"x-tenant-id": "alice"}
            )
            assert nobody.status_code == 401
            assert nobody.json()["error"]["code"] == "not_authenticated"
            # a bearer token and no session cookie: exempt from CSRF, so the project's token auth decides
            bearer = await anonymous.post(
                "/ai/v1/chat/completions", json=_chat(), headers={"authorization": "Bearer not-a-user"}
            )
            assert bearer.status_code == 401
            # a cross-site form posting text/plain with alice's session cookie: refused by the CSRF check
            asked_upstream = len(fake.requests)
            forged = await alice.post(
                "/ai/v1/chat/completions",
                content=json.dumps(_chat()),
                headers={"content-type": "text/plain", "origin": "https://evil.example"},
            )
            assert forged.status_code == 403
            assert forged.json()["error"]["code"] == "csrf_failed"
            no_token = await alice.post(
                "/ai/v1/chat/completions", content=json.dumps(_chat()), headers={"content-type": "text/plain"}
            )
            assert no_token.status_code == 403
            assert len(fake.requests) == asked_upstream

            # the CORS preflight of a page the project allows
            preflight = await anonymous.options(
                "/ai/v1/chat/completions",
                headers={"origin": "https://app.example", "access-control-request-method": "POST"},
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"

            # the project disables bob: his session no longer passes
            _manage(
                tmp_path,
                env,
                "shell",
                "-c",
                "from django.contrib.auth.models import User; User.objects.filter(username='bob').update(is_active=False)",
            )
            disabled = await bob.post(
                "/ai/v1/chat/completions", json=_chat(max_tokens=10), headers={"x-csrftoken": bob_csrf}
            )
            assert disabled.status_code in (401, 403)
            assert disabled.json()["error"]["type"] in ("authentication_error", "permission_error")
    # every gateway row reached the log when the server stopped, with the user who asked
    rows = [json.loads(line) for line in (tmp_path / ".aigw" / "requests.jsonl").read_text().splitlines()]
    assert {row["status"] for row in rows} == {200, 422, 429}
    assert len(rows) == 6  # ask, ask/stream, the /ai stream, served, limited, blocked
    assert all(row["route"] == "chat" for row in rows)
    assert {row["tenant"] for row in rows} == {"alice", "bob"}
    assert {row["user_id"] for row in rows} == {"alice", "bob"}
