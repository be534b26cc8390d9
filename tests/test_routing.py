"""Resilient routing: fallback across providers, retries before the first byte only, per-deployment
timeouts, cooldowns, weighted load balancing, and what the logs say about it."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from asgi_aigw.config import GatewayConfig
from asgi_aigw.kernel.errors import GatewayError, UpstreamError
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import (
    CooldownConfig,
    DeploymentConfig,
    ModelConfig,
    RetryConfig,
    RouterConfig,
    Timeouts,
)
from asgi_aigw.router.policy import RoutingPolicy, retry_after
from asgi_aigw.router.registry import ResolvedModel
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport
from asgi_aigw.testing.server import free_port

from .golden import deployment
from .support import ContextSpy, sse_payloads

CHAT = "/v1/chat/completions"
PRIMARY_URL = "http://primary.test/v1"
SECONDARY_URL = "http://secondary.test"
PRIMARY_KEY = "sk-test-primary-0123456789"
HELLO = {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}


def config(
    *,
    primary_url: str = PRIMARY_URL,
    primary_timeouts: Timeouts | None = None,
    strategy: str = "fallback",
    retries: int = 0,
    failures: int = 3,
    cooldown_seconds: float = 30.0,
    secondary: bool = True,
) -> GatewayConfig:
    """Model ``m``: an OpenAI-format primary, then an Anthropic-format secondary (another provider)."""
    deployments = [
        DeploymentConfig(
            provider="openai",
            model="gpt-primary",
            base_url=primary_url,
            api_key=PRIMARY_KEY,  # type: ignore[arg-type]
            timeouts=primary_timeouts,
            id="primary",
        )
    ]
    if secondary:
        deployments.append(
            DeploymentConfig(
                provider="anthropic",
                model="claude-secondary",
                base_url=SECONDARY_URL,
                api_key="sk-ant-test-secondary",  # type: ignore[arg-type]
                id="secondary",
            )
        )
    return GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name="m", deployments=deployments, strategy=strategy)],  # type: ignore[arg-type]
            retry=RetryConfig(retries=retries, backoff_base=0.01, backoff_max=0.05),
            cooldown=CooldownConfig(failures=failures, seconds=cooldown_seconds),
        ),
    )


class Stack:
    def __init__(self, cfg: GatewayConfig, primary: FakeProvider, secondary: FakeProvider) -> None:
        self.primary = primary
        self.secondary = secondary
        self.router = ProviderRouter(
            cfg.router,
            transports={
                PRIMARY_URL: StreamingASGITransport(primary),
                SECONDARY_URL: StreamingASGITransport(secondary),
            },
            env={},
        )
        self.spy = ContextSpy(self.router)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(self.spy), base_url="http://t")

    async def chat(self, **changes: Any) -> httpx.Response:
        return await self.client.post(CHAT, json={**HELLO, **changes})

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.router.aclose()


@pytest.fixture
async def make_stack() -> AsyncIterator[Any]:
    stacks: list[Stack] = []

    def make(cfg: GatewayConfig | None = None) -> Stack:
        stack = Stack(cfg or config(), FakeProvider(), FakeProvider())
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.aclose()


def router_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asgi_aigw.router"]


@pytest.mark.parametrize("stream", [False, True])
async def test_primary_500_is_answered_by_the_secondary_with_one_log_line(
    make_stack: Any, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    stack = make_stack()
    stack.primary.behaviour = FakeBehaviour(status=500, error_message=f"boom (key {PRIMARY_KEY})")
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat(stream=stream)
    assert response.status_code == 200
    if stream:
        payloads = sse_payloads(response.text)
        assert (
            "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p["choices"])
            == "Echo: Hello there"
        )
        assert payloads[-1] == "[DONE]"
    else:
        assert response.json()["choices"][0]["message"]["content"] == "Echo: Hello there"
    assert response.headers["x-aigw-provider"] == "anthropic"
    assert response.headers["x-aigw-model"] == "claude-secondary"
    assert response.headers["x-aigw-deployment"] == "secondary"
    assert response.headers["x-aigw-attempts"] == "2"
    assert len(stack.primary.requests) == 1
    assert len(stack.secondary.requests) == 1
    lines = router_lines(caplog)
    assert len(lines) == 1
    assert "attempt 1 on primary failed" in lines[0]
    assert "retrying on secondary" in lines[0]
    assert PRIMARY_KEY not in caplog.text  # the upstream echoed the key; the log line does not
    assert stack.spy.contexts[0].attempts == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_primary_timeout_is_answered_by_the_secondary(
    make_stack: Any, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    stack = make_stack(config(primary_timeouts=Timeouts(first_byte=0.2)))
    stack.primary.behaviour = FakeBehaviour(first_byte_delay=3.0)
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat(stream=stream)
    assert response.status_code == 200
    assert response.headers["x-aigw-provider"] == "anthropic"
    lines = router_lines(caplog)
    assert len(lines) == 1
    assert "first_byte timeout of 0.2s" in lines[0]


async def test_connect_error_falls_back(make_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    refused = f"http://127.0.0.1:{free_port()}/v1"
    stack = make_stack(config(primary_url=refused))
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat()
    assert response.status_code == 200
    assert response.headers["x-aigw-deployment"] == "secondary"
    assert "Could not connect" in router_lines(caplog)[0]


async def test_after_the_first_streamed_byte_nothing_is_retried(
    make_stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack()
    stack.primary.behaviour = FakeBehaviour(cut_after=1)
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat(stream=True)
    assert response.status_code == 200
    assert '"content":"Echo:"' in response.text  # the first piece reached the client ...
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error")  # ... then a final SSE error event, and no second answer
    assert "ended the stream before the answer was complete" in last
    assert stack.secondary.requests == []
    lines = router_lines(caplog)
    assert len(lines) == 1
    assert "after the answer started" in lines[0]


async def test_idle_gap_timeout_mid_stream_ends_with_an_error_event(make_stack: Any) -> None:
    stack = make_stack(config(primary_timeouts=Timeouts(idle=0.2)))
    stack.primary.behaviour = FakeBehaviour(chunk_delay=2.0)
    response = await stack.chat(stream=True)
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error")
    assert "idle timeout of 0.2s" in last
    assert stack.secondary.requests == []


async def test_a_stream_failing_before_its_first_event_is_retried(make_stack: Any) -> None:
    """Anthropic sends message_start, then overloaded_error: nothing reached the client, so retry."""
    cfg = config()
    first, second = cfg.router.models[0].deployments
    cfg.router.models[0].deployments = [second.model_copy(update={"id": "anthropic-a"}), first]
    stack = make_stack(cfg)
    stack.secondary.behaviour = FakeBehaviour(stream_error_after=0)
    response = await stack.chat(stream=True)
    assert response.status_code == 200
    assert response.headers["x-aigw-deployment"] == "primary"
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    assert "event: error" not in response.text


async def test_client_errors_are_not_retried(make_stack: Any, caplog: pytest.LogCaptureFixture) -> None:
    stack = make_stack()
    stack.primary.behaviour = FakeBehaviour(status=400, error_message="bad parameter")
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat()
    assert response.status_code == 400
    assert "bad parameter" in response.json()["error"]["message"]
    assert stack.secondary.requests == []
    assert router_lines(caplog) == []


async def test_retries_with_backoff_on_one_deployment(
    make_stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(config(retries=2, secondary=False))
    stack.primary.enqueue(FakeBehaviour(status=503), times=2)
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat()
    assert response.status_code == 200
    assert response.headers["x-aigw-attempts"] == "3"
    assert len(stack.primary.requests) == 3
    assert [("retrying on primary" in line) for line in router_lines(caplog)] == [True, True]


async def test_when_attempts_run_out_the_last_error_is_returned(
    make_stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(config(retries=1, secondary=False))
    stack.primary.behaviour = FakeBehaviour(status=429, retry_after="0", error_message="slow down")
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "0"
    assert len(stack.primary.requests) == 2
    lines = router_lines(caplog)
    assert len(lines) == 2
    assert "no attempt left" in lines[-1]


async def test_cooled_down_deployment_is_skipped_and_comes_back(
    make_stack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack(config(failures=2, cooldown_seconds=30))
    now = [1000.0]
    stack.router.policy.clock = lambda: now[0]
    stack.primary.behaviour = FakeBehaviour(status=502)
    for _ in range(2):
        assert (await stack.chat()).headers["x-aigw-deployment"] == "secondary"
    assert len(stack.primary.requests) == 2  # two failures in a row: the primary cools down

    stack.primary.behaviour = FakeBehaviour()  # healthy again, but still cooling down
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asgi_aigw.router"):
        response = await stack.chat()
    assert response.headers["x-aigw-deployment"] == "secondary"
    assert response.headers["x-aigw-attempts"] == "1"
    assert len(stack.primary.requests) == 2  # skipped: not even tried
    assert router_lines(caplog) == []

    now[0] += 31  # the cooldown is over
    response = await stack.chat()
    assert response.headers["x-aigw-deployment"] == "primary"
    assert len(stack.primary.requests) == 3


async def test_every_deployment_cooling_down_is_a_fast_503(make_stack: Any) -> None:
    stack = make_stack(config(failures=1, cooldown_seconds=20))
    now = [0.0]
    stack.router.policy.clock = lambda: now[0]
    stack.primary.behaviour = FakeBehaviour(status=500)
    stack.secondary.behaviour = FakeBehaviour(status=500)
    assert (await stack.chat()).status_code == 502
    response = await stack.chat()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "deployments_cooling_down"
    assert response.headers["retry-after"] == "20"
    assert (len(stack.primary.requests), len(stack.secondary.requests)) == (1, 1)
    now[0] += 21
    stack.primary.behaviour = FakeBehaviour()
    assert (await stack.chat()).status_code == 200


async def test_a_lone_deployment_never_cools_down(make_stack: Any) -> None:
    stack = make_stack(config(failures=1, cooldown_seconds=20, secondary=False))
    stack.primary.behaviour = FakeBehaviour(status=500)
    assert (await stack.chat()).status_code == 502
    assert (await stack.chat()).status_code == 502  # tried again, not refused: there is nowhere else to go
    assert len(stack.primary.requests) == 2
    stack.primary.behaviour = FakeBehaviour()
    assert (await stack.chat()).status_code == 200


async def test_weighted_strategy_spreads_traffic(make_stack: Any) -> None:
    stack = make_stack(config(strategy="weighted"))
    stack.router.policy.rng = random.Random(7)
    seen = Counter([(await stack.chat()).headers["x-aigw-deployment"] for _ in range(40)])
    assert set(seen) == {"primary", "secondary"}


def test_weighted_order_follows_the_weights() -> None:
    heavy = dataclasses.replace(deployment("openai", "a", "http://a"), weight=3.0)
    light = deployment("openai", "b", "http://b")
    resolved = ResolvedModel("m", (heavy, light), "weighted")
    policy = RoutingPolicy(rng=random.Random(1))
    firsts = Counter(policy.order(resolved)[0].id for _ in range(4000))
    share = firsts["openai/a"] / 4000
    assert 0.70 < share < 0.80  # 3:1 weights: three quarters of first picks
    assert {d.id for d in policy.order(resolved)} == {"openai/a", "openai/b"}  # the other stays a fallback
    assert [d.id for d in RoutingPolicy().order(ResolvedModel("m", (heavy, light)))] == [
        "openai/a",
        "openai/b",
    ]


def test_retry_after_is_honoured_and_capped() -> None:
    only = deployment("openai", "a", "http://a")
    policy = RoutingPolicy(RetryConfig(retries=2, backoff_base=0.01, backoff_max=0.02, max_retry_after=30))
    attempts = policy.plan(ResolvedModel("m", (only,)))
    attempts.first()
    step = attempts.after_failure(only, GatewayError("slow down", status=429, headers=[("retry-after", "2")]))
    assert step is not None
    assert step[0] is only
    assert step[1] >= 2.0  # the upstream's Retry-After wins over a shorter backoff
    too_long = GatewayError("slow down", status=429, headers=[("retry-after", "120")])
    assert attempts.after_failure(only, too_long) is None  # longer than we hold a client: give up


def test_backoff_grows_with_full_jitter() -> None:
    policy = RoutingPolicy(RetryConfig(backoff_base=0.5, backoff_max=3.0), rng=random.Random(3))
    for round_, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 3.0)]:
        delays = [policy.backoff(round_) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spreads over the whole window


def test_retry_after_parses_seconds_and_dates() -> None:
    assert retry_after(UpstreamError("x", headers=[("Retry-After", "7")])) == 7.0
    date = GatewayError("x", headers=[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")])
    assert retry_after(date, now=lambda: 1445412500.0) == 10.0
    assert retry_after(GatewayError("x")) is None


async def test_provider_prefix_names_route_with_the_sdks_env_vars() -> None:
    fake = FakeProvider()
    urls = {
        "anthropic": "http://anthropic.test",
        "gemini": "http://gemini.test",
        "ollama": "http://ollama.test:11434",
    }
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-test-env",
        "ANTHROPIC_BASE_URL": urls["anthropic"],
        "GOOGLE_API_KEY": "test-google-env",
        "GEMINI_BASE_URL": urls["gemini"],
        "OLLAMA_HOST": "ollama.test:11434",  # host:port, as Ollama's own clients accept it
    }
    transport = StreamingASGITransport(fake)
    router = ProviderRouter(RouterConfig(), transports=dict.fromkeys(urls.values(), transport), env=env)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://t") as client:
        for name, path, header in [
            ("anthropic/claude-x", "/v1/messages", ("x-api-key", "sk-ant-test-env")),
            (
                "gemini/gemini-x",
                "/v1beta/models/gemini-x:generateContent",
                ("x-goog-api-key", "test-google-env"),
            ),
            ("ollama/llama3.2", "/api/chat", None),
        ]:
            response = await client.post(CHAT, json={**HELLO, "model": name})
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "Echo: Hello there"
            assert fake.last_request.path == path
            if header:
                assert fake.last_request.headers[header[0]] == header[1]
    await router.aclose()
