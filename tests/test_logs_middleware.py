"""RequestLogMiddleware in front of the router and FakeProvider: one row per request, every outcome,
the request id, what other layers recorded, and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from asgi_aigw.app import build_app
from asgi_aigw.cli.demo import demo_config
from asgi_aigw.kernel.context import Usage, ensure_context
from asgi_aigw.kernel.errors import RateLimited, send_error
from asgi_aigw.logs import LogConfig, LogWriter, MemorySink, MetricsConfig, RequestLogMiddleware
from asgi_aigw.logs.metrics import GatewayMetrics, metrics_app
from asgi_aigw.logs.row import COLUMN_NAMES
from asgi_aigw.router import ProviderRouter
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .support import FAKE_URL, eventually, fake_config, sse_payloads

CHAT = "/v1/chat/completions"


def hello(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def memory_config(**overrides: Any) -> LogConfig:
    return LogConfig(store="memory://", spool_dir=None, flush_interval=3600, **overrides)


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(models=["gpt-4o-mini", "text-embedding-3-small"])


@pytest.fixture
def stack(fake: FakeProvider, metrics: GatewayMetrics) -> RequestLogMiddleware:
    router = ProviderRouter(
        fake_config().router,
        transports={FAKE_URL: StreamingASGITransport(fake)},
        env={},
        metrics=metrics_app(metrics),
    )
    return RequestLogMiddleware(router, store=MemorySink(), config=memory_config(), metrics=metrics)


def client_for(app: Any, *, streaming: bool = False) -> httpx.AsyncClient:
    transport = StreamingASGITransport(app) if streaming else httpx.ASGITransport(app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def logged(app: RequestLogMiddleware) -> list[dict[str, Any]]:
    assert app.writer is not None
    assert await app.writer.flush()
    sink = app.writer.sink
    assert isinstance(sink, MemorySink)
    return sink.rows


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- one row per request, with the right fields -------------------------------------------------------


async def test_n_requests_make_n_rows_with_the_right_fields(stack: RequestLogMiddleware) -> None:
    async with client_for(stack) as client:
        responses = [await client.post(CHAT, json=hello(f"question {i}")) for i in range(5)]
    rows = await logged(stack)
    assert len(rows) == 5
    assert [row["request_id"] for row in rows] == [r.headers["x-request-id"] for r in responses]
    assert len({row["request_id"] for row in rows}) == 5
    for row in rows:
        assert set(row) == set(COLUMN_NAMES)
        assert row["route"] == "chat"
        assert row["method"] == "POST"
        assert row["path"] == CHAT
        assert row["model"] == "gpt-4o-mini"
        assert row["stream"] is False
        assert (row["provider"], row["upstream_model"], row["deployment"]) == (
            "openai", "gpt-4o-mini", "openai/gpt-4o-mini",
        )  # fmt: skip
        assert row["status"] == 200
        assert row["error_code"] == ""
        assert row["client_disconnected"] is False
        # the fake counts one completion token per word of "Echo: question N"
        assert row["completion_tokens"] == 3
        assert row["total_tokens"] == row["prompt_tokens"] + 3 > 3
        assert row["attempts"] == 1
        assert 0 < row["ttfb_ms"] <= row["latency_ms"]
        assert row["request_body"] == ""  # never the prompt unless asked
        assert isinstance(row["timestamp"], int)
        assert row["timestamp"] > 1_700_000_000_000


async def test_a_valid_incoming_request_id_is_kept_and_an_invalid_one_replaced(
    stack: RequestLogMiddleware,
) -> None:
    async with client_for(stack) as client:
        kept = await client.post(CHAT, json=hello(), headers={"x-request-id": "trace-123:abc"})
        replaced = await client.post(CHAT, json=hello(), headers={"x-request-id": "bad id\twith spaces"})
    assert kept.headers["x-request-id"] == "trace-123:abc"
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers.get_list("x-request-id")) == 1
    rows = await logged(stack)
    assert [row["request_id"] for row in rows] == ["trace-123:abc", replaced.headers["x-request-id"]]


async def test_a_stream_is_logged_with_its_usage_and_time_to_first_byte(
    fake: FakeProvider, stack: RequestLogMiddleware
) -> None:
    fake.behaviour = FakeBehaviour(chunk_delay=0.01)
    async with client_for(stack, streaming=True) as client:
        response = await client.post(CHAT, json=hello("one two three", stream=True))
        text = "".join(
            p["choices"][0]["delta"].get("content") or ""
            for p in sse_payloads(response.text)[:-1]
            if p["choices"]
        )
    assert text == "Echo: one two three"
    [row] = await logged(stack)
    assert row["stream"] is True
    assert row["status"] == 200
    assert row["completion_tokens"] == 4
    # the first chunk left well before the last one
    assert row["ttfb_ms"] < row["latency_ms"] - 20


# -- every outcome --------------------------------------------------------------------------------


async def test_an_upstream_error_is_logged_with_its_status_and_code(
    fake: FakeProvider, stack: RequestLogMiddleware
) -> None:
    fake.enqueue(FakeBehaviour(status=500), times=3)  # one try and two retries
    async with client_for(stack) as client:
        response = await client.post(CHAT, json=hello())
    assert response.status_code == 502
    [row] = await logged(stack)
    assert (row["status"], row["error_code"], row["provider"]) == (502, "bad_gateway", "")
    assert row["attempts"] == 3


async def test_a_bad_request_is_logged(stack: RequestLogMiddleware) -> None:
    async with client_for(stack) as client:
        invalid_json = await client.post(
            CHAT, content=b"{not json", headers={"content-type": "application/json"}
        )
        no_messages = await client.post(CHAT, json={"model": "gpt-4o-mini"})
    assert (invalid_json.status_code, no_messages.status_code) == (400, 400)
    rows = await logged(stack)
    assert [(row["status"], row["error_code"]) for row in rows] == [(400, "invalid_request")] * 2
    assert rows[1]["model"] == ""  # the body never validated


async def test_a_client_that_leaves_mid_stream_is_logged(
    fake: FakeProvider, stack: RequestLogMiddleware
) -> None:
    fake.behaviour = FakeBehaviour(chunk_delay=0.05)
    request = hello("a b c d e f g h i j", stream=True)
    async with (
        client_for(stack, streaming=True) as client,
        client.stream("POST", CHAT, json=request) as response,
    ):
        async for _ in response.aiter_bytes():
            break  # first chunk, then hang up
    assert await asyncio.wait_for(stack.writer.flush(), 10)  # type: ignore[union-attr]
    [row] = await logged(stack)
    assert row["client_disconnected"] is True
    assert row["status"] == 200  # the status line had gone out
    assert row["completion_tokens"] == 0  # the answer never completed


async def test_a_client_that_leaves_before_the_answer_is_logged_as_499(
    fake: FakeProvider, stack: RequestLogMiddleware
) -> None:
    fake.behaviour = FakeBehaviour(first_byte_delay=30)
    body = httpx.Request("POST", "http://t", json=hello()).read()
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await eventually(lambda: bool(fake.requests))  # the request reached the provider: the client leaves
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": CHAT,
        "headers": [(b"content-type", b"application/json")],
    }
    await asyncio.wait_for(stack(scope, receive, send), 10)
    assert sent == []
    [row] = await logged(stack)
    assert (row["status"], row["error_code"], row["client_disconnected"]) == (
        499,
        "client_disconnected",
        True,
    )


async def test_a_row_is_queued_even_when_the_inner_app_raises() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        _, ctx = ensure_context(scope)
        ctx.model = "gpt-4o-mini"
        raise RuntimeError("boom")

    app = RequestLogMiddleware(broken, config=memory_config())
    scope = {"type": "http", "method": "POST", "path": CHAT, "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent")

    with pytest.raises(RuntimeError, match="boom"):
        await app(scope, receive, send)
    [row] = await logged(app)
    assert (row["status"], row["error_code"], row["model"]) == (500, "internal_error", "gpt-4o-mini")


# -- what other layers recorded -------------------------------------------------------------------


def recording_layer(app: Any, *, reject: bool = False) -> Any:
    """Stands in for the tenant, budget, redaction and cache layers: fills their context fields and
    redacts the body (or refuses the request as a budget would)."""

    async def layer(scope: Any, receive: Any, send: Any) -> None:
        from asgi_aigw.kernel.body import forward_scope, read_json

        scope, receive, body = await read_json(scope, receive)
        _, ctx = ensure_context(scope)
        ctx.tenant_id = "acme"
        ctx.token_estimate = 120
        ctx.budget_remaining = {"daily_tokens": 9880.0}
        if reject:
            await send_error(send, RateLimited("Budget exhausted.", code="budget_exceeded"))
            return
        ctx.pii_entities = {"EMAIL_ADDRESS": 2, "PERSON": 1}
        body.data["messages"][0]["content"] = "mail <EMAIL_ADDRESS_1>"
        body.mark_changed()
        ctx.body_redacted = True  # what RedactMiddleware records: the body may now be logged
        ctx.cache_status, ctx.cache_score = "miss", 0.42
        await app(forward_scope(scope, body), receive, send)
        ctx.cost = 0.0125
        ctx.usage = Usage(10, 4, 14, estimated=True)

    return layer


async def test_fields_filled_by_other_layers_are_logged(fake: FakeProvider, metrics: GatewayMetrics) -> None:
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    app = RequestLogMiddleware(
        recording_layer(router), config=memory_config(log_bodies=True), metrics=metrics
    )
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello("mail jane@example.com"))
    assert response.json()["choices"][0]["message"]["content"] == "Echo: mail <EMAIL_ADDRESS_1>"
    [row] = await logged(app)
    assert row["tenant"] == "acme"
    assert (row["cache_status"], row["cache_score"]) == ("miss", 0.42)
    assert row["pii_entities"] == {"EMAIL_ADDRESS": 2, "PERSON": 1}
    assert row["budget_remaining"] == {"daily_tokens": 9880.0}
    assert (row["token_estimate"], row["cost"]) == (120, 0.0125)
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_estimated"]) == (10, 4, True)
    # the body as the inner layers left it: redacted, never the client's text
    assert "<EMAIL_ADDRESS_1>" in row["request_body"]
    assert "jane@example.com" not in row["request_body"]
    assert sample(metrics, "aigw_redactions_total", entity="EMAIL_ADDRESS") == 2
    assert sample(metrics, "aigw_cache_requests_total", outcome="miss") == 1
    assert sample(metrics, "aigw_cost_total", model="gpt-4o-mini") == 0.0125
    assert sample(metrics, "aigw_tokens_total", model="gpt-4o-mini", type="completion") == 4


async def test_a_budget_rejection_is_logged_and_counted(fake: FakeProvider, metrics: GatewayMetrics) -> None:
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    app = RequestLogMiddleware(recording_layer(router, reject=True), config=memory_config(), metrics=metrics)
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello())
    assert response.status_code == 429
    [row] = await logged(app)
    assert (row["status"], row["error_code"], row["tenant"], row["attempts"]) == (
        429,
        "budget_exceeded",
        "acme",
        0,
    )
    assert sample(metrics, "aigw_budget_rejections_total") == 1
    assert fake.requests == []


# -- which requests are logged ----------------------------------------------------------------------


async def test_only_gateway_routes_are_logged_unless_configured(fake: FakeProvider) -> None:
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    default = RequestLogMiddleware(router, config=memory_config())
    everything = RequestLogMiddleware(router, config=memory_config(routes="all"))
    for app in (default, everything):
        async with client_for(app) as client:
            assert (await client.get("/health")).status_code == 404
            assert (await client.get("/v1/models")).status_code == 200
    assert [row["route"] for row in await logged(default)] == ["models"]
    assert [(row["path"], row["status"]) for row in await logged(everything)] == [
        ("/health", 404),
        ("/v1/models", 200),
    ]


async def test_lifespan_shutdown_flushes_the_log(fake: FakeProvider) -> None:
    config = fake_config()
    config.log = memory_config()
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    assert isinstance(app, RequestLogMiddleware)
    assert app.writer is not None
    sink = app.writer.sink
    assert isinstance(sink, MemorySink)
    async with LifespanManager(app), client_for(app) as client:
        for _ in range(3):
            assert (await client.post("/ai" + CHAT, json=hello())).status_code == 200
        assert sink.rows == []  # the interval is an hour: nothing flushed yet
    assert len(sink.rows) == 3


async def test_a_shared_writer_can_be_passed_in() -> None:
    sink = MemorySink()
    writer = LogWriter(sink, flush_interval=3600)

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    first, second = RequestLogMiddleware(ok, store=writer), RequestLogMiddleware(ok, store=writer)
    for app in (first, second):
        async with client_for(app) as client:
            await client.get("/v1/models")
    assert await writer.flush()
    assert len(sink.rows) == 2
    await writer.aclose()


# -- metrics ----------------------------------------------------------------------------------------


async def test_metrics_are_served_by_the_router_with_bounded_labels(fake: FakeProvider) -> None:
    config = fake_config()
    config.log = memory_config(metrics=MetricsConfig())
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    async with client_for(app) as client:
        await client.post("/ai" + CHAT, json=hello())
        await client.post("/ai" + CHAT, json={**hello(), "model": "no-such-model"})
        await client.post("/ai" + CHAT, json={**hello(), "model": "another-unknown-model"})
        response = await client.get("/ai/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'aigw_requests_total{model="gpt-4o-mini",route="chat",status="200"} 1.0' in text
    # names outside the configured models share one label value
    assert 'aigw_requests_total{model="other",route="chat",status="404"} 2.0' in text
    assert "unknown-model" not in text
    assert "no-such-model" not in text
    assert "tenant=" not in text  # the tenant label is off by default
    for name in (
        "aigw_request_duration_seconds_bucket",
        "aigw_time_to_first_byte_seconds_bucket",
        "aigw_tokens_total",
        "aigw_log_queue_depth",
        "aigw_log_rows_written_total",
        "aigw_log_rows_spilled_total",
        "aigw_log_rows_dropped_total",
    ):
        assert name in text
    # /metrics itself is not a gateway request: not logged, not counted
    assert app.writer is not None
    assert await app.writer.flush()
    assert len(app.writer.sink.rows) == 3  # type: ignore[attr-defined]


async def test_the_tenant_label_is_optional_and_bounded() -> None:
    metrics = GatewayMetrics(tenant_label=True, max_tenants=2)

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        _, ctx = ensure_context(scope)
        ctx.tenant_id = dict(scope["headers"])[b"x-tenant"].decode()
        ctx.route = "chat"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = RequestLogMiddleware(answer, metrics=metrics, config=LogConfig(store=None))
    assert app.writer is None  # metrics only: no rows anywhere
    async with client_for(app) as client:
        for tenant in ("a", "b", "c", "d", "a"):
            await client.post(CHAT, json={}, headers={"x-tenant": tenant})
    assert sample(metrics, "aigw_requests_total", route="chat", model="", status="200", tenant="a") == 2
    assert sample(metrics, "aigw_requests_total", route="chat", model="", status="200", tenant="other") == 2


async def test_metrics_app_alone() -> None:
    metrics = GatewayMetrics()
    metrics.requests.labels("chat", "m", "200").inc()
    async with client_for(metrics_app(metrics)) as client:
        text = await client.get("/", headers={"accept": "application/openmetrics-text"})
        refused = await client.post("/")
    assert text.headers["content-type"].startswith("application/openmetrics-text")
    assert 'aigw_requests_total{model="m",route="chat",status="200"} 1.0' in text.text
    assert refused.status_code == 405


def test_two_gateways_in_one_process_keep_separate_metrics() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.requests.labels("chat", "m", "200").inc()
    assert (
        first.registry.get_sample_value(
            "aigw_requests_total", {"route": "chat", "model": "m", "status": "200"}
        )
        == 1
    )
    assert (
        second.registry.get_sample_value(
            "aigw_requests_total", {"route": "chat", "model": "m", "status": "200"}
        )
        is None
    )


def test_the_demo_logs_to_chdb_in_its_data_directory_and_serves_metrics() -> None:
    config = demo_config()
    assert config.log is not None
    has_chdb = importlib.util.find_spec("chdb") is not None
    assert config.log.store == ("chdb://.aigw/chdb" if has_chdb else "jsonl://.aigw/requests.jsonl")
    assert config.log.spool_dir == ".aigw/spool"
    assert config.log.metrics is not None
    assert config.log.metrics.serve
