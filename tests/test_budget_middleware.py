"""BudgetMiddleware with a real Redis: reserve, 429 with headers, settle from the router's usage, from
the wire, from a stream's usage chunk or its counted text after a disconnect; release on upstream
errors; cache-hit pricing; money limits; live overrides; fail open or closed."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, CacheHitCharge, Limits, RedisBudgetStore
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.router import ProviderRouter
from asgi_aigw.tenant import TenantConfig, TenantMiddleware
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from . import budget_helpers
from .budget_helpers import JSONApp, SSEApp, chat, completion, fixed_clock, token_counter, usage_of
from .support import FAKE_URL, ContextSpy, fake_config, post_scope, sse_payloads

_frozen_now = budget_helpers.frozen_now
store = budget_helpers.store


def stack(
    app: Any, store: Any, config: BudgetConfig | None = None, **options: Any
) -> tuple[ContextSpy, BudgetMiddleware]:
    budget = BudgetMiddleware(
        app,
        config=config or BudgetConfig(**options),
        store=store,
        token_counter=token_counter(),
        clock=fixed_clock,
    )
    return ContextSpy(
        TenantMiddleware(budget, config=TenantConfig(required=False, default_tenant="acme"))
    ), budget


def routed(fake: FakeProvider) -> ProviderRouter:
    return ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})


async def post(app: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post("/v1/chat/completions", json=body, headers=headers or {})


def estimate_of(body: dict[str, Any], default_max: int = 4096) -> tuple[int, int]:
    counter = token_counter()
    output = body.get("max_completion_tokens") or body.get("max_tokens") or default_max
    return counter.count_chat(body, body["model"]), output


# -- the usual path --------------------------------------------------------------------------------------


async def test_json_answer_is_charged_its_real_usage(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app, _ = stack(routed(fake), store, limits=Limits(tokens_per_minute=1000, requests_per_minute=10))
    body = chat(max_tokens=50)
    response = await post(app, body)
    assert response.status_code == 200
    usage = response.json()["usage"]
    used = await usage_of(store, "acme")
    assert used["tokens_per_minute"] == usage["total_tokens"]
    assert used["tokens_per_month"] == usage["total_tokens"]
    assert used["requests_per_minute"] == 1
    prompt, output = estimate_of(body)
    ctx = app.contexts[0]
    assert ctx.token_estimate == prompt + output
    # the headers show what remained after this request's reservation
    assert response.headers["x-ratelimit-limit-tokens"] == "1000"
    assert response.headers["x-ratelimit-remaining-tokens"] == str(1000 - prompt - output)
    assert response.headers["x-ratelimit-limit-requests"] == "10"
    assert response.headers["x-ratelimit-remaining-requests"] == "9"
    assert response.headers["x-ratelimit-reset-tokens"].endswith("s")
    assert "x-ratelimit-limit-tokens-day" not in response.headers  # no limit, no header
    assert ctx.budget_remaining == {"requests_per_minute": 9, "tokens_per_minute": 1000 - prompt - output}
    # gpt-4o-mini: $0.15 / $0.60 per million tokens
    expected = (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6
    assert ctx.cost == pytest.approx(expected, rel=1e-6)


async def test_over_the_limit_is_a_429_naming_the_limit(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app, _ = stack(routed(fake), store, limits=Limits(tokens_per_minute=100, tokens_per_day=10_000))
    response = await post(app, chat(max_tokens=500))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "tokens"
    assert "tokens per minute (TPM)" in error["message"]
    assert "limit 100" in error["message"]
    assert "lower max_tokens" in error["message"]
    # it can never fit: no Retry-After, and the SDKs are told not to retry
    assert "retry-after" not in response.headers
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-ratelimit-limit-tokens"] == "100"
    assert response.headers["x-ratelimit-remaining-tokens"] == "100"
    assert response.headers["x-ratelimit-limit-tokens-day"] == "10000"
    assert fake.requests == []  # never reached the provider
    assert (await usage_of(store, "acme"))["tokens_per_day"] == 0  # nothing reserved anywhere


async def test_requests_per_minute_and_retry_after(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app, _ = stack(routed(fake), store, limits=Limits(requests_per_minute=2))
    assert (await post(app, chat())).status_code == 200
    assert (await post(app, chat())).status_code == 200
    response = await post(app, chat())
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "requests"
    assert "Try again in" in response.json()["error"]["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake.requests) == 2


async def test_tenants_have_their_own_budgets(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app, _ = stack(routed(fake), store, limits=Limits(requests_per_minute=1))
    assert (await post(app, chat(), {"x-tenant-id": "a"})).status_code == 200
    assert (await post(app, chat(), {"x-tenant-id": "a"})).status_code == 429
    assert (await post(app, chat(), {"x-tenant-id": "b"})).status_code == 200


async def test_configured_per_tenant_limits_and_live_overrides(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    config = BudgetConfig(
        limits=Limits(requests_per_minute=1), tenants={"vip": Limits(requests_per_minute=3)}
    )
    app, _budget = stack(routed(fake), store, config=config)
    for _ in range(3):
        assert (await post(app, chat(), {"x-tenant-id": "vip"})).status_code == 200
    assert (await post(app, chat(), {"x-tenant-id": "vip"})).status_code == 429
    # a live override applies to the very next request (read inside the reserve script)
    await store.set_overrides("vip", {"requests_per_minute": 5})
    response = await post(app, chat(), {"x-tenant-id": "vip"})
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "5"
    await store.set_overrides("vip", {"requests_per_minute": -1})
    response = await post(app, chat(), {"x-tenant-id": "vip"})
    assert response.status_code == 200
    assert "x-ratelimit-limit-requests" not in response.headers


# -- streams --------------------------------------------------------------------------------------------


async def test_stream_settles_from_the_usage_chunk(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app, _ = stack(routed(fake), store, limits=Limits(tokens_per_minute=10_000))
    body = chat("one two three four", stream=True, stream_options={"include_usage": True}, max_tokens=100)
    response = await post(app, body)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-tokens"] == "10000"
    usage = [p for p in sse_payloads(response.text) if isinstance(p, dict) and p.get("usage")][-1]["usage"]
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == usage["total_tokens"]


async def test_stream_without_usage_requested_still_settles_exactly(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app, _ = stack(routed(fake), store)
    response = await post(app, chat("one two three four", stream=True))
    assert response.status_code == 200
    assert not any(isinstance(p, dict) and p.get("usage") for p in sse_payloads(response.text))
    received = fake.last_request.json
    assert received["stream_options"] == {"include_usage": True}  # the router asked upstream
    ctx = app.contexts[0]
    assert ctx.usage is not None
    assert not ctx.usage.estimated
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == ctx.usage.total_tokens


async def test_stream_alone_settles_from_the_wire(store: RedisBudgetStore) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    events = [
        b'data: {"choices":[{"index":0,"delta":{"content":"a b c"}}]}\n\n',
        b"data: " + orjson.dumps({"choices": [], "usage": usage}) + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    app, _ = stack(SSEApp(events), store)
    response = await post(app, chat(stream=True))
    assert response.status_code == 200
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == 14


async def test_disconnect_mid_stream_charges_only_what_was_generated(store: RedisBudgetStore) -> None:
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.05))
    app, _ = stack(routed(fake), store)
    words = " ".join(f"word{i}" for i in range(40))
    body = chat(words, stream=True, max_tokens=200)
    raw = orjson.dumps(body)
    communicator = ApplicationCommunicator(app, post_scope("/v1/chat/completions", raw))
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    start = await communicator.receive_output(5)
    assert start["status"] == 200
    sent = b""
    for _ in range(4):  # the role chunk and three pieces of the answer
        sent += (await communicator.receive_output(5))["body"]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)
    while not communicator.output_queue.empty():
        sent += (await communicator.receive_output(1)).get("body", b"")
    assert fake.disconnects == 1
    assert fake.completed_streams == 0

    # what the client was sent before it left: the only output charged, counted by the tokenizer
    text = "".join(
        p["choices"][0]["delta"].get("content") or ""
        for p in sse_payloads(sent.decode())
        if isinstance(p, dict)
    )
    assert text.startswith("Echo: word0 word1")
    assert len(text) < len(words)
    counter = token_counter()
    prompt = counter.count_chat(body, body["model"])
    charged = (await usage_of(store, "acme"))["tokens_per_minute"]
    assert charged == prompt + counter.count_text(text, body["model"])
    assert charged < prompt + 200  # far less than the reservation
    ctx = app.contexts[0]
    assert ctx.usage is not None
    assert ctx.usage.estimated
    assert ctx.client_disconnected


async def test_upstream_error_releases_the_reservation(fake: FakeProvider, store: RedisBudgetStore) -> None:
    fake.behaviour = FakeBehaviour(status=500)  # every attempt fails, retries included
    app, _ = stack(routed(fake), store, limits=Limits(tokens_per_minute=10_000))
    response = await post(app, chat(max_tokens=100))
    assert response.status_code >= 500
    used = await usage_of(store, "acme")
    assert used["tokens_per_minute"] == 0
    assert used["tokens_per_month"] == 0
    assert used["requests_per_minute"] == 1  # the request still counts against RPM
    response = await post(app, chat(stream=True, max_tokens=100))
    assert response.status_code >= 500
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == 0


async def test_settles_as_soon_as_the_answer_ends(store: RedisBudgetStore) -> None:
    """Inner layers may keep working after the last byte (a cache storing the answer): the budget
    settles when the answer ends, so the next request already sees the real figures."""
    seen_after_answer: list[int] = []

    class WorksAfterAnswering(JSONApp):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await super().__call__(scope, receive, send)
            seen_after_answer.append((await usage_of(store, "acme"))["tokens_per_minute"])

    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    app, _ = stack(WorksAfterAnswering(completion("x", usage)), store)
    assert (await post(app, chat(max_tokens=100))).status_code == 200
    assert seen_after_answer == [5]  # not the 100+ tokens reserved
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == 5  # and settled once only


async def test_inner_app_crash_releases_the_reservation(store: RedisBudgetStore) -> None:
    async def crash(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    app, _ = stack(crash, store)
    with pytest.raises(RuntimeError):
        await post(app, chat())
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == 0


# -- alone in front of other apps, cache hits, money ------------------------------------------------


async def test_json_without_usage_counts_the_answer(store: RedisBudgetStore) -> None:
    app, _ = stack(JSONApp(completion("alpha beta gamma", None)), store)
    body = chat()
    assert (await post(app, body)).status_code == 200
    counter = token_counter()
    expected = counter.count_chat(body, body["model"]) + counter.count_text("alpha beta gamma", body["model"])
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == expected
    assert app.contexts[0].usage is not None
    assert app.contexts[0].usage.estimated


async def test_cache_hits_cost_one_request_and_no_tokens_by_default(store: RedisBudgetStore) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    app, _ = stack(JSONApp(completion("cached", usage), cache_status="hit-exact"), store)
    assert (await post(app, chat())).status_code == 200
    used = await usage_of(store, "acme")
    assert used["tokens_per_minute"] == 0
    assert used["requests_per_minute"] == 1
    assert used["cost_per_day"] == 0
    charged, _ = stack(
        JSONApp(completion("cached", usage), cache_status="hit-semantic"),
        store,
        cache_hits=CacheHitCharge(tokens=True, requests=False),
    )
    assert (await post(charged, chat(), {"x-tenant-id": "other"})).status_code == 200
    used = await usage_of(store, "other")
    assert used["tokens_per_minute"] == 15
    assert used["requests_per_minute"] == 0


async def test_money_limits_use_the_price_table(store: RedisBudgetStore) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000}
    app, _ = stack(
        JSONApp(completion("x", usage)),
        store,
        limits=Limits(cost_per_day=0.01),
        pricing={"gpt-4o-mini": {"input": 2.0, "output": 4.0}},
        default_max_tokens=100,
    )
    response = await post(app, chat())
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-cost-day"] == "0.01"
    # 1000 * $2/M + 1000 * $4/M = $0.006
    assert (await usage_of(store, "acme"))["cost_per_day"] == 6_000_000
    response = await post(app, chat())  # $0.006 spent; the estimate still fits ($0.0004)
    assert response.status_code == 200
    response = await post(app, chat())
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert "spend per day" in response.json()["error"]["message"]


async def test_unknown_models_cost_nothing_without_money_limits_and_warn_once(
    store: RedisBudgetStore, caplog: pytest.LogCaptureFixture
) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
    app, _ = stack(JSONApp(completion("x", usage)), store, limits=Limits(tokens_per_day=10_000))
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.budget"):
        for _ in range(3):
            assert (await post(app, {**chat(), "model": "my-local-llm"})).status_code == 200
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records if "my-local-llm" in r.getMessage())
    ) == 1
    assert (await usage_of(store, "acme"))["tokens_per_day"] == 60


async def test_embeddings_are_metered(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app, _ = stack(routed(fake), store, limits=Limits(tokens_per_minute=1000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        response = await client.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["a b", "c"]}
        )
    assert response.status_code == 200
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == response.json()["usage"]["total_tokens"]
    assert response.headers["x-ratelimit-limit-tokens"] == "1000"


async def test_other_routes_pass_through_unmetered(store: RedisBudgetStore) -> None:
    inner = JSONApp(b"{}")
    app, _ = stack(inner, store, limits=Limits(requests_per_minute=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        assert (await client.get("/v1/models")).status_code == 200
        assert (await client.post("/admin/things", json={})).status_code == 200
    assert inner.calls == 2


async def test_bad_json_is_a_400_before_anything_is_reserved(store: RedisBudgetStore) -> None:
    app, _ = stack(JSONApp(b"{}"), store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        response = await client.post("/v1/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert (await usage_of(store, "acme"))["requests_per_minute"] == 0
    assert app.contexts[0].budget_decision == "invalid"


async def test_invalid_tenant_in_the_context_is_refused(store: RedisBudgetStore) -> None:
    async def bad_tenant(scope: Any, receive: Any, send: Any) -> None:
        scope, ctx = ensure_context(scope)
        ctx.tenant_id = "evil}:*"
        await budget(scope, receive, send)

    budget = BudgetMiddleware(JSONApp(b"{}"), store=store, token_counter=token_counter(), clock=fixed_clock)
    response = await post(bad_tenant, chat())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_tenant"


# -- store failures -------------------------------------------------------------------------------------


async def test_store_down_fails_open_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    down = RedisBudgetStore("redis://127.0.0.1:9/0", timeout=0.2)
    inner = JSONApp(completion("x", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
    app, _ = stack(inner, down, limits=Limits(requests_per_minute=1), store_retry_seconds=0)
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.budget"):
        for _ in range(3):
            response = await post(app, chat())
            assert response.status_code == 200
            assert "x-ratelimit-limit-requests" not in response.headers
    assert inner.calls == 3
    # recorded for the request's span (asgi_aigw.trace)
    assert [ctx.budget_decision for ctx in app.contexts] == ["unmetered"] * 3
    assert len([r for r in caplog.records if "Budget store failed" in r.getMessage()]) == 1
    await down.aclose()


async def test_store_down_fails_closed_with_a_503() -> None:
    down = RedisBudgetStore("redis://127.0.0.1:9/0", timeout=0.2)
    inner = JSONApp(b"{}")
    app, _ = stack(inner, down, failure_mode="closed")
    for _ in range(2):  # the second is refused without trying the store again (retry interval)
        response = await post(app, chat())
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "budget_unavailable"
    assert inner.calls == 0
    assert [ctx.budget_decision for ctx in app.contexts] == ["error"] * 2
    await down.aclose()


async def test_memory_store_by_default() -> None:
    inner = JSONApp(completion("x", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))
    budget = BudgetMiddleware(
        inner, token_counter=token_counter(), config=BudgetConfig(limits=Limits(requests_per_minute=1))
    )
    assert (await post(budget, chat())).status_code == 200
    assert (await post(budget, chat())).status_code == 429
