"""Budgets per user: ``per: user`` and ``per: tenant_and_user`` on a real Redis (and the memory store),
one atomic reservation over the tenant's and the user's windows, settled with real usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, BudgetStore, Limits
from asgi_aigw.budget.memory import MemoryBudgetStore
from asgi_aigw.budget.subjects import user_slots
from asgi_aigw.budget.windows import SlotClock
from asgi_aigw.kernel.context import Identity
from asgi_aigw.tenant import TenantConfig, TenantMiddleware

from . import budget_helpers
from .budget_helpers import JSONApp, chat, completion, fixed_clock, token_counter

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


_frozen_now = budget_helpers.frozen_now


@pytest.fixture(params=["redis", "memory"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[BudgetStore]:
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    async with budget_helpers.redis_budget_store(redis_url, redis_prefix) as store:
        yield store


def login(scope: Any) -> Identity | None:
    """The app's login, as a resolver: ``x-test-user: alice`` is alice of acme."""
    for key, value in scope["headers"]:
        if key == b"x-test-user":
            return Identity("acme", value.decode())
    return None


def stack(store: BudgetStore, config: BudgetConfig) -> TenantMiddleware:
    inner = JSONApp(completion("fine", USAGE))
    budget = BudgetMiddleware(
        inner, config=config, store=store, token_counter=token_counter(), clock=fixed_clock
    )
    return TenantMiddleware(
        budget, config=TenantConfig(required=False, default_tenant="acme"), resolver=login
    )


async def ask(app: Any, user: str | None) -> httpx.Response:
    headers = {"x-test-user": user} if user else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post("/v1/chat/completions", json=chat(max_tokens=10), headers=headers)


async def usage(store: BudgetStore, user: str | None = None) -> dict[str, int]:
    slots = SlotClock().slots(budget_helpers.NOW)
    chosen = user_slots(slots, user) if user else list(slots)
    values = await store.usage("acme", chosen)
    return {slot.window.name: value for slot, value in zip(slots, values, strict=True)}


async def test_per_user_one_user_is_refused_while_another_is_served(store: BudgetStore) -> None:
    app = stack(store, BudgetConfig(per="user", user_limits=Limits(requests_per_minute=2)))
    for _ in range(2):
        assert (await ask(app, "alice")).status_code == 200
    refused = await ask(app, "alice")
    assert refused.status_code == 429
    assert "of user alice" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-remaining-user-requests"] == "0"
    # bob has his own windows (on Redis: not alice's keys from the store's key cache)
    bob = await ask(app, "bob")
    assert bob.status_code == 200
    assert bob.headers["x-ratelimit-remaining-user-requests"] == "1"
    assert (await usage(store, "alice"))["requests_per_minute"] == 2
    assert (await usage(store, "bob"))["requests_per_minute"] == 1
    assert (await usage(store))["requests_per_minute"] == 0  # the tenant's own windows are not used


async def test_tenant_and_user_reserves_both_atomically_and_settles_both(store: BudgetStore) -> None:
    config = BudgetConfig(
        per="tenant_and_user",
        limits=Limits(requests_per_minute=3),
        user_limits=Limits(requests_per_minute=2, tokens_per_minute=10_000),
    )
    app = stack(store, config)
    assert (await ask(app, "alice")).status_code == 200
    assert (await ask(app, "alice")).status_code == 200
    over_user = await ask(app, "alice")
    assert over_user.status_code == 429
    assert "of user alice" in over_user.json()["error"]["message"]
    assert (await ask(app, "bob")).status_code == 200
    over_tenant = await ask(app, "bob")  # bob's own limit has room; the organisation's has not
    assert over_tenant.status_code == 429
    assert "of user" not in over_tenant.json()["error"]["message"].split(":")[0]
    # refusals added nothing anywhere; served requests were settled to their real usage in both
    tenant, alice, bob = await usage(store), await usage(store, "alice"), await usage(store, "bob")
    assert (tenant["requests_per_minute"], alice["requests_per_minute"], bob["requests_per_minute"]) == (
        3,
        2,
        1,
    )
    assert (tenant["tokens_per_minute"], alice["tokens_per_minute"], bob["tokens_per_minute"]) == (45, 30, 15)


async def test_requests_without_a_user_are_charged_to_the_tenant(store: BudgetStore) -> None:
    app = stack(store, BudgetConfig(per="tenant_and_user", user_limits=Limits(requests_per_minute=1)))
    for _ in range(3):
        assert (await ask(app, None)).status_code == 200
    assert (await usage(store))["requests_per_minute"] == 3


@pytest.mark.parametrize("user", ["a:b", "a{b}", "x*", "a" * 300])
async def test_user_ids_pass_the_key_safety_checks(store: BudgetStore, user: str) -> None:
    from asgi_aigw.kernel.context import ensure_context, set_identity

    inner = JSONApp(completion("fine", USAGE))
    budget = BudgetMiddleware(
        inner, config=BudgetConfig(per="user"), store=store, token_counter=token_counter(), clock=fixed_clock
    )

    async def adapter(scope: Any, receive: Any, send: Any) -> None:  # an identity set by the host app
        scope, ctx = ensure_context(scope)
        set_identity(ctx, Identity("acme", user), "app")
        await budget(scope, receive, send)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(adapter), base_url="http://testserver"
    ) as client:
        response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_user"
    assert inner.calls == 0
