"""TraceMiddleware in front of the whole stack and FakeProvider, spans read from the SDK's in-memory
exporter: a JSON answer, a stream, a cache hit, a budget 429 and an upstream retry, with their
attributes; the upstream receives each attempt's traceparent; spans join an app's own span or an
incoming traceparent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from asgi_aigw.app import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.config import GatewayConfig
from asgi_aigw.kernel.context import Identity, ensure_context, get_context, set_identity
from asgi_aigw.kernel.types import ASGIApp
from asgi_aigw.redact import RedactConfig
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport
from asgi_aigw.trace import TraceConfig, TraceMiddleware

from .support import FAKE_ORIGIN, FAKE_URL, post_scope, sse_payloads

CHAT = "/ai/v1/chat/completions"
EMAIL = "jane.doe@example.com"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def stack_config(**sections: Any) -> GatewayConfig:
    deployment = DeploymentConfig(model="gpt-4o-mini", base_url=FAKE_URL, api_key="sk-test-not-a-real-key")
    return GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name="gpt-4o-mini", deployments=[deployment])],
            retry=RetryConfig(retries=1, backoff_base=0.01, backoff_max=0.02),
        ),
        tenant=TenantConfig(header="x-tenant-id"),
        redact=RedactConfig(regex_only=True),
        **sections,
    )


def traced(fake: FakeProvider, provider: TracerProvider, config: GatewayConfig, **options: Any) -> ASGIApp:
    """The stack ``build_app`` makes, under a TraceMiddleware with the test's tracer provider (where
    ``build_app`` puts it, outermost; it takes the global provider, which a test process sets once)."""
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    return TraceMiddleware(app, config=TraceConfig(**options), tracer_provider=provider)


def client_for(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://testserver")


def hello(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def gateway_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "asgi_aigw"]  # type: ignore[union-attr]


def request_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = [s for s in gateway_spans(exporter) if s.kind in (SpanKind.SERVER, SpanKind.INTERNAL)]
    return span


def attempt_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    spans = [s for s in gateway_spans(exporter) if s.kind == SpanKind.CLIENT]
    return sorted(spans, key=lambda s: s.attributes["aigw.attempt"])  # type: ignore[index]


def traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


# -- the request span -------------------------------------------------------------------------------


async def test_a_json_answer_has_one_span_with_the_genai_and_gateway_attributes(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = traced(fake, provider, stack_config())
    async with client_for(app) as client:
        response = await client.post(
            CHAT,
            json=hello(f"Write to {EMAIL} please"),
            headers={"x-tenant-id": "acme"},
        )
    assert response.status_code == 200
    answer = response.json()
    span = request_span(exporter)
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SpanKind.SERVER
    assert span.parent is None
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == answer["model"]
    assert attributes["gen_ai.response.id"] == answer["id"]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == answer["usage"]["prompt_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] == answer["usage"]["completion_tokens"] > 0
    assert attributes["gen_ai.request.stream"] is False
    assert attributes["http.response.status_code"] == 200
    assert attributes["aigw.dialect"] == "chat"
    assert attributes["aigw.tenant"] == "acme"
    assert attributes["aigw.request_id"]
    assert attributes["aigw.attempts"] == 1
    assert attributes["aigw.deployment"]
    # counts per entity type, never the values
    assert attributes["aigw.redactions.EMAIL_ADDRESS"] == 1
    assert not any(EMAIL in str(value) for value in attributes.values())
    assert span.status.status_code == StatusCode.UNSET
    (attempt,) = attempt_spans(exporter)
    assert attempt.parent is not None
    assert attempt.parent.span_id == span.get_span_context().span_id
    assert attempt.name == "chat gpt-4o-mini"
    assert attempt.attributes is not None
    assert attempt.attributes["aigw.outcome"] == "ok"
    assert attempt.attributes["aigw.attempt"] == 1
    assert attempt.attributes["gen_ai.provider.name"] == "openai"
    assert attempt.attributes["server.address"] == "fake-upstream.test"
    assert attempt.attributes["http.response.status_code"] == 200


async def test_the_user_is_recorded_only_when_configured(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    config = stack_config()
    config.tenant = None
    for record_user in (True, False):
        exporter.clear()
        gateway = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})

        async def logged_in(scope: Any, receive: Any, send: Any, gateway: ASGIApp = gateway) -> None:
            # the host app's own login, as its authentication would record it
            scope, ctx = ensure_context(scope)
            set_identity(ctx, Identity("acme", "u-7"), "app")
            await gateway(scope, receive, send)

        app = TraceMiddleware(
            logged_in, config=TraceConfig(record_user=record_user), tracer_provider=provider
        )
        async with client_for(app) as client:
            response = await client.post(CHAT, json=hello())
        assert response.status_code == 200
        attributes = request_span(exporter).attributes or {}
        assert attributes["aigw.tenant"] == "acme"
        assert attributes.get("aigw.user") == ("u-7" if record_user else None)


async def test_a_stream_has_its_id_finish_reason_and_usage(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = traced(fake, provider, stack_config())
    body = hello(stream=True, stream_options={"include_usage": True})
    async with client_for(app) as client:
        response = await client.post(CHAT, json=body, headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    chunks = [p for p in sse_payloads(response.text) if isinstance(p, dict)]
    usage = next(c["usage"] for c in chunks if c.get("usage"))
    attributes = request_span(exporter).attributes or {}
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.id"] == chunks[0]["id"]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    (attempt,) = attempt_spans(exporter)
    # the attempt lasts as long as the stream it relays
    assert attempt.attributes is not None
    assert attempt.attributes["aigw.outcome"] == "ok"


async def test_a_cache_hit_is_a_span_without_an_upstream_attempt(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = traced(fake, provider, stack_config(cache=CacheConfig(store="memory://", vector_store=None)))
    async with client_for(app) as client:
        first = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
        exporter.clear()
        second = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert first.status_code == second.status_code == 200
    assert len(fake.requests) == 1
    span = request_span(exporter)
    attributes = span.attributes or {}
    assert attributes["aigw.cache"] == "hit-exact"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.id"] == second.json()["id"]
    assert attributes["gen_ai.usage.output_tokens"] == second.json()["usage"]["completion_tokens"]
    assert attempt_spans(exporter) == []


async def test_a_budget_refusal_is_a_429_span_with_the_decision(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    budget = BudgetConfig(store="memory://", limits=Limits(requests_per_minute=1))
    app = traced(fake, provider, stack_config(budget=budget))
    async with client_for(app) as client:
        allowed = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
        assert (request_span(exporter).attributes or {})["aigw.budget"] == "allowed"
        exporter.clear()
        refused = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert allowed.status_code == 200
    assert refused.status_code == 429
    span = request_span(exporter)
    attributes = span.attributes or {}
    assert span.name == "chat gpt-4o-mini"
    assert attributes["aigw.budget"] == "refused"
    assert attributes["http.response.status_code"] == 429
    assert attributes["error.type"] == "rate_limit_exceeded"
    assert "gen_ai.provider.name" not in attributes
    # the client's error, not the server's
    assert span.status.status_code == StatusCode.UNSET
    assert attempt_spans(exporter) == []


async def test_an_upstream_retry_is_two_attempt_spans_each_with_its_traceparent(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fake.enqueue(FakeBehaviour(status=500))
    app = traced(fake, provider, stack_config())
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    failed, succeeded = attempt_spans(exporter)
    assert failed.attributes is not None
    assert succeeded.attributes is not None
    assert failed.attributes["aigw.attempt"] == 1
    assert failed.attributes["aigw.outcome"] == "retried"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["error.type"]
    assert failed.status.status_code == StatusCode.ERROR
    assert succeeded.attributes["aigw.attempt"] == 2
    assert succeeded.attributes["aigw.outcome"] == "ok"
    span = request_span(exporter)
    assert (span.attributes or {})["aigw.attempts"] == 2
    assert {failed.parent.span_id, succeeded.parent.span_id} == {span.get_span_context().span_id}  # type: ignore[union-attr]
    # each attempt's own context reached the upstream, the client's credentials did not
    assert [r.headers["traceparent"] for r in fake.requests] == [traceparent(failed), traceparent(succeeded)]


async def test_a_failure_with_no_attempt_left_is_a_server_error(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fake.enqueue(FakeBehaviour(status=500), times=2)
    app = traced(fake, provider, stack_config())
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert response.status_code == 502  # the upstream's 500, as the gateway answers it
    outcomes = [(s.attributes or {})["aigw.outcome"] for s in attempt_spans(exporter)]
    assert outcomes == ["retried", "failed"]
    span = request_span(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["http.response.status_code"] == 502
    assert [(s.attributes or {})["http.response.status_code"] for s in attempt_spans(exporter)] == [500, 500]


async def test_no_traceparent_goes_upstream_when_propagation_is_off(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = traced(fake, provider, stack_config(), propagate=False)
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    assert "traceparent" not in fake.last_request.headers
    assert len(attempt_spans(exporter)) == 1


async def test_an_anthropic_messages_request_is_a_chat_span_with_its_stop_reason(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    deployment = DeploymentConfig(
        provider="anthropic", model="claude-sonnet-4-5", base_url=FAKE_ORIGIN, api_key="sk-ant-test-not-real"
    )
    config = GatewayConfig(
        router=RouterConfig(models=[ModelConfig(name="claude-sonnet-4-5", deployments=[deployment])])
    )
    app = TraceMiddleware(
        build_app(config, transports={FAKE_ORIGIN: StreamingASGITransport(fake)}, env={}),
        tracer_provider=provider,
    )
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    async with client_for(app) as client:
        response = await client.post("/ai/v1/messages", json=body)
    assert response.status_code == 200
    attributes = request_span(exporter).attributes or {}
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["aigw.dialect"] == "messages"
    assert attributes["gen_ai.response.id"] == response.json()["id"]
    assert attributes["gen_ai.response.finish_reasons"] == (response.json()["stop_reason"],)
    assert "traceparent" in fake.last_request.headers


# -- joining the app's trace ------------------------------------------------------------------------


async def test_the_spans_join_the_apps_active_span(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = traced(fake, provider, stack_config())
    with provider.get_tracer("host-app").start_as_current_span("POST /ai", kind=SpanKind.SERVER) as outer:
        async with client_for(app) as client:
            response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    span = request_span(exporter)
    assert span.kind == SpanKind.INTERNAL  # inside the app's own server span
    assert span.parent is not None
    assert span.parent.span_id == outer.get_span_context().span_id
    assert span.context.trace_id == outer.get_span_context().trace_id
    (attempt,) = attempt_spans(exporter)
    assert attempt.context.trace_id == outer.get_span_context().trace_id


async def test_an_incoming_traceparent_is_continued_when_no_span_is_active(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for extract in (True, False):
        exporter.clear()
        app = traced(fake, provider, stack_config(), extract=extract)
        async with client_for(app) as client:
            response = await client.post(
                CHAT, json=hello(), headers={"x-tenant-id": "acme", "traceparent": incoming}
            )
        assert response.status_code == 200
        span = request_span(exporter)
        continued = span.parent is not None and span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert continued is extract
        if extract:
            assert span.parent is not None
            assert span.parent.span_id == 0xB7AD6B7169203331
            assert span.parent.is_remote


async def test_baggage_never_goes_upstream_only_the_trace_context(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Baggage is the app's (or its client's) own context, user ids and the like: the provider, a third
    party, gets the trace context and nothing of it, whether the baggage came in or the app set it."""
    from opentelemetry import baggage, context

    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    app = traced(fake, provider, stack_config())
    headers = {"x-tenant-id": "acme", "traceparent": incoming, "baggage": f"user.email={EMAIL}"}
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello(), headers=headers)
        assert response.status_code == 200
        sent = fake.last_request.headers
        assert sent["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
        assert "baggage" not in sent
        token = context.attach(baggage.set_baggage("user.email", EMAIL))
        try:
            response = await client.post(CHAT, json=hello("Again"), headers={"x-tenant-id": "acme"})
        finally:
            context.detach(token)
    assert response.status_code == 200
    assert "traceparent" in fake.last_request.headers
    assert "baggage" not in fake.last_request.headers
    assert EMAIL not in repr(fake.last_request.headers)


async def test_a_model_name_the_gateway_does_not_serve_is_not_a_span_attribute(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = traced(fake, provider, stack_config())
    async with client_for(app) as client:
        response = await client.post(CHAT, json={**hello(), "model": EMAIL}, headers={"x-tenant-id": "acme"})
    assert response.status_code == 404
    span = request_span(exporter)
    assert span.name == "chat"
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "model_not_found"
    assert EMAIL not in repr(attributes)


async def test_the_request_span_is_current_inside_the_app(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A span the inner app (a hook, the host's own code) starts is a child of the request span."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        with provider.get_tracer("inner").start_as_current_span("guardrail"):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    async with client_for(TraceMiddleware(inner, tracer_provider=provider)) as client:
        await client.post("/v1/chat/completions", json=hello())
    spans = {s.name: s for s in exporter.get_finished_spans()}
    # nothing parsed the body, so the span has no model to name
    guardrail, request = spans["guardrail"], spans["chat"]
    assert guardrail.parent is not None
    assert guardrail.parent.span_id == request.context.span_id


async def test_other_routes_pass_through_untraced(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with client_for(TraceMiddleware(inner, tracer_provider=provider)) as client:
        assert (await client.get("/health")).status_code == 200
    assert exporter.get_finished_spans() == ()


# -- off, and absent -------------------------------------------------------------------------------


def test_build_app_puts_the_trace_layer_outermost_only_when_configured() -> None:
    config = stack_config()
    assert not isinstance(build_app(config, env={}), TraceMiddleware)
    config.trace = TraceConfig(propagate=False)
    app = build_app(config, env={})
    assert isinstance(app, TraceMiddleware)
    assert app.config.propagate is False


async def test_without_the_trace_layer_no_tracer_is_asked_for_a_span(
    fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the global tracer provider a spy, a request through a stack without ``trace:`` starts no
    span and sends no traceparent, and one through a stack with it does (the spy is the one used)."""
    started: list[str] = []

    class Spy(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            tracer = super().get_tracer(*args, **kwargs)
            original = tracer.start_span

            def start_span(name: str, *a: Any, **k: Any) -> Any:
                started.append(name)
                return original(name, *a, **k)

            tracer.start_span = start_span  # type: ignore[method-assign]
            return tracer

    monkeypatch.setattr(trace, "get_tracer_provider", Spy)
    config = stack_config()
    for enabled in (False, True):
        config.trace = TraceConfig() if enabled else None
        app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
        async with client_for(app) as client:
            response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
        assert response.status_code == 200
        assert ("traceparent" in fake.last_request.headers) is enabled
        assert bool(started) is enabled


def test_opentelemetry_is_not_imported_unless_traces_are_on() -> None:
    """No ``trace:`` section: the gateway never imports OpenTelemetry, so it costs nothing. (Run apart
    from the test helpers: redis-py imports OpenTelemetry itself when it is installed.)"""
    script = """
import sys, asyncio, httpx
from asgi_aigw.app import build_app
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.config import GatewayConfig

async def main():
    config = GatewayConfig.model_validate({"router": {"models": [{"name": "gpt-4o-mini", "deployments": [
        {"model": "gpt-4o-mini", "base_url": "http://fake.test/v1", "api_key": "sk-test-not-a-real-key"}]}]}})
    app = build_app(config, transports={"http://fake.test/v1": StreamingASGITransport(FakeProvider())}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post("/ai/v1/chat/completions", headers={"x-tenant-id": "a"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 200, response.text
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_missing_opentelemetry_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_aigw.kernel.optional import MissingDependency

    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(MissingDependency, match=r"asgi-aigw\[otel\]"):
        TraceMiddleware(lambda *a: None)  # type: ignore[arg-type,return-value]


SNIPPET = Path(__file__).resolve().parent.parent / "docs" / "snippets" / "tracing_console.py"


def test_the_documented_snippet_prints_the_gateways_spans_inside_the_apps(tmp_path: Path) -> None:
    """docs/tracing.md includes docs/snippets/tracing_console.py: run as a script (it sets the process's
    global tracer provider, so in a process of its own), it prints three spans of one trace."""
    done = subprocess.run(
        [sys.executable, str(SNIPPET)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    decoder = json.JSONDecoder()
    spans, text = [], done.stdout.strip()
    while text.startswith("{"):
        span, end = decoder.raw_decode(text)
        spans.append(span)
        text = text[end:].lstrip()
    assert text == "Echo: Hello"
    assert len(spans) == 3
    attempt = next(s for s in spans if s["kind"] == "SpanKind.CLIENT")
    app = next(s for s in spans if s["name"] == "POST /ask")
    request = next(s for s in spans if s["name"] == "chat gpt-4o-mini" and s["kind"] == "SpanKind.INTERNAL")
    assert {s["context"]["trace_id"] for s in spans} == {app["context"]["trace_id"]}
    assert request["parent_id"] == app["context"]["span_id"]
    assert attempt["parent_id"] == request["context"]["span_id"]
    assert request["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]


# -- every dialect, and embeddings -----------------------------------------------------------------


def one_model(provider: str, model: str, base_url: str) -> GatewayConfig:
    deployment = DeploymentConfig(
        provider=provider, model=model, base_url=base_url, api_key="sk-test-not-a-real-key"
    )
    return GatewayConfig(router=RouterConfig(models=[ModelConfig(name=model, deployments=[deployment])]))


async def test_an_anthropic_messages_stream_has_its_id_and_stop_reason(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    config = one_model("anthropic", "claude-sonnet-4-5", FAKE_ORIGIN)
    app = TraceMiddleware(
        build_app(config, transports={FAKE_ORIGIN: StreamingASGITransport(fake)}, env={}),
        tracer_provider=provider,
    )
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi there"}],
    }
    async with client_for(app) as client:
        response = await client.post("/ai/v1/messages", json=body)
    assert response.status_code == 200
    events = [p for p in sse_payloads(response.text) if isinstance(p, dict)]
    start = next(e for e in events if e["type"] == "message_start")
    delta = next(e for e in events if e["type"] == "message_delta")
    attributes = request_span(exporter).attributes or {}
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.id"] == start["message"]["id"]
    assert attributes["gen_ai.response.finish_reasons"] == (delta["delta"]["stop_reason"],)
    assert attributes["gen_ai.usage.output_tokens"] == delta["usage"]["output_tokens"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_responses_api_answer_has_its_id_and_status(
    stream: bool, fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = TraceMiddleware(
        build_app(
            one_model("openai", "gpt-4o-mini", FAKE_URL),
            transports={FAKE_URL: StreamingASGITransport(fake)},
            env={},
        ),
        tracer_provider=provider,
    )
    async with client_for(app) as client:
        response = await client.post(
            "/ai/v1/responses", json={"model": "gpt-4o-mini", "input": "Hi", "stream": stream}
        )
    assert response.status_code == 200
    if stream:
        events = [p for p in sse_payloads(response.text) if isinstance(p, dict)]
        answer = next(e["response"] for e in events if e["type"] == "response.completed")
    else:
        answer = response.json()
    attributes = request_span(exporter).attributes or {}
    assert attributes["aigw.dialect"] == "responses"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.response.id"] == answer["id"]
    assert attributes["gen_ai.response.finish_reasons"] == ("completed",)
    assert attributes["gen_ai.usage.output_tokens"] == answer["usage"]["output_tokens"]


async def test_an_embeddings_request_is_an_embeddings_span(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = TraceMiddleware(
        build_app(
            one_model("openai", "text-embedding-3-small", FAKE_URL),
            transports={FAKE_URL: StreamingASGITransport(fake)},
            env={},
        ),
        tracer_provider=provider,
    )
    async with client_for(app) as client:
        response = await client.post(
            "/ai/v1/embeddings", json={"model": "text-embedding-3-small", "input": "Hi there"}
        )
    assert response.status_code == 200
    span = request_span(exporter)
    attributes = span.attributes or {}
    assert span.name == "embeddings text-embedding-3-small"
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] == response.json()["usage"]["prompt_tokens"]
    assert "aigw.dialect" not in attributes


# -- failures, sampling, no SDK ----------------------------------------------------------------------


async def test_an_app_that_raises_is_an_error_span_with_the_exception(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("the inner app broke")

    app = TraceMiddleware(broken, tracer_provider=provider)
    transport = httpx.ASGITransport(app)  # raises the app's exception here
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with pytest.raises(RuntimeError, match="the inner app broke"):
            await client.post("/v1/chat/completions", json=hello())
    span = request_span(exporter)
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "RuntimeError"
    assert [event.name for event in span.events] == ["exception"]


async def test_a_sampled_out_request_records_nothing_but_still_sends_its_context(
    fake: FakeProvider, exporter: InMemorySpanExporter
) -> None:
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    sampled_out.add_span_processor(SimpleSpanProcessor(exporter))
    app = traced(fake, sampled_out, stack_config())
    async with client_for(app) as client:
        response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    assert exporter.get_finished_spans() == ()
    _, trace_id, _, flags = fake.last_request.headers["traceparent"].split("-")
    assert int(flags, 16) & 0x01 == 0  # not sampled: the upstream's own tracing knows not to keep it either
    assert int(trace_id, 16) != 0


async def test_with_no_sdk_set_up_requests_pass_through(fake: FakeProvider) -> None:
    """The API alone (no tracer provider set): no context for the router, no traceparent upstream."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    seen: list[Any] = []
    gateway = build_app(stack_config(), transports={FAKE_URL: StreamingASGITransport(fake)}, env={})

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append(get_context(scope))
        await gateway(scope, receive, send)

    async with client_for(TraceMiddleware(spy)) as client:
        response = await client.post(CHAT, json=hello(), headers={"x-tenant-id": "acme"})
    assert response.status_code == 200
    assert seen == [None]  # not even a context was made for it
    assert "traceparent" not in fake.last_request.headers


async def test_a_client_that_leaves_mid_stream_cancels_the_attempt_span(
    fake: FakeProvider, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    fake.behaviour = FakeBehaviour(chunk_delay=0.05)
    app = traced(fake, provider, stack_config())
    body = json.dumps(hello("one two three four five six seven eight", stream=True)).encode()
    first_chunk = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    scope = post_scope(CHAT, body)
    scope["headers"].append((b"x-tenant-id", b"acme"))
    await app(scope, receive, send)
    (attempt,) = attempt_spans(exporter)
    assert (attempt.attributes or {})["aigw.outcome"] == "cancelled"
    assert (request_span(exporter).attributes or {})["aigw.client_disconnected"] is True
