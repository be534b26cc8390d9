"""No request leaves a reference cycle of the gateway's objects behind it.

A cycle is freed only by the garbage collector, which then runs every few requests and walks every
object of the requests in flight (tens of µs a request under load, and pauses). Refcounting frees a
request's objects the moment it ends when nothing refers back. Each case runs its request once to warm
caches, then a few more with the collector off; what the collector finds afterwards must hold nothing of
the gateway (objects of its classes, its functions, coroutines and frames).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import asgi_aigw
from asgi_aigw import build_app
from asgi_aigw.budget import BudgetMiddleware
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.hooks import HookRefusal, HookRequest, Hooks
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.preload import YOUNG_GENERATION_THRESHOLD, collect_less_often
from asgi_aigw.redact import RedactConfig
from asgi_aigw.router import ProviderRouter
from asgi_aigw.tenant import JWTConfig, TenantMiddleware
from asgi_aigw.tenant.config import APIKeyEntry, TenantConfig
from asgi_aigw.tenant.keys import hash_key, key_id, new_key
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.testing.fake_provider import FakeBehaviour
from asgi_aigw.testing.raw_asgi import post
from asgi_aigw.trace import TraceConfig, TraceMiddleware

from .support import FAKE_ORIGIN, FAKE_URL, fake_config, layer, router_to

pytestmark = pytest.mark.anyio

PACKAGE = str(Path(asgi_aigw.__file__).parent)
CHAT = "/ai/v1/chat/completions"
MESSAGES = "/ai/v1/messages"
RESPONSES = "/ai/v1/responses"


def _chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], **extra}


#: (name, path, body, tenant, extra headers, expected status)
CASES: list[tuple[str, str, dict[str, Any], str, list[tuple[bytes, bytes]], int]] = [
    ("chat, a miss then hits", CHAT, _chat("What is a cycle?", max_tokens=30), "acme", [], 200),
    ("chat, forwarded and stored", CHAT, _chat("Forward me"), "acme", [(b"cache-control", b"no-cache")], 200),
    ("chat stream, a miss then replays", CHAT, _chat("Stream me", stream=True), "acme", [], 200),
    (
        "chat stream, forwarded",
        CHAT,
        _chat("Stream me again", stream=True, stream_options={"include_usage": True}),
        "acme",
        [(b"cache-control", b"no-cache")],
        200,
    ),
    ("chat with PII, placeholders restored", CHAT, _chat("Mail jane.doe@example.com today"), "acme", [], 200),
    (
        "messages",
        MESSAGES,
        {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": "Hi there"}]},
        "acme",
        [],
        200,
    ),
    (
        "messages stream",
        MESSAGES,
        {
            "model": "gpt-4o-mini",
            "max_tokens": 30,
            "stream": True,
            "messages": [{"role": "user", "content": "Yo"}],
        },
        "acme",
        [],
        200,
    ),
    ("responses", RESPONSES, {"model": "gpt-4o-mini", "input": "Say hello"}, "acme", [], 200),
    ("refused by the budget", CHAT, _chat("Over the limit", max_tokens=30), "broke", [], 429),
    ("an invalid body", CHAT, {"model": "gpt-4o-mini", "messages": "not a list"}, "acme", [], 400),
    ("the upstream fails", CHAT, _chat("Fail", max_tokens=30), "acme", [(b"x-fail", b"1")], 502),
    (
        "the upstream cuts the stream",
        CHAT,
        _chat("Cut", max_tokens=30, stream=True),
        "acme",
        [(b"x-fail", b"cut")],
        200,
    ),
]


def gateway_objects(found: list[Any]) -> list[str]:
    """What of ``found`` is the gateway's: instances of its classes, its functions, coroutines, frames."""
    names: list[str] = []
    for obj in found:
        code = getattr(obj, "__code__", None) or getattr(obj, "cr_code", None) or getattr(obj, "f_code", None)
        if code is not None and code.co_filename.startswith(PACKAGE):
            names.append(f"{type(obj).__name__} {code.co_qualname}")
        elif type(obj).__module__.startswith("asgi_aigw"):
            names.append(type(obj).__qualname__)
    return sorted(set(names))


async def cycles_left(request: Callable[[], Awaitable[None]], times: int = 3) -> list[str]:
    """The gateway's objects left in reference cycles by ``times`` calls of ``request``.

    Every object alive before the calls is held meanwhile, so what the collector then finds was made by
    them: an app of an earlier test that its last background task lets go of now is not counted."""
    gc.collect()
    alive = gc.get_objects()
    gc.disable()
    try:
        for _ in range(times):
            await request()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        del alive
    return gateway_objects(found)


@pytest.fixture(params=["one Redis", "apart, semantic"])
async def app(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    # "one Redis": budget and cache on one server, so the cache looks first and reserves through the
    # budget's gate; "apart": the budget reserves up front, the cache in memory with its semantic layer
    shared = request.param == "one Redis"
    cfg = fake_config()
    cfg.tenant = TenantConfig(header="x-tenant-id")
    cfg.budget = BudgetConfig(
        store=redis_url if shared else "memory://",
        key_prefix=f"{redis_prefix}budget:",
        limits=Limits(tokens_per_minute=1_000_000),
        tenants={"broke": Limits(requests_per_minute=0)},
    )
    cfg.redact = RedactConfig(regex_only=True)
    cfg.cache = CacheConfig(
        store=redis_url if shared else "memory://",
        key_prefix=f"{redis_prefix}cache:",
        vector_store=None if shared else "memory://",
    )
    cfg.log = LogConfig(store="memory://", spool_dir=None, flush_interval=3600, log_bodies=True)
    fake = FakeProvider()
    built = build_app(cfg, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    built.fake = fake  # for a case that makes the upstream fail
    yield built
    await layer(built, SemanticCacheMiddleware).aclose()
    await layer(built, BudgetMiddleware).aclose()


@pytest.mark.parametrize(
    ("name", "path", "body", "tenant", "headers", "status"), CASES, ids=[c[0] for c in CASES]
)
async def test_a_request_leaves_no_cycle_of_the_gateways_objects(
    app: Any,
    name: str,
    path: str,
    body: dict[str, Any],
    tenant: str,
    headers: list[tuple[bytes, bytes]],
    status: int,
) -> None:
    raw = orjson.dumps(body)
    fail = dict(headers).get(b"x-fail")
    if fail is not None:
        app.fake.behaviour = FakeBehaviour(cut_after=1) if fail == b"cut" else FakeBehaviour(status=500)
    headers = [(b"x-tenant-id", tenant.encode()), *headers]
    got, answer = await post(app, path, raw, headers)  # warm-up: first-use caches, the stored entry
    assert got == status, answer
    log = layer(app, RequestLogMiddleware)
    assert await log.writer.flush()

    async def again() -> None:
        got, answer = await post(app, path, raw, headers)
        assert got == status, answer
        assert await log.writer.flush()

    assert await cycles_left(again) == []


ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", _chat("Hi", max_tokens=20)),
    ("/v1/chat/completions", _chat("Hi", max_tokens=20, stream=True, stream_options={"include_usage": True})),
    (
        "/v1/messages",
        {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]},
    ),
    (
        "/v1/messages",
        {
            "model": "gpt-4o-mini",
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    ),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 20}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi", "max_output_tokens": 20, "stream": True}),
]
PROVIDERS = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("gemini", "gemini-2.0-flash"),
]


@pytest.mark.parametrize(("provider", "model"), PROVIDERS, ids=[p for p, _ in PROVIDERS])
@pytest.mark.parametrize(
    ("path", "body"),
    ROUTES,
    ids=[f"{p.rsplit('/', 1)[1]}{'-stream' if b.get('stream') else ''}" for p, b in ROUTES],
)
async def test_the_router_leaves_no_cycle_whatever_the_provider_and_dialect(
    provider: str, model: str, path: str, body: dict[str, Any]
) -> None:
    base_url = FAKE_URL if provider == "openai" else FAKE_ORIGIN
    router = router_to(FakeProvider(), "gpt-4o-mini", provider, model, base_url=base_url)
    raw = orjson.dumps(body)
    got, answer = await post(router, path, raw, [])
    assert got == 200, answer

    async def again() -> None:
        got, answer = await post(router, path, raw, [])
        assert got == 200, answer

    left = await cycles_left(again)
    assert left == []


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("thresholds")
def test_a_serving_process_collects_the_young_generation_less_often_never_more() -> None:
    gc.set_threshold(700, 10, 10)
    collect_less_often()
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)
    gc.set_threshold(50_000, 20, 30)  # the application's own choice, above ours: kept
    collect_less_often()
    assert gc.get_threshold() == (50_000, 20, 30)
    gc.set_threshold(0, 10, 10)  # the collector switched off: left off
    collect_less_often()
    assert gc.get_threshold() == (0, 10, 10)


def test_a_serve_worker_freezes_its_heap_and_collects_less_often(tmp_path: Path) -> None:
    code = (
        "import gc, json\n"
        "from asgi_aigw.cli.serve import app_factory\n"
        "before = gc.get_threshold()\n"
        "app_factory()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count() > 0]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIGW_", "OTEL_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    before, after, frozen = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert before[0] == 700
    assert after == [YOUNG_GENERATION_THRESHOLD, before[1], before[2]]
    assert frozen


FAILURES: list[tuple[str, FakeBehaviour, bool]] = [
    ("an upstream error", FakeBehaviour(status=500), False),
    ("an upstream rate limit", FakeBehaviour(status=429, retry_after="1"), False),
    ("a body that is not JSON", FakeBehaviour(malformed=True), False),
    ("a stream cut short", FakeBehaviour(cut_after=2), True),
    ("an error inside the stream", FakeBehaviour(stream_error_after=1), True),
]


@pytest.mark.parametrize(("provider", "model"), PROVIDERS, ids=[p for p, _ in PROVIDERS])
@pytest.mark.parametrize(("name", "behaviour", "stream"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_a_failed_upstream_leaves_no_cycle(
    provider: str, model: str, name: str, behaviour: FakeBehaviour, stream: bool
) -> None:
    # exceptions are the usual source of cycles (a traceback holds the frames that hold it)
    base_url = FAKE_URL if provider == "openai" else FAKE_ORIGIN
    router = router_to(FakeProvider(behaviour), "gpt-4o-mini", provider, model, base_url=base_url)
    raw = orjson.dumps(_chat("Hi", max_tokens=20, stream=stream))
    first, answer = await post(router, "/v1/chat/completions", raw, [])
    assert (first == 200) == stream, answer  # a stream has started before it fails

    async def again() -> None:
        got, answer = await post(router, "/v1/chat/completions", raw, [])
        assert got == first, answer

    left = await cycles_left(again)
    assert left == []


SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEY = new_key()[1]


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


def _bearer(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {value}".encode())]


WHO: list[tuple[str, list[tuple[bytes, bytes]], int]] = [
    ("a gateway API key", _bearer(KEY), 200),
    (
        "a verified JWT",
        _bearer(jwt.encode({"sub": "acme", "exp": 4_102_444_800}, SECRET, algorithm="HS256")),
        200,
    ),
    (
        "a JWT with a bad signature",
        _bearer(jwt.encode({"sub": "acme", "exp": 4_102_444_800}, "x" * 43, "HS256")),
        401,
    ),
    ("an unknown API key", _bearer(new_key()[1]), 401),
    ("nothing", [], 401),
]


@pytest.mark.parametrize(("name", "headers", "status"), WHO, ids=[w[0] for w in WHO])
async def test_telling_who_asked_leaves_no_cycle(
    name: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    config = TenantConfig(
        header=None,
        jwt=JWTConfig(algorithms=["HS256"], secret=SECRET),
        api_keys=[APIKeyEntry(id=key_id(KEY), hash=hash_key(KEY), tenant="acme")],
    )
    app = TenantMiddleware(answer_ok, config=config)
    first, answer = await post(app, CHAT, b"{}", headers)
    assert first == status, answer

    async def again() -> None:
        got, answer = await post(app, CHAT, b"{}", headers)
        assert got == status, answer

    left = await cycles_left(again)
    assert left == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_traced_request_leaves_no_cycle(redis_url: str, redis_prefix: str, stream: bool) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    cfg = fake_config()
    cfg.tenant = TenantConfig(header="x-tenant-id")
    cfg.budget = BudgetConfig(store=redis_url, key_prefix=f"{redis_prefix}budget:")
    cfg.cache = CacheConfig(store=redis_url, key_prefix=f"{redis_prefix}cache:", vector_store=None)
    built = build_app(cfg, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})
    app = TraceMiddleware(built, config=TraceConfig(), tracer_provider=provider)
    raw = orjson.dumps(_chat("Trace me", max_tokens=20, stream=stream))
    headers = [(b"x-tenant-id", b"acme"), (b"cache-control", b"no-cache")]
    got, answer = await post(app, CHAT, raw, headers)
    assert got == 200, answer

    async def again() -> None:
        got, answer = await post(app, CHAT, raw, headers)
        assert got == 200, answer

    left = await cycles_left(again)
    await layer(built, BudgetMiddleware).aclose()
    provider.shutdown()
    assert left == []


async def _noted(_: Any) -> None:
    return None


async def _refuse(request: HookRequest) -> None:
    if "secret" in str(request.body.get("messages")):
        raise HookRefusal("Not here.", status=403)


HOOKED: list[tuple[str, dict[str, Any], int]] = [
    ("a JSON answer", _chat("Hooked", max_tokens=20), 200),
    ("a stream", _chat("Hooked", max_tokens=20, stream=True), 200),
    ("a refusal", _chat("a secret", max_tokens=20), 403),
]


@pytest.mark.parametrize(("name", "body", "status"), HOOKED, ids=[h[0] for h in HOOKED])
async def test_hooks_leave_no_cycle(name: str, body: dict[str, Any], status: int) -> None:
    hooks = Hooks(before_request=[_refuse], after_response=[_noted], on_chunk=[_noted], on_error=[_noted])
    config = fake_config().router
    router = ProviderRouter(
        config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={}, hooks=hooks
    )
    raw = orjson.dumps(body)
    got, answer = await post(router, "/v1/chat/completions", raw, [])
    assert got == status, answer
    await asyncio.sleep(0.05)  # after-hooks run after the answer has gone

    async def again() -> None:
        got, answer = await post(router, "/v1/chat/completions", raw, [])
        assert got == status, answer
        await asyncio.sleep(0.05)

    assert await cycles_left(again) == []
