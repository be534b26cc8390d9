"""Attacks on the whole stack (tenant, budget, redaction, cache, log, router over FakeProvider) through
the newest request fields: reasoning, structured outputs, service tiers, hooks. Each test names the
promise it attacks: bad input is a 4xx in the client's dialect, never a 500; no PII reaches the
provider, the log or a hook, whatever field it is written in."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_aigw import build_app
from asgi_aigw.cache import SemanticCacheMiddleware
from asgi_aigw.config import GatewayConfig
from asgi_aigw.hooks import HookFailure, HookRequest, Hooks
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import layer, whole_stack_config

UPSTREAM = "http://fake-upstream.test"
EMAIL = "maria.gonzalez@example.com"

SCHEMA_A: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}
SCHEMA_B: dict[str, Any] = {**SCHEMA_A, "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}}}

#: One model per provider adapter, all served by one FakeProvider.
DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "gpt-4o-mini": {"provider": "openai", "model": "gpt-4o-mini", "base_url": f"{UPSTREAM}/v1"},
    "gpt-5-mini": {
        "provider": "openai",
        "model": "gpt-5-mini",
        "base_url": f"{UPSTREAM}/v1",
        "responses_api": True,
    },
    "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5", "base_url": UPSTREAM},
    "gemini": {"provider": "gemini", "model": "gemini-2.5-flash", "base_url": UPSTREAM},
    "qwen": {"provider": "ollama", "model": "qwen3:8b", "base_url": UPSTREAM},
    "azure": {"provider": "azure", "model": "prod-gpt-4o", "base_url": UPSTREAM},
}


class Stack:
    """The whole stack, the fake behind it, and what its hooks were given."""

    def __init__(self, config: GatewayConfig) -> None:
        self.fake = FakeProvider()
        self.hooked: list[str] = []
        self.hooks = Hooks(before_request=[self._before], on_error=[self._failed])
        transports = {UPSTREAM: StreamingASGITransport(self.fake)}
        self.app = build_app(config, transports=transports, env={}, hooks=self.hooks)
        self.http = httpx.AsyncClient(
            transport=StreamingASGITransport(self.app),
            base_url="http://app.test/ai/v1",
            headers={"x-tenant-id": "acme", "anthropic-version": "2023-06-01"},
        )

    async def _before(self, request: HookRequest) -> None:
        self.hooked.append(repr(request.body))

    async def _failed(self, failure: HookFailure) -> None:
        self.hooked.append(repr(failure.error.message))

    async def rows(self) -> list[dict[str, Any]]:
        log = layer(self.app, RequestLogMiddleware)
        assert await log.writer.flush()
        return list(log.writer.sink.rows)


@pytest.fixture
async def stack(redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Stack]:
    config = whole_stack_config(
        "gpt-4o-mini",
        DeploymentConfig(**DEPLOYMENTS["gpt-4o-mini"], api_key="test-key-not-real"),
        redis_url,
        redis_prefix,
        tmp_path,
        1_000_000,
    )
    config.router.models = [
        ModelConfig(name=name, deployments=[DeploymentConfig(**spec, api_key="test-key-not-real")])
        for name, spec in DEPLOYMENTS.items()
    ]
    config.router.retry = RetryConfig(retries=0)
    stack = Stack(config)
    yield stack
    await stack.http.aclose()
    await layer(stack.app, SemanticCacheMiddleware).aclose()


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello there"}], **extra}


# -- bad input: a 4xx in the client's dialect, never a 500 ---------------------------------------------


@pytest.mark.parametrize("tier", [["auto"], {"tier": "auto"}])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_service_tier_that_is_no_string_is_a_400_for_anthropic(
    stack: Stack, tier: Any, stream: bool
) -> None:
    response = await stack.http.post(
        "/chat/completions", json=chat("claude", service_tier=tier, stream=stream)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "service_tier"
    # the Responses API reaches the same adapter through its translation
    response = await stack.http.post(
        "/responses", json={"model": "claude", "input": "Hello there", "service_tier": tier, "stream": stream}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "service_tier"
    assert not stack.fake.requests


@pytest.mark.parametrize("spec", ["garbage", ["schema"], 5])
async def test_a_json_schema_response_format_that_is_no_object_is_a_400_for_ollama(
    stack: Stack, spec: Any
) -> None:
    response_format = {"type": "json_schema", "json_schema": spec}
    response = await stack.http.post("/chat/completions", json=chat("qwen", response_format=response_format))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "response_format"
    assert not stack.fake.requests


@pytest.mark.parametrize("field", ["reasoning", "text"])
async def test_a_responses_setting_that_is_no_object_is_openais_400_not_a_500(
    stack: Stack, field: str
) -> None:
    response = await stack.http.post(
        "/responses", json={"model": "gpt-5-mini", "input": "Hello there", field: "high"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].endswith(
        f"Invalid type for '{field}': expected an object, but got a string instead."
    )


@pytest.mark.parametrize(
    ("schema", "status"),
    [
        ({"type": {"name": "string"}}, 400),
        ({"type": ["string", {"name": "null"}]}, 400),
        # a format the decoder cannot take moves into the description, as any other it does not know
        ({"type": "string", "format": ["date"]}, 200),
        ({"$ref": "#/$defs/when", "$defs": {"when": {"type": "string", "format": {"date": True}}}}, 200),
    ],
)
async def test_a_schema_keyword_of_the_wrong_type_is_no_500_for_anthropic(
    stack: Stack, schema: dict[str, Any], status: int
) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    response = await stack.http.post(
        "/chat/completions", json=chat("claude", response_format=response_format)
    )
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["param"] == "response_format"
    else:
        sent = stack.fake.last_request.json["output_config"]["format"]["schema"]
        node = sent["$defs"]["when"] if "$defs" in sent else sent
        assert "format" not in node
        assert node["description"].startswith("{format: ")
    text = {"format": {"type": "json_schema", "name": "answer", "schema": schema}}
    response = await stack.http.post(
        "/responses", json={"model": "claude", "input": "Hi there", "text": text}
    )
    assert response.status_code == status, response.text


# -- PII in settings fields (enum words) never reaches the provider, the log or a hook -------------------

#: (route, body) pairs, each with the e-mail in a setting the APIs check as an enum.
SETTINGS_WITH_PII: list[tuple[str, dict[str, Any]]] = [
    ("/chat/completions", chat("gpt-4o-mini", reasoning_effort=EMAIL)),
    ("/chat/completions", chat("azure", service_tier=EMAIL)),
    ("/chat/completions", chat("gpt-4o-mini", verbosity=EMAIL)),
    ("/chat/completions", chat("claude", reasoning_effort=EMAIL)),
    (
        "/messages",
        {**chat("claude", service_tier=EMAIL), "max_tokens": 2000},
    ),
    (
        "/messages",
        {
            **chat("claude", thinking={"type": "enabled", "budget_tokens": 1024, "note": EMAIL}),
            "max_tokens": 2000,
        },
    ),
    (
        "/responses",
        {"model": "gpt-5-mini", "input": "Hello there", "reasoning": {"effort": "low", "summary": EMAIL}},
    ),
    ("/responses", {"model": "gpt-5-mini", "input": "Hello there", "include": [EMAIL]}),
    ("/responses", {"model": "gpt-5-mini", "input": "Hello there", "truncation": EMAIL}),
    ("/responses", {"model": "gpt-4o-mini", "input": "Hello there", "service_tier": EMAIL}),
    ("/responses", {"model": "gpt-5-mini", "input": "Hello there", "text": {"verbosity": EMAIL}}),
]


@pytest.mark.parametrize(("route", "body"), SETTINGS_WITH_PII, ids=lambda v: v if isinstance(v, str) else "")
async def test_pii_in_a_setting_reaches_neither_the_provider_nor_the_log_nor_a_hook(
    stack: Stack, route: str, body: dict[str, Any]
) -> None:
    response = await stack.http.post(route, json=body)
    assert response.status_code < 500, response.text
    assert not any(EMAIL.encode() in sent.body for sent in stack.fake.requests)
    rows = await stack.rows()
    assert len(rows) == 1
    assert EMAIL not in repr(rows)
    await stack.hooks.drain()
    assert not any(EMAIL in seen for seen in stack.hooked)


async def test_a_model_name_the_gateway_does_not_serve_is_not_logged(stack: Stack) -> None:
    """A name no deployment serves is the client's text, not a model: the log does not keep it."""
    response = await stack.http.post("/chat/completions", json=chat(EMAIL))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    (row,) = await stack.rows()
    assert row["model"] == ""
    # (the body, logged on request here, is kept as redaction left it: names such as model unscanned)
    assert EMAIL not in repr({k: v for k, v in row.items() if k != "request_body"})


# -- the budget's cap holds whichever cap field the upstream reads ---------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "azure"])
async def test_a_second_larger_cap_field_never_reaches_the_upstream(stack: Stack, model: str) -> None:
    """The budget reserves for ``max_completion_tokens`` (OpenAI's field); an OpenAI-compatible server
    that reads only ``max_tokens`` must not be handed 50,000 of them."""
    body = chat(model, max_completion_tokens=30, max_tokens=50_000)
    response = await stack.http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    sent = stack.fake.last_request.json
    assert (sent["max_tokens"], sent["max_completion_tokens"]) == (30, 30)
    (row,) = await stack.rows()
    assert row["token_estimate"] < 100  # the prompt and the 30 tokens reserved


# -- the cache never answers a different question ---------------------------------------------------------


async def test_an_answer_to_a_body_a_hook_changed_is_not_replayed_to_the_next_caller(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """The cache keys the client's body; a before-hook that adds who is asking (from the app's own
    records) makes each caller's question different, so the first caller's answer must not be replayed
    to the second."""
    callers = iter(["Alice", "Bob"])

    async def personalise(request: HookRequest) -> dict[str, Any]:
        body = request.body
        body["messages"][-1]["content"] += f" I am {next(callers)}."
        return body

    deployment = DeploymentConfig(**DEPLOYMENTS["gpt-4o-mini"], api_key="test-key-not-real")
    config = whole_stack_config("gpt-4o-mini", deployment, redis_url, redis_prefix, tmp_path, 1_000_000)
    fake = FakeProvider()
    app = build_app(
        config,
        transports={UPSTREAM: StreamingASGITransport(fake)},
        env={},
        hooks=Hooks(before_request=[personalise]),
    )
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app),
        base_url="http://app.test/ai/v1",
        headers={"x-tenant-id": "acme"},
    ) as http:
        first = await http.post("/chat/completions", json=chat("gpt-4o-mini"))
        second = await http.post("/chat/completions", json=chat("gpt-4o-mini"))
    await layer(app, SemanticCacheMiddleware).aclose()
    assert first.json()["choices"][0]["message"]["content"] == "Echo: Hello there I am Alice."
    assert second.json()["choices"][0]["message"]["content"] == "Echo: Hello there I am Bob."
    assert second.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("route", "first", "second"),
    [
        (
            "/chat/completions",
            chat("claude", reasoning_effort="low"),
            chat("claude", reasoning_effort="high"),
        ),
        ("/chat/completions", chat("claude"), chat("claude", service_tier="default")),
        (
            "/chat/completions",
            chat(
                "claude",
                response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA_A}},
            ),
            chat(
                "claude",
                response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA_B}},
            ),
        ),
        (
            "/messages",
            {
                **chat("claude"),
                "max_tokens": 500,
                "output_config": {"format": {"type": "json_schema", "schema": SCHEMA_A}},
            },
            {
                **chat("claude"),
                "max_tokens": 500,
                "output_config": {"format": {"type": "json_schema", "schema": SCHEMA_B}},
            },
        ),
        (
            "/responses",
            {"model": "claude", "input": "Hello there", "reasoning": {"effort": "low"}, "store": False},
            {"model": "claude", "input": "Hello there", "reasoning": {"effort": "high"}, "store": False},
        ),
    ],
)
async def test_requests_differing_only_in_a_setting_never_share_a_cached_answer(
    stack: Stack, route: str, first: dict[str, Any], second: dict[str, Any]
) -> None:
    assert (await stack.http.post(route, json=first)).status_code == 200
    repeat = await stack.http.post(route, json=first)
    assert repeat.headers["x-aigw-cache"] == "hit-exact"
    other = await stack.http.post(route, json=second)
    assert other.status_code == 200, other.text
    assert other.headers["x-aigw-cache"] == "miss"
    assert len(stack.fake.requests) == 2


# -- a first configuration --------------------------------------------------------------------------------


def test_a_cache_without_redaction_is_said_at_start_up(
    caplog: pytest.LogCaptureFixture, redis_url: str, tmp_path: Path
) -> None:
    from asgi_aigw.cache.config import CacheConfig
    from asgi_aigw.redact import RedactConfig

    models = [ModelConfig(name="gpt-4o-mini", deployments=[DeploymentConfig(**DEPLOYMENTS["gpt-4o-mini"])])]
    cache = CacheConfig(store=redis_url, vector_store=None)
    for redact, warned in ((None, True), (RedactConfig(), False)):
        caplog.clear()
        config = GatewayConfig(router={"models": models}, cache=cache, redact=redact)  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="asgi_aigw"):
            build_app(config, env={})
        said = any("without redaction" in r.getMessage() for r in caplog.records)
        assert said is warned
