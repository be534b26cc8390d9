"""Attacks on the budget's hard cap through streams a client leaves: a reasoning model spends (and
bills) thinking tokens it never streams, so a client that leaves before any text must not get them
for nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, RedisBudgetStore
from asgi_aigw.budget.unseen import thinks_unseen
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.tenant import TenantConfig, TenantMiddleware
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from . import budget_helpers
from .budget_helpers import fixed_clock, token_counter, usage_of
from .support import (
    FAKE_ORIGIN,
    FAKE_URL,
    ContextSpy,
    WholeStack,
    eventually,
    post_scope,
    whole_stack,
    whole_stack_config,
)

store = budget_helpers.store


class Stack(WholeStack):
    def __init__(self, app: Any, fake: FakeProvider) -> None:
        super().__init__(app, fake)
        self.http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://app.test")


_frozen_now = budget_helpers.frozen_now


def gateway(fake: FakeProvider, store: RedisBudgetStore) -> ContextSpy:
    models = [
        ModelConfig(
            name=name, deployments=[DeploymentConfig(model=name, base_url=FAKE_URL, api_key="sk-test-fake")]
        )
        for name in ("gpt-4o-mini", "o4-mini")
    ]
    router = ProviderRouter(
        RouterConfig(models=models, retry=RetryConfig(retries=0)),
        transports={FAKE_URL: StreamingASGITransport(fake)},
        env={},
    )
    budget = BudgetMiddleware(
        router,
        config=BudgetConfig(limits=Limits(tokens_per_minute=100_000)),
        store=store,
        token_counter=token_counter(),
        clock=fixed_clock,
    )
    return ContextSpy(TenantMiddleware(budget, config=TenantConfig(required=False, default_tenant="acme")))


async def leave_after_the_first_chunk(app: Any, body: dict[str, Any]) -> bytes:
    """Post ``body``, read the status and the first chunk (the role, no text), then leave."""
    raw = orjson.dumps(body)
    communicator = ApplicationCommunicator(app, post_scope("/v1/chat/completions", raw))
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    start = await communicator.receive_output(5)
    assert start["status"] == 200
    first = (await communicator.receive_output(5))["body"]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)
    return bytes(first)


@pytest.mark.parametrize(
    ("extra", "thinks"),
    [
        ({"model": "o4-mini"}, True),  # reasons by default, streams none of it
        ({"model": "gpt-4o-mini", "reasoning_effort": "high"}, True),
        ({"model": "gpt-4o-mini"}, False),
    ],
)
async def test_leaving_a_stream_before_its_text_is_not_free(
    store: RedisBudgetStore, extra: dict[str, Any], thinks: bool
) -> None:
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.2))
    app = gateway(fake, store)
    body = {"messages": [{"role": "user", "content": "Prove it step by step."}], "stream": True, **extra}
    body["max_completion_tokens"] = 500
    first = await leave_after_the_first_chunk(app, body)
    assert b'"content":"' not in first.replace(b'"content":""', b"")  # no text reached the client
    assert fake.disconnects == 1
    ctx = app.contexts[0]
    assert ctx.client_disconnected
    prompt = token_counter().count_chat(body, body["model"])
    charged = (await usage_of(store, "acme"))["tokens_per_minute"]
    # the provider billed the prompt it read, and a reasoning model's thinking up to the cap
    assert charged == prompt + (500 if thinks else 0)


def test_what_thinks_out_of_sight() -> None:
    assert thinks_unseen({"reasoning": {"effort": "low"}}, "gpt-4o")
    assert thinks_unseen({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "claude-sonnet-4-5")
    assert thinks_unseen({}, "fast", "gemini-2.5-flash")  # the upstream's model thinks by default
    assert thinks_unseen({}, "openai/gpt-5-mini")
    assert not thinks_unseen({"reasoning_effort": "none"}, "gpt-4o-mini")
    assert not thinks_unseen({"thinking": {"type": "disabled"}}, "claude-sonnet-4-5", "gemini-2.0-flash")


async def test_leaving_before_a_json_answer_keeps_the_reservation(store: RedisBudgetStore) -> None:
    """A client that leaves while the provider works on a JSON answer saw nothing; the provider billed
    the prompt and whatever it generated, at most what was reserved, so that is what is counted."""
    fake = FakeProvider(FakeBehaviour(first_byte_delay=2.0))
    app = gateway(fake, store)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "A long essay, please."}]}
    body["max_tokens"] = 300
    raw = orjson.dumps(body)
    communicator = ApplicationCommunicator(app, post_scope("/v1/chat/completions", raw))
    await communicator.send_input({"type": "http.request", "body": raw, "more_body": False})
    assert await eventually(lambda: len(fake.requests) == 1)
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)
    ctx = app.contexts[0]
    assert ctx.client_disconnected
    assert ctx.attempts == 1
    prompt = token_counter().count_chat(body, body["model"])
    assert (await usage_of(store, "acme"))["tokens_per_minute"] == prompt + 300


async def test_leaving_before_anything_went_upstream_costs_nothing(store: RedisBudgetStore) -> None:
    app = gateway(FakeProvider(), store)
    raw = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    communicator = ApplicationCommunicator(app, post_scope("/v1/chat/completions", raw))
    # the body never completes: nothing reaches the router's upstream call
    await communicator.send_input({"type": "http.request", "body": raw[:10], "more_body": True})
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(5)
    assert (await usage_of(store, "acme")).get("tokens_per_minute", 0) == 0


async def test_a_background_response_is_charged_what_it_may_generate_later(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """``background: true`` answers at once with a queued response and no usage; the provider then
    generates and bills it out of sight. The settlement keeps the output reserved, or a client could
    queue answer after answer for the price of their prompts."""
    deployment = DeploymentConfig(
        provider="openai",
        model="gpt-5-mini",
        base_url=f"{FAKE_ORIGIN}/v1",
        api_key="test-key-not-real",  # type: ignore[arg-type]
        responses_api=True,
    )
    config = whole_stack_config("gpt-5-mini", deployment, redis_url, redis_prefix, tmp_path, 100_000)
    async for stack in whole_stack(Stack, config, FAKE_ORIGIN, redis_url, redis_prefix):
        body = {
            "model": "gpt-5-mini",
            "input": "Write a long report.",
            "background": True,
            "max_output_tokens": 900,
        }
        response = await stack.http.post("/ai/v1/responses", json=body, headers={"x-tenant-id": "acme"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "queued"
        (row,) = await stack.rows()
        assert row["token_estimate"] > 900
        assert row["total_tokens"] == row["token_estimate"]  # the prompt and all 900 reserved
