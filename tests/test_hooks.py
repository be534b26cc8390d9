"""Hooks at the four points of a request, on chat (JSON and stream), Messages and Responses, against
FakeProvider in process: refusals (status, shape, nothing sent upstream), changed requests (the
upstream sees the change), failing hooks (logged, the request unharmed), after/chunk/error views."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from asgi_aigw.budget.config import Limits
from asgi_aigw.client import anthropic_client, openai_client
from asgi_aigw.hooks import (
    HookChunk,
    HookFailure,
    HookRefusal,
    HookRequest,
    HookResponse,
    Hooks,
)
from asgi_aigw.kernel.context import Identity, ensure_context, set_identity
from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .budget_helpers import budget_stack, freeze_now, redis_budget_store, usage_of
from .support import sse_payloads

URL = "http://fake-upstream.test"
KEY = "sk-test-not-a-real-key"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"
ACME = Identity("acme", "ann")


def chat(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": [{"role": "user", "content": text}], **extra}


def messages(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": text}], **extra}


def router_config() -> RouterConfig:
    openai_d = DeploymentConfig(provider="openai", model="gpt-4o-mini", base_url=URL + "/v1", api_key=KEY)  # type: ignore[arg-type]
    anthropic_d = DeploymentConfig(provider="anthropic", model="claude-up", base_url=URL, api_key=KEY)  # type: ignore[arg-type]
    return RouterConfig(
        models=[
            ModelConfig(name="gpt", deployments=[openai_d]),
            ModelConfig(name="claude", deployments=[anthropic_d]),
        ],
        retry=RetryConfig(retries=0, backoff_base=0),
    )


class Recorder:
    """Hooks that record what they are given."""

    def __init__(self) -> None:
        self.requests: list[HookRequest] = []
        self.responses: list[HookResponse] = []
        self.failures: list[HookFailure] = []
        self.chunks: list[HookChunk] = []

    async def before(self, request: HookRequest) -> None:
        self.requests.append(request)

    async def after(self, response: HookResponse) -> None:
        self.responses.append(response)

    async def error(self, failure: HookFailure) -> None:
        self.failures.append(failure)

    async def chunk(self, chunk: HookChunk) -> None:
        self.chunks.append(chunk)

    def hooks(self, *before: Callable[[HookRequest], Any]) -> Hooks:
        return Hooks(
            before_request=[*before, self.before],
            after_response=[self.after],
            on_error=[self.error],
            on_chunk=[self.chunk],
        )


class Gateway:
    """A router with hooks in front of FakeProvider, the caller identified as the app would."""

    def __init__(self, hooks: Hooks, identity: Identity | None = ACME) -> None:
        self.fake = FakeProvider()
        self.router = ProviderRouter(
            router_config(), transports={URL: StreamingASGITransport(self.fake)}, env={}, hooks=hooks
        )
        self.identity = identity

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.identity is not None:
            scope, ctx = ensure_context(scope)
            set_identity(ctx, self.identity, "app")
        await self.router(scope, receive, send)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=StreamingASGITransport(self), base_url="http://gw")

    async def settled(self) -> None:
        """Every hook that runs after the answer has run."""
        await self.router.hooks.drain()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def plain(recorder: Recorder) -> AsyncIterator[Gateway]:
    gateway = Gateway(recorder.hooks())
    yield gateway
    await gateway.router.aclose()


async def refuse_secrets(request: HookRequest) -> None:
    if "project-x" in str(request.body):
        raise HookRefusal("Project X is not discussed here.", status=403)


# -- before_request: refusals -----------------------------------------------------------------------------


async def test_refusal_on_chat_is_an_openai_error_and_nothing_goes_upstream(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(refuse_secrets))
    async with gateway.client() as client:
        response = await client.post(CHAT, json=chat("Tell me about project-x"))
        allowed = await client.post(CHAT, json=chat("Tell me about the weather"))
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": "Project X is not discussed here.",
            "type": "permission_error",
            "code": "refused_by_hook",
            "param": None,
        }
    }
    assert allowed.status_code == 200
    assert len(gateway.fake.requests) == 1  # only the allowed one
    await gateway.settled()
    [failure] = recorder.failures
    assert (failure.status, failure.error.code, failure.stream_started) == (403, "refused_by_hook", False)
    assert failure.attempts == 0
    assert failure.request is not None
    assert failure.request.dialect == "chat"
    assert [r.text.startswith("Echo") for r in recorder.responses] == [True]


async def test_refusal_of_a_chat_stream_with_the_openai_sdk(recorder: Recorder) -> None:
    async def too_many(request: HookRequest) -> None:
        if request.stream:
            raise HookRefusal("Streams are rationed today.", status=429, code="stream_quota")

    gateway = Gateway(recorder.hooks(too_many))
    sdk = openai_client(gateway.router, Identity("acme"), max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 429
    assert caught.value.code == "stream_quota"
    assert "Streams are rationed today." in str(caught.value)
    assert gateway.fake.requests == []


async def test_refusal_on_messages_is_anthropics_error_shape(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(refuse_secrets))
    sdk = anthropic_client(gateway.router, Identity("acme"), max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await sdk.messages.create(
            model="claude", max_tokens=32, messages=[{"role": "user", "content": "project-x plans"}]
        )
    async with gateway.client() as http:
        raw = await http.post(MESSAGES, json=messages("project-x again", stream=True))
    assert caught.value.status_code == 403
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "permission_error", "message": "Project X is not discussed here."},
    }
    assert raw.status_code == 403
    assert raw.json()["error"]["type"] == "permission_error"
    assert gateway.fake.requests == []
    await gateway.settled()
    assert [(f.status, f.request and f.request.dialect) for f in recorder.failures] == [
        (403, "messages"),
        (403, "messages"),
    ]


async def test_refusal_on_responses(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(refuse_secrets))
    async with gateway.client() as client:
        response = await client.post(RESPONSES, json={"model": "gpt", "input": "project-x?"})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Project X is not discussed here."
    assert gateway.fake.requests == []


def test_a_refusal_needs_an_error_status() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        HookRefusal("no", status=200)


# -- before_request: changes ------------------------------------------------------------------------------


async def add_policy(request: HookRequest) -> dict[str, Any]:
    body = dict(request.body)
    if request.dialect == "messages":
        body["system"] = "Company policy applies."
        body["max_tokens"] = 16
    elif request.dialect == "responses":
        body["instructions"] = "Company policy applies."
    else:
        body["messages"] = [{"role": "system", "content": "Company policy applies."}, *body["messages"]]
    return body


async def test_a_changed_chat_body_is_what_the_upstream_gets(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(add_policy))
    async with gateway.client() as client:
        response = await client.post(CHAT, json=chat())
        streamed = await client.post(CHAT, json=chat(stream=True))
    assert response.status_code == 200
    assert streamed.status_code == 200
    for sent in gateway.fake.requests:
        assert sent.json["messages"][0] == {"role": "system", "content": "Company policy applies."}
    # the next hook sees the change too
    assert recorder.requests[0].body["messages"][0]["role"] == "system"


async def test_a_changed_messages_body_reaches_anthropic(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(add_policy))
    async with gateway.client() as client:
        response = await client.post(MESSAGES, json=messages())
        streamed = await client.post(MESSAGES, json=messages(stream=True))
    assert response.status_code == 200, response.text
    assert streamed.status_code == 200
    for sent in gateway.fake.requests:
        assert sent.path == "/v1/messages"
        assert sent.json["system"] == "Company policy applies."
        assert sent.json["max_tokens"] == 16
        assert sent.json["model"] == "claude-up"


async def test_a_changed_responses_body_reaches_the_upstream(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(add_policy))
    async with gateway.client() as client:
        response = await client.post(RESPONSES, json={"model": "gpt", "input": "hi"})
    assert response.status_code == 200, response.text
    # translated to a chat completion for FakeProvider's OpenAI deployment: instructions become the system
    assert gateway.fake.last_request.json["messages"][0]["content"] == "Company policy applies."


async def test_a_hook_that_makes_the_request_invalid_gets_the_clients_400(recorder: Recorder) -> None:
    async def break_it(request: HookRequest) -> dict[str, Any]:
        return {**request.body, "messages": "not a list"}

    gateway = Gateway(recorder.hooks(break_it))
    async with gateway.client() as client:
        response = await client.post(CHAT, json=chat())
    assert response.status_code == 400
    assert gateway.fake.requests == []


async def test_the_view_carries_dialect_model_stream_and_identity(recorder: Recorder, plain: Gateway) -> None:
    async with plain.client() as client:
        await client.post(CHAT, json=chat(stream=True))
        await client.post(MESSAGES, json=messages())
    seen = [(r.dialect, r.model, r.stream, r.tenant_id, r.user_id) for r in recorder.requests]
    assert seen == [("chat", "gpt", True, "acme", "ann"), ("messages", "claude", False, "acme", "ann")]
    assert recorder.requests[0].request_id == recorder.requests[0].context.request_id


# -- failing hooks ----------------------------------------------------------------------------------------


async def test_a_raising_before_hook_is_logged_and_the_request_goes_on(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: HookRequest) -> dict[str, Any]:
        raise RuntimeError("guardrail backend down")

    gateway = Gateway(recorder.hooks(broken))
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.hooks"):
        async with gateway.client() as client:
            response = await client.post(CHAT, json=chat())
            on_messages = await client.post(MESSAGES, json=messages())
    assert response.status_code == 200
    assert on_messages.status_code == 200
    assert len(gateway.fake.requests) == 2
    records = [r for r in caplog.records if r.name == "asgi_aigw.hooks"]
    assert len(records) == 2
    assert "broken" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert "guardrail backend down" in str(records[0].exc_info[1])
    # the hooks after it still ran
    assert len(recorder.requests) == 2


async def test_a_before_hook_returning_garbage_is_logged_and_ignored(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def garbage(request: HookRequest) -> Any:
        return ["not", "a", "body"]

    gateway = Gateway(recorder.hooks(garbage))
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.hooks"):
        async with gateway.client() as client:
            response = await client.post(CHAT, json=chat())
    assert response.status_code == 200
    assert gateway.fake.last_request.json["messages"] == chat()["messages"]
    assert any("returned list" in r.getMessage() for r in caplog.records if r.name == "asgi_aigw.hooks")


async def test_raising_after_chunk_and_error_hooks_never_break_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom(_: Any) -> None:
        raise ValueError("audit sink unreachable")

    gateway = Gateway(Hooks(after_response=[boom], on_chunk=[boom], on_error=[boom]))
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.hooks"):
        async with gateway.client() as client:
            answered = await client.post(CHAT, json=chat())
            streamed = await client.post(CHAT, json=chat(stream=True))
            gateway.fake.enqueue(FakeBehaviour(status=500))
            failed = await client.post(CHAT, json=chat())
        await gateway.settled()
    assert answered.status_code == 200
    assert answered.json()["choices"][0]["message"]["content"] == "Echo: Hello there"
    assert streamed.status_code == 200
    assert sse_payloads(streamed.text)[-1] == "[DONE]"
    assert failed.status_code == 502
    messages_logged = [r.getMessage() for r in caplog.records if r.name == "asgi_aigw.hooks"]
    assert any(m.startswith("after_response hook") for m in messages_logged)
    assert any(m.startswith("on_chunk hook") for m in messages_logged)
    assert any(m.startswith("on_error hook") for m in messages_logged)


# -- after_response ---------------------------------------------------------------------------------------


async def test_after_a_chat_json_answer(recorder: Recorder, plain: Gateway) -> None:
    async with plain.client() as client:
        response = await client.post(CHAT, json=chat())
    await plain.settled()
    [seen] = recorder.responses
    assert seen.answer == response.json()
    assert seen.text == "Echo: Hello there"
    assert seen.usage is not None
    assert seen.usage.completion_tokens == response.json()["usage"]["completion_tokens"]
    assert (seen.stream, seen.status, seen.provider, seen.model) == (False, 200, "openai", "gpt-4o-mini")
    assert seen.request.tenant_id == "acme"
    assert seen.latency_ms > 0


async def test_after_a_chat_stream_and_each_of_its_chunks(recorder: Recorder, plain: Gateway) -> None:
    async with plain.client() as client:
        response = await client.post(CHAT, json=chat(stream=True, stream_options={"include_usage": True}))
    await plain.settled()
    [seen] = recorder.responses
    assert (seen.stream, seen.answer) == (True, None)
    assert seen.text == "Echo: Hello there"
    assert seen.usage is not None
    assert seen.usage.total_tokens > 0
    # every event the client got, in order, parsed
    assert [c.data for c in recorder.chunks] == sse_payloads(response.text)
    assert [c.index for c in recorder.chunks] == list(range(len(recorder.chunks)))
    assert recorder.chunks[-1].raw == b"data: [DONE]\n\n"
    assert all(c.request.dialect == "chat" for c in recorder.chunks)


async def test_after_a_messages_answer_and_stream(recorder: Recorder, plain: Gateway) -> None:
    async with plain.client() as client:
        one_shot = await client.post(MESSAGES, json=messages())
        streamed = await client.post(MESSAGES, json=messages(stream=True))
    await plain.settled()
    first, second = recorder.responses
    assert first.answer == one_shot.json()
    assert first.text == "Echo: Hello there"
    assert (second.stream, second.text, second.provider) == (True, "Echo: Hello there", "anthropic")
    assert second.usage is not None
    assert second.usage.completion_tokens > 0
    names = [c.event for c in recorder.chunks]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert names.count("content_block_delta") >= 1
    assert len(names) == streamed.text.count("event: ")


async def test_after_a_responses_stream(recorder: Recorder, plain: Gateway) -> None:
    async with plain.client() as client:
        response = await client.post(RESPONSES, json={"model": "gpt", "input": "Hello there", "stream": True})
    assert response.status_code == 200
    await plain.settled()
    [seen] = recorder.responses
    assert (seen.request.dialect, seen.stream, seen.text) == ("responses", True, "Echo: Hello there")
    assert recorder.chunks[-1].event == "response.completed"


async def test_a_slow_after_hook_does_not_hold_back_the_answer() -> None:
    release = asyncio.Event()
    done: list[str] = []

    async def slow_audit(response: HookResponse) -> None:
        await release.wait()
        done.append(response.text)

    async def slow_chunk(chunk: HookChunk) -> None:
        await release.wait()

    gateway = Gateway(Hooks(after_response=[slow_audit], on_chunk=[slow_chunk]))
    async with gateway.client() as client:
        # with the hooks in line these would wait for ``release`` for ever
        answered = await asyncio.wait_for(client.post(CHAT, json=chat()), 5)
        streamed = await asyncio.wait_for(client.post(CHAT, json=chat(stream=True)), 5)
    assert answered.status_code == 200
    assert streamed.status_code == 200
    assert done == []
    release.set()
    await gateway.settled()
    assert done == ["Echo: Hello there", "Echo: Hello there"]


# -- on_error ---------------------------------------------------------------------------------------------


async def test_on_error_for_an_upstream_failure_and_a_bad_request(recorder: Recorder, plain: Gateway) -> None:
    plain.fake.enqueue(FakeBehaviour(status=500))
    async with plain.client() as client:
        failed = await client.post(CHAT, json=chat())
        not_json = await client.post(CHAT, content=b"{nope", headers={"content-type": "application/json"})
    await plain.settled()
    assert (failed.status_code, not_json.status_code) == (502, 400)
    upstream, bad = recorder.failures
    assert (upstream.status, upstream.attempts, upstream.stream_started) == (502, 1, False)
    assert upstream.request is not None
    assert upstream.request.model == "gpt"
    # the body was never read: there is no request view, the error says why
    assert (bad.status, bad.request, bad.error.code) == (400, None, "invalid_request")
    assert recorder.responses == []


async def test_on_error_after_a_messages_stream_started(recorder: Recorder, plain: Gateway) -> None:
    plain.fake.enqueue(FakeBehaviour(stream_error_after=1))
    async with plain.client() as client:
        response = await client.post(MESSAGES, json=messages(stream=True))
    await plain.settled()
    assert response.status_code == 200
    assert "event: error" in response.text
    [failure] = recorder.failures
    assert failure.stream_started is True
    assert failure.request is not None
    assert failure.request.dialect == "messages"
    assert recorder.responses == []
    # the events before the error went to on_chunk
    assert recorder.chunks
    assert recorder.chunks[0].event == "message_start"


async def test_on_error_when_a_chat_stream_breaks_and_when_messages_upstream_fails(
    recorder: Recorder, plain: Gateway
) -> None:
    plain.fake.enqueue(FakeBehaviour(cut_after=1))
    plain.fake.enqueue(FakeBehaviour(status=529))
    async with plain.client() as client:
        broken = await client.post(CHAT, json=chat("one two three four", stream=True))
        overloaded = await client.post(MESSAGES, json=messages())
    await plain.settled()
    assert broken.status_code == 200
    assert "error" in sse_payloads(broken.text)[-1]
    stream, upstream = recorder.failures
    assert (stream.stream_started, stream.status, stream.attempts) == (True, 502, 1)
    assert stream.request is not None
    assert stream.request.dialect == "chat"
    assert overloaded.status_code == upstream.status == 529
    assert upstream.request is not None
    assert upstream.request.dialect == "messages"
    assert recorder.responses == []


# -- where hooks sit: behind redaction ----------------------------------------------------------------------


async def test_a_before_hook_behind_redaction_sees_placeholders_never_the_pii(recorder: Recorder) -> None:
    gateway = Gateway(recorder.hooks(), identity=None)
    app = RedactMiddleware(gateway, config=RedactConfig(regex_only=True, entities=["EMAIL_ADDRESS"]))
    transport = StreamingASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post(CHAT, json=chat("Write to maria.gonzalez@example.com today."))
    await gateway.settled()
    assert (
        response.json()["choices"][0]["message"]["content"]
        == "Echo: Write to maria.gonzalez@example.com today."
    )
    [request] = recorder.requests
    assert request.body["messages"][0]["content"] == "Write to <EMAIL_ADDRESS_1> today."
    [seen] = recorder.responses
    assert "maria.gonzalez" not in seen.text
    assert "<EMAIL_ADDRESS_1>" in seen.text


# -- nothing billed -----------------------------------------------------------------------------------------


async def test_a_refused_request_spends_nothing_from_the_budget(redis_url: str, redis_prefix: str) -> None:
    freeze_now()
    gateway = Gateway(Hooks(before_request=[refuse_secrets]), identity=None)
    async with redis_budget_store(redis_url, redis_prefix) as store:
        app = budget_stack(gateway, store, limits=Limits(tokens_per_minute=100_000))
        async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://gw") as client:
            refused = await client.post(CHAT, json=chat("Tell me about project-x"))
            after_refusal = await usage_of(store, "acme")
            allowed = await client.post(CHAT, json=chat("Tell me about the weather"))
        assert refused.status_code == 403
        # no token and no cost counted (the request itself counts against a requests-per-minute limit)
        assert {
            name: n for name, n in after_refusal.items() if name != "requests_per_minute"
        } == dict.fromkeys(
            [
                "tokens_per_minute",
                "tokens_per_hour",
                "tokens_per_day",
                "tokens_per_month",
                "cost_per_day",
                "cost_per_month",
            ],
            0,
        )
        assert allowed.status_code == 200
        assert (await usage_of(store, "acme"))["tokens_per_minute"] > 0
    assert len(gateway.fake.requests) == 1


# -- what layers in front already acted on ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"model": "claude"}, "changed the model"),
        ({"stream": True}, "changed stream"),
        ({"max_tokens": 65}, "raised or removed the output cap"),
        ({"max_tokens": None}, "raised or removed the output cap"),
        ({"n": 3}, "asked for more choices"),
        ({"max_tokens": "lots"}, "invalid output cap"),
    ],
)
async def test_a_hook_cannot_undo_what_the_budget_reserved_for(
    recorder: Recorder, caplog: pytest.LogCaptureFixture, change: dict[str, Any], said: str
) -> None:
    async def overreach(request: HookRequest) -> dict[str, Any]:
        body = {**request.body, **change}
        return {k: v for k, v in body.items() if v is not None}

    gateway = Gateway(recorder.hooks(overreach))
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.hooks"):
        async with gateway.client() as client:
            response = await client.post(CHAT, json=chat(max_tokens=64))
    assert response.status_code == 200, response.text
    sent = gateway.fake.last_request.json
    assert (sent["model"], sent["max_tokens"], sent.get("stream"), sent.get("n")) == (
        "gpt-4o-mini",
        64,
        None,
        None,
    )
    assert any(said in r.getMessage() for r in caplog.records if r.name == "asgi_aigw.hooks")


@pytest.mark.parametrize("returned", [True, False])
async def test_a_hook_changing_the_body_in_place_cannot_undo_it_either(
    recorder: Recorder, caplog: pytest.LogCaptureFixture, returned: bool
) -> None:
    """The documented way to change a body is to change ``request.body`` and return it: the checks
    hold for that too, and a change made in place but not returned changes nothing."""

    async def in_place(request: HookRequest) -> dict[str, Any] | None:
        request.body["max_tokens"] = 100_000
        request.body["n"] = 3
        request.body["model"] = "claude"
        return request.body if returned else None

    gateway = Gateway(recorder.hooks(in_place))
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.hooks"):
        async with gateway.client() as client:
            response = await client.post(CHAT, json=chat(max_tokens=64))
    assert response.status_code == 200, response.text
    sent = gateway.fake.last_request.json
    assert (sent["model"], sent["max_tokens"], sent.get("n")) == ("gpt-4o-mini", 64, None)
    said = [r.getMessage() for r in caplog.records if r.name == "asgi_aigw.hooks"]
    assert any("changed the model" in message for message in said) is returned


async def test_a_hook_returning_a_body_that_is_not_json_is_ignored_not_a_500(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def with_a_set(request: HookRequest) -> dict[str, Any]:
        return {**request.body, "metadata": {"tags": {"a", "b"}}}

    gateway = Gateway(recorder.hooks(with_a_set))
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.hooks"):
        async with gateway.client() as client:
            response = await client.post(CHAT, json=chat(max_tokens=64))
    assert response.status_code == 200, response.text
    assert "metadata" not in gateway.fake.last_request.json
    assert any("not JSON" in r.getMessage() for r in caplog.records if r.name == "asgi_aigw.hooks")


async def test_a_hook_may_lower_the_cap_the_budget_wrote(redis_url: str, redis_prefix: str) -> None:
    async def drop_cap(request: HookRequest) -> dict[str, Any]:
        return {k: v for k, v in request.body.items() if k not in ("max_tokens", "max_completion_tokens")}

    async def lower_cap(request: HookRequest) -> dict[str, Any]:
        return {**request.body, "max_tokens": 5}

    freeze_now()
    for hook, cap in ((drop_cap, None), (lower_cap, 5)):
        gateway = Gateway(Hooks(before_request=[hook]), identity=None)
        async with redis_budget_store(redis_url, redis_prefix) as store:
            app = budget_stack(gateway, store, limits=Limits(tokens_per_minute=100_000))
            async with httpx.AsyncClient(
                transport=StreamingASGITransport(app), base_url="http://gw"
            ) as client:
                response = await client.post(CHAT, json=chat())
        assert response.status_code == 200, response.text
        sent = gateway.fake.last_request.json
        written = sent.get("max_tokens", sent.get("max_completion_tokens"))
        # the budget wrote a cap into the client's capless request; removing it is ignored, lowering it kept
        assert written is not None
        if cap is not None:
            assert written == cap
        await gateway.router.aclose()
