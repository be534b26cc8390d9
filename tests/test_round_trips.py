"""Redis round trips of the whole stack (tenant, budget and cache on one Redis, redaction, request log),
counted by a proxy in front of a real Redis server: one for an exact hit (one script reads the entry and
counts the request), two for a miss (the same script reserves the estimate; the settlement and the new
entry leave together). And what the budget decides when the cache looks first: a hit costs one request,
so a tenant out of tokens is still answered from the cache, one out of requests is not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aredis

from asgi_aigw import build_app, build_stack
from asgi_aigw.budget import BudgetMiddleware
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.client import anthropic_client, openai_client
from asgi_aigw.config import GatewayConfig
from asgi_aigw.kernel.context import Identity
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.redact import RedactConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.testing.redis_proxy import RedisProxy

from .support import FAKE_URL, fake_config, layer, sse_payloads

pytestmark = pytest.mark.anyio

CHAT = "/ai/v1/chat/completions"
MESSAGES = "/ai/v1/messages"
TENANT = {"x-tenant-id": "acme"}


def chat(question: str, *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 40,
        "stream": stream,
    }


def config(budget_url: str, cache_url: str, prefix: str, limits: Limits, **budget: Any) -> GatewayConfig:
    cfg = fake_config()
    cfg.log = LogConfig(store="memory://", spool_dir=None, flush_interval=3600)
    cfg.tenant = TenantConfig(header="x-tenant-id")
    cfg.budget = BudgetConfig(store=budget_url, key_prefix=f"{prefix}budget:", limits=limits, **budget)
    cfg.redact = RedactConfig()
    cfg.cache = CacheConfig(store=cache_url, key_prefix=f"{prefix}cache:", vector_store=None)
    return cfg


class Stack:
    def __init__(self, app: Any, fake: FakeProvider, client: httpx.AsyncClient) -> None:
        self.app = app
        self.fake = fake
        self.client = client

    async def post(self, body: dict[str, Any], path: str = CHAT, **headers: str) -> httpx.Response:
        return await self.client.post(path, json=body, headers={**TENANT, **headers})


@contextlib.asynccontextmanager
async def stack_of(cfg: GatewayConfig) -> AsyncIterator[Stack]:
    """The app of ``cfg`` over FakeProvider, an httpx client into it; closed after."""
    fake = FakeProvider()
    app = build_app(cfg, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver")
    stack = Stack(app, fake, client)
    try:
        yield stack
    finally:
        await close_stack(stack)


async def close_stack(stack: Stack) -> None:
    await stack.client.aclose()
    await layer(stack.app, SemanticCacheMiddleware).aclose()
    await layer(stack.app, BudgetMiddleware).aclose()


@pytest.fixture
async def counter(redis_url: str) -> AsyncIterator[RedisProxy]:
    proxy = await RedisProxy(redis_url).start()
    yield proxy
    await proxy.aclose()


def answer_text(response: httpx.Response, stream: bool) -> str:
    if not stream:
        return str(response.json()["choices"][0]["message"]["content"])
    chunks = [p for p in sse_payloads(response.text) if isinstance(p, dict) and p["choices"]]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


async def counters(redis: aredis.Redis, prefix: str, window: str) -> int:
    """The tenant's counter of ``window`` ("tpm", "rpm"...), summed over its keys."""
    total = 0
    async for key in redis.scan_iter(match=f"{prefix}budget:{{acme}}:{window}:*"):
        total += int(await redis.get(key) or 0)
    return total


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_an_exact_hit_is_one_round_trip_and_a_miss_two(
    counter: RedisProxy, redis_client: aredis.Redis, redis_prefix: str, stream: bool
) -> None:
    cfg = config(counter.url, counter.url, redis_prefix, Limits(tokens_per_minute=1_000_000))
    async with stack_of(cfg) as stack:
        # the connection opened and the scripts loaded once (a fresh server answers NOSCRIPT first)
        for _ in range(2):
            assert (await stack.post(chat("warm up", stream=stream))).status_code == 200
        counter.reset()
        miss = await stack.post(chat("What is the capital of France?", stream=stream))
        assert miss.status_code == 200
        assert miss.headers["x-aigw-cache"] == "miss"
        assert counter.round_trips == 2, "a miss: reserve with the lookup, then settle with the store"
        assert counter.commands == 3  # the lookup script; the settlement and the entry, written together

        counter.reset()
        hit = await stack.post(chat("What is the capital of France?", stream=stream))
        assert hit.status_code == 200
        assert hit.headers["x-aigw-cache"] == "hit-exact"
        assert counter.round_trips == 1, "an exact hit: one script reads the entry and counts the request"
        assert counter.commands == 1
        assert answer_text(hit, stream) == answer_text(miss, stream) != ""
        assert len(stack.fake.requests) == 2  # a warm-up and the miss: the hits never went upstream


@pytest.mark.parametrize(
    ("path", "body", "kind"),
    [
        (
            MESSAGES,
            {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": "Hi there"}]},
            "message",
        ),
        (
            "/ai/v1/responses",
            {"model": "gpt-4o-mini", "max_output_tokens": 30, "input": "Hi there", "store": False},
            "response",
        ),
    ],
    ids=["messages", "responses"],
)
async def test_a_hit_is_one_round_trip_in_every_dialect(
    counter: RedisProxy,
    redis_client: aredis.Redis,
    redis_prefix: str,
    path: str,
    body: dict[str, Any],
    kind: str,
) -> None:
    cfg = config(counter.url, counter.url, redis_prefix, Limits(requests_per_minute=100))
    async with stack_of(cfg) as stack:
        for _ in range(2):
            assert (await stack.post(body, path)).status_code == 200
        counter.reset()
        hit = await stack.post(body, path)
        assert hit.headers["x-aigw-cache"] == "hit-exact"
        assert hit.json()["object" if kind == "response" else "type"] == kind
        assert counter.round_trips == 1
        assert len(stack.fake.requests) == 1


# -- what the budget decides when the cache looks first --------------------------------------------------


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_url: str) -> str:
    return redis_url if request.param == "redis" else "memory://"


async def test_a_tenant_out_of_tokens_is_still_answered_from_the_cache(
    store: str, redis_client: aredis.Redis, redis_prefix: str
) -> None:
    cfg = config(store, store, redis_prefix, Limits(tokens_per_minute=60, requests_per_minute=100))
    async with stack_of(cfg) as stack:
        first = await stack.post(chat("What is the capital of France?"))
        assert first.status_code == 200
        # the tokens left cannot hold another estimate (the prompt and 40 output tokens)
        other = await stack.post(chat("What is the capital of Spain?"))
        assert other.status_code == 429
        assert other.json()["error"]["code"] == "rate_limit_exceeded"
        hit = await stack.post(chat("What is the capital of France?"))
        assert hit.status_code == 200, hit.text
        assert hit.headers["x-aigw-cache"] == "hit-exact"
        assert hit.json()["choices"] == first.json()["choices"]
        assert (await stack.post(chat("What is the capital of Spain?"))).status_code == 429
        assert len(stack.fake.requests) == 1
        if store != "memory://":
            used = first.json()["usage"]["total_tokens"]
            assert await counters(redis_client, redis_prefix, "tpm") == used  # the hit cost no tokens
            assert await counters(redis_client, redis_prefix, "rpm") == 2  # the miss and the hit


async def test_a_tenant_out_of_requests_is_refused_a_hit_in_its_own_dialect(
    store: str, redis_client: aredis.Redis, redis_prefix: str
) -> None:
    cfg = config(store, store, redis_prefix, Limits(requests_per_minute=2))
    body = {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": "Hi there"}]}
    async with stack_of(cfg) as stack:
        assert (await stack.post(body, MESSAGES)).headers["x-aigw-cache"] == "miss"
        assert (await stack.post(body, MESSAGES)).headers["x-aigw-cache"] == "hit-exact"
        refused = await stack.post(body, MESSAGES)
        assert refused.status_code == 429
        assert "x-aigw-cache" not in refused.headers  # nothing of the cached answer went out
        assert refused.json()["type"] == "error"  # Anthropic's error shape
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert len(stack.fake.requests) == 1


async def test_concurrent_hits_never_pass_a_request_limit(
    redis_client: aredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    cfg = config(redis_url, redis_url, redis_prefix, Limits(requests_per_minute=5))
    async with stack_of(cfg) as stack:
        assert (await stack.post(chat("Tell me a fact"))).status_code == 200
        answers = await asyncio.gather(*(stack.post(chat("Tell me a fact")) for _ in range(20)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * 4 + [429] * 16
        assert all(a.headers["x-aigw-cache"] == "hit-exact" for a in answers if a.status_code == 200)
        assert await counters(redis_client, redis_prefix, "rpm") == 5


async def test_an_entry_that_cannot_be_read_is_forwarded_and_charged_once(
    redis_client: aredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    cfg = config(
        redis_url, redis_url, redis_prefix, Limits(tokens_per_minute=10_000, requests_per_minute=100)
    )
    async with stack_of(cfg) as stack:
        first = await stack.post(chat("Tell me a fact"))
        entries = [key async for key in redis_client.scan_iter(match=f"{redis_prefix}cache:e:*")]
        assert len(entries) == 1
        await redis_client.set(entries[0], b"not an entry")
        # the lookup script found an entry and reserved a hit's cost; the entry is unreadable, so the
        # rest of the estimate is reserved and the request goes on
        again = await stack.post(chat("Tell me a fact"))
        assert again.status_code == 200
        assert again.headers["x-aigw-cache"] == "miss"
        assert len(stack.fake.requests) == 2
        used = first.json()["usage"]["total_tokens"] + again.json()["usage"]["total_tokens"]
        assert await counters(redis_client, redis_prefix, "tpm") == used
        assert await counters(redis_client, redis_prefix, "rpm") == 2
        # and the readable answer replaced the broken entry
        assert (await stack.post(chat("Tell me a fact"))).headers["x-aigw-cache"] == "hit-exact"


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_a_lookup_script_that_fails_follows_the_budget_failure_mode(
    redis_client: aredis.Redis, redis_url: str, redis_prefix: str, mode: str
) -> None:
    proxy = await RedisProxy(redis_url).start()
    cfg = config(proxy.url, proxy.url, redis_prefix, Limits(requests_per_minute=100), failure_mode=mode)
    cfg.cache.lookup_timeout = 0.5  # type: ignore[union-attr]
    async with stack_of(cfg) as stack:
        assert (await stack.post(chat("Tell me a fact"))).status_code == 200
        await proxy.aclose()  # Redis is gone for the gateway
        answer = await stack.post(chat("Tell me a fact"))
        if mode == "closed":
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "budget_unavailable"
            assert len(stack.fake.requests) == 1
        else:  # unmetered, and no entry could be read: the provider answers
            assert answer.status_code == 200
            assert len(stack.fake.requests) == 2


class _Unknown:
    """A layer the budget knows nothing of: it might spend, so the budget reserves up front."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def test_an_unknown_layer_between_budget_and_cache_keeps_the_reservation_up_front(
    router: Any,
) -> None:
    cache = SemanticCacheMiddleware(router, config=CacheConfig(store="memory://", vector_store=None))
    budget = BudgetMiddleware(_Unknown(cache), config=BudgetConfig(limits=Limits(tokens_per_minute=60)))
    assert budget._gated_routes == frozenset()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(budget), base_url="http://t") as client:
        first = await client.post("/v1/chat/completions", json=chat("What is the capital of France?"))
        assert first.status_code == 200
        # out of tokens: the whole estimate is reserved before the cache is asked, so even a hit is refused
        again = await client.post("/v1/chat/completions", json=chat("What is the capital of France?"))
        assert again.status_code == 429
    gated = BudgetMiddleware(cache, config=BudgetConfig(limits=Limits(tokens_per_minute=60)))
    assert gated._gated_routes == frozenset({"chat", "messages", "responses"})


async def test_the_official_sdks_get_their_hits_in_one_round_trip(
    counter: RedisProxy, redis_client: aredis.Redis, redis_prefix: str
) -> None:
    cfg = config(counter.url, counter.url, redis_prefix, Limits(requests_per_minute=100))
    fake = FakeProvider()
    app = build_stack(cfg, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    stack = Stack(app, fake, httpx.AsyncClient())
    # the package's in-process clients: the official SDKs over a transport into the stack
    chat_sdk = openai_client(app, Identity(tenant="acme"), max_retries=0)
    messages_sdk = anthropic_client(app, Identity(tenant="acme"), max_retries=0)
    question = [{"role": "user", "content": "Name a primary colour"}]
    try:
        chat_answers, message_answers = [], []
        for _ in range(3):
            counter.reset()
            chat_answers.append(
                await chat_sdk.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini",
                    messages=question,
                    max_tokens=20,  # type: ignore[arg-type]
                )
            )
            chat_trips = counter.round_trips
            counter.reset()
            message_answers.append(
                await messages_sdk.messages.with_raw_response.create(
                    model="gpt-4o-mini",
                    messages=question,
                    max_tokens=20,  # type: ignore[arg-type]
                )
            )
        # the third of each is a hit, with the scripts loaded: one round trip each
        assert chat_answers[2].headers["x-aigw-cache"] == "hit-exact"
        assert chat_trips == 1
        assert message_answers[2].headers["x-aigw-cache"] == "hit-exact"
        assert counter.round_trips == 1
        first, hit = chat_answers[0].parse(), chat_answers[2].parse()
        assert hit.choices[0].message.content == first.choices[0].message.content
        hit_message, first_message = await message_answers[2].parse(), await message_answers[0].parse()
        assert hit_message.content[0].text == first_message.content[0].text
        assert len(stack.fake.requests) == 2
    finally:
        await close_stack(stack)


async def test_a_layer_that_answers_before_the_gate_is_still_refused_by_the_budget(
    redis_client: aredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    """Redaction blocks a prompt (422) before the cache is reached: the budget reserves at the answer's
    first byte, and a tenant out of requests gets the budget's 429, not the inner answer."""
    cfg = config(redis_url, redis_url, redis_prefix, Limits(requests_per_minute=1))
    cfg.redact = RedactConfig(actions={"US_SSN": "block"})
    async with stack_of(cfg) as stack:
        blocked = await stack.post(chat("My SSN is 536-22-1234"))
        assert blocked.status_code == 422  # within the limit: redaction's answer, and it was counted
        assert await counters(redis_client, redis_prefix, "rpm") == 1
        refused = await stack.post(chat("My SSN is 536-22-1234"))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert stack.fake.requests == []


@pytest.fixture
def taps(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The budget's response taps made, in order (a tapped answer is held and read for its usage)."""
    from asgi_aigw.budget import exchange

    made: list[object] = []

    class CountedTap(exchange.ResponseTap):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(exchange, "ResponseTap", CountedTap)
    return made


async def test_an_exact_hit_leaves_the_budget_untapped_with_its_rate_limit_headers(
    counter: RedisProxy, redis_prefix: str, taps: list[object]
) -> None:
    """A hit that reserved what a hit costs, unmarked, has nothing to settle: its answer goes out of the
    budget without being held and read for usage, and still carries the reservation's headers."""
    limits = Limits(requests_per_minute=100, tokens_per_minute=1_000_000)
    async with stack_of(config(counter.url, counter.url, redis_prefix, limits)) as stack:
        miss = await stack.post(chat("What is the capital of Peru?"))
        assert miss.headers["x-aigw-cache"] == "miss"
        assert len(taps) == 1  # a miss is read for its usage
        hit = await stack.post(chat("What is the capital of Peru?"))
        assert hit.headers["x-aigw-cache"] == "hit-exact"
        assert len(taps) == 1
        assert hit.headers["x-ratelimit-remaining-requests"] == "98"
        assert hit.headers["x-ratelimit-limit-tokens"] == "1000000"
        assert hit.json() == {**miss.json(), "id": hit.json()["id"], "created": hit.json()["created"]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, chat("What is the capital of Chile?", stream=True)),
        (
            MESSAGES,
            {"model": "gpt-4o-mini", "max_tokens": 30, "messages": [{"role": "user", "content": "Hi Chile"}]},
        ),
        (
            MESSAGES,
            {
                "model": "gpt-4o-mini",
                "max_tokens": 30,
                "stream": True,
                "messages": [{"role": "user", "content": "Hi Chile, streamed"}],
            },
        ),
        (
            "/ai/v1/responses",
            {"model": "gpt-4o-mini", "max_output_tokens": 30, "input": "Hi Chile", "store": False},
        ),
    ],
    ids=["chat-sse", "messages", "messages-sse", "responses"],
)
async def test_an_untapped_hit_is_whole_in_every_dialect_and_stream(
    counter: RedisProxy,
    redis_prefix: str,
    taps: list[object],
    path: str,
    body: dict[str, Any],
) -> None:
    """The hit that skips the budget's tap is answered whole (a stream to its end marker) with the
    rate-limit headers, whatever the dialect, streamed or not."""
    limits = Limits(requests_per_minute=100, tokens_per_minute=1_000_000)
    async with stack_of(config(counter.url, counter.url, redis_prefix, limits)) as stack:
        miss = await stack.post(body, path)
        assert miss.headers["x-aigw-cache"] == "miss"
        tapped = len(taps)
        hit = await stack.post(body, path)
        assert hit.status_code == 200
        assert hit.headers["x-aigw-cache"] == "hit-exact"
        assert len(taps) == tapped  # the hit was not tapped
        assert hit.headers["x-ratelimit-remaining-requests"] == "98"
        if body.get("stream"):
            end = b"[DONE]" if path == CHAT else b"message_stop"
            assert end in hit.content
            # replayed in the cache's own chunking: the same text, not the same events
            assert streamed_text(hit) == streamed_text(miss) != ""
        else:
            assert hit.json()["usage"] == miss.json()["usage"]


def streamed_text(response: httpx.Response) -> str:
    """The text of a chat or Messages stream."""
    texts = []
    for payload in sse_payloads(response.text):
        if not isinstance(payload, dict):
            continue
        if payload.get("type") == "content_block_delta":
            texts.append(payload["delta"].get("text", ""))
        for choice in payload.get("choices") or ():
            texts.append(choice["delta"].get("content") or "")
    return "".join(texts)
