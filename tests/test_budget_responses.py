"""BudgetMiddleware on OpenAI Responses requests (``POST /v1/responses``), with a real Redis: the
estimate of a Responses body and its ``max_output_tokens`` (``default_max_tokens`` written when absent),
400s and 429s in OpenAI's shape (read by the official ``openai`` SDK), settlement from a JSON answer and
from a stream with cached and reasoning tokens priced exactly, an early-ended stream. The middleware sits
in front of FakeProvider's Responses endpoint, of the router translating to Anthropic, or of a small app
answering in Responses format where cache and reasoning figures are needed."""

from __future__ import annotations

import math
from typing import Any

import httpx
import openai
import orjson
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, RedisBudgetStore
from asgi_aigw.kernel.context import Usage
from asgi_aigw.runtime.tokens import count_responses_tokens
from asgi_aigw.testing import FakeProvider

from . import budget_helpers
from .budget_helpers import budget_stack as stack
from .budget_helpers import fixed_clock, token_counter, usage_of
from .support import response_object, responses_sse, router_to, served, sse_payloads

MODEL = "gpt-5"
#: gpt-5's list prices in US dollars per million tokens (the middleware's table): input, output,
#: cached input. Reasoning tokens are output tokens and priced as such.
INPUT, OUTPUT, CACHED = 1.25, 10.00, 0.125
#: A reasoning model's answer that read most of its prompt from OpenAI's cache.
USAGE = {
    "input_tokens": 5000,
    "input_tokens_details": {"cached_tokens": 3000},
    "output_tokens": 400,
    "output_tokens_details": {"reasoning_tokens": 300},
    "total_tokens": 5400,
}


_frozen_now = budget_helpers.frozen_now
store = budget_helpers.store


def ask(text: str = "hello there world", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": text, "max_output_tokens": 64, **extra}


async def post(app: Any, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post("/v1/responses", json=body)


def prompt_of(body: dict[str, Any]) -> int:
    """The prompt tokens the middleware estimates for a Responses body."""
    return count_responses_tokens(body, MODEL)


def nanos(prompt: int, output: int, cached: int = 0) -> int:
    """What the middleware charges, in nano-dollars: each kind of token at its price, rounded up."""
    return math.ceil(((prompt - cached) * INPUT + cached * CACHED + output * OUTPUT) * 1000 - 1e-6)


def response(text: str, usage: dict[str, Any] | None, status: str = "completed") -> dict[str, Any]:
    return response_object(MODEL, text, usage, status)


def stream_events(pieces: list[str], usage: dict[str, Any] | None) -> list[bytes]:
    """A Responses stream; ``usage=None`` cuts it after the text (no final event)."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response("", None, "in_progress")},
        {"type": "response.in_progress", "response": response("", None, "in_progress")},
    ]
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events.extend({"type": "response.output_text.delta", **where, "delta": p} for p in pieces)
    if usage is not None:
        events.append({"type": "response.output_text.done", **where, "text": "".join(pieces)})
        events.append({"type": "response.completed", "response": response("".join(pieces), usage)})
    return responses_sse(events)


class ResponsesApp:
    """Answers in the Responses format: a fixed JSON response or event stream; records the request it
    got and the budget store's usage while the request is in flight (what was reserved)."""

    def __init__(
        self,
        *,
        body: dict[str, Any] | None = None,
        events: list[bytes] | None = None,
        store: RedisBudgetStore | None = None,
    ) -> None:
        self.body, self.events, self.store = body, events, store
        self.reserved: list[dict[str, int]] = []
        self.received: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(orjson.loads(raw))
        if self.store is not None:
            self.reserved.append(await usage_of(self.store, "acme"))
        if self.events is None:
            body = orjson.dumps(self.body or {})
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for raw_event in self.events:
            await send({"type": "http.response.body", "body": raw_event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- estimate and reservation ----------------------------------------------------------------------------


async def test_a_json_answer_reserves_the_estimate_and_is_charged_its_real_usage(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=10_000, requests_per_minute=5))
    body = ask("What is the capital of France?", instructions="Answer briefly.")
    answer = await post(app, body)
    assert answer.status_code == 200
    assert answer.json()["object"] == "response"
    prompt = prompt_of(body)
    ctx = app.contexts[0]
    assert ctx.token_estimate == prompt + 64
    assert answer.headers["x-ratelimit-remaining-tokens"] == str(10_000 - prompt - 64)
    usage = answer.json()["usage"]
    used = await usage_of(store, "acme")
    assert used["tokens_per_minute"] == usage["total_tokens"]
    assert used["requests_per_minute"] == 1
    assert ctx.usage == Usage(usage["input_tokens"], usage["output_tokens"], usage["total_tokens"])


async def test_every_part_of_a_responses_prompt_is_reserved(store: RedisBudgetStore) -> None:
    inner = ResponsesApp(body=response("ok", {"input_tokens": 1, "output_tokens": 1}), store=store)
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000))
    short = ask("hi")
    rich = ask(
        instructions="You are terse.",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look at this."},
                    {"type": "input_image", "image_url": "https://example.com/cat.png"},
                ],
            },
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q": "cats"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "Three cats live here."},
        ],
        tools=[
            {
                "type": "function",
                "name": "lookup",
                "description": "Look something up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
    )
    await post(app, short)
    await post(app, rich)
    first, second = (r["tokens_per_day"] for r in inner.reserved)
    counter = token_counter()
    rich_prompt = prompt_of(rich)
    assert first == prompt_of(short) + 64
    assert second - 2 == rich_prompt + 64  # the first request settled at its 2 reported tokens
    # the image at its worst case (765 tokens) and the tool output's text are in it
    assert rich_prompt > 765 + counter.count_text("Three cats live here.", MODEL)


async def test_without_max_output_tokens_the_default_cap_is_reserved_and_sent(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=10_000), default_max_tokens=300)
    body = {"model": MODEL, "input": "hello there world"}
    answer = await post(app, body)
    assert answer.status_code == 200, answer.text
    # the reservation is a cap: the upstream is asked for no more than was reserved
    assert fake.last_request.json["max_output_tokens"] == 300
    assert app.contexts[0].token_estimate == prompt_of(body) + 300


async def test_the_default_cap_reaches_a_translated_deployment(store: RedisBudgetStore) -> None:
    fake = FakeProvider()
    router = router_to(fake, MODEL, "anthropic", "claude-up")
    app = stack(router, store, limits=Limits(tokens_per_minute=10_000), default_max_tokens=300)
    answer = await post(app, {"model": MODEL, "input": "hello there world", "stream": True})
    assert answer.status_code == 200
    assert fake.last_request.json["max_tokens"] == 300
    final = sse_payloads(answer.text)[-1]
    assert final["type"] == "response.completed"
    # the router's usage settles the reservation
    used = await usage_of(store, "acme")
    assert used["tokens_per_minute"] == final["response"]["usage"]["total_tokens"]


# -- refusals in OpenAI's shape --------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [0, -5, "64", True, 1.5])
async def test_an_invalid_max_output_tokens_is_a_400_naming_it(
    fake: FakeProvider, store: RedisBudgetStore, cap: Any
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=10_000))
    answer = await post(app, ask(max_output_tokens=cap))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "max_output_tokens")
    assert "'max_output_tokens' must be a positive integer" in error["message"]
    assert fake.requests == []
    assert (await usage_of(store, "acme"))["requests_per_minute"] == 0


async def test_over_the_limit_is_a_429_naming_max_output_tokens(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=100))
    answer = await post(app, ask(max_output_tokens=500))
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "lower max_output_tokens or shorten the prompt" in error["message"]
    assert "max_completion_tokens" not in error["message"]
    assert answer.headers["x-should-retry"] == "false"
    assert fake.requests == []


async def test_the_openai_sdk_reads_the_answers_and_the_429(
    fake: FakeProvider, store: RedisBudgetStore, redis_url: str, redis_prefix: str
) -> None:
    """Over a real uvicorn: the official SDK gets an answer and a stream, then raises RateLimitError with
    the refusal's message; both answers settle at their reported usage."""
    config = BudgetConfig(store=redis_url, key_prefix=redis_prefix, limits=Limits(requests_per_minute=2))
    budget = BudgetMiddleware(fake, config=config, token_counter=token_counter(), clock=fixed_clock)
    async with served(budget) as base_url:
        client = openai.AsyncOpenAI(api_key="test-key-not-real", base_url=f"{base_url}/v1", max_retries=0)
        first = await client.responses.create(model=MODEL, input="hello", max_output_tokens=50)
        async with client.responses.stream(model=MODEL, input="hello again", max_output_tokens=50) as stream:
            text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
            final = await stream.get_final_response()
        assert text == final.output_text
        with pytest.raises(openai.RateLimitError) as caught:
            await client.responses.create(model=MODEL, input="hello", max_output_tokens=50)
        await client.close()
    assert isinstance(caught.value.body, dict)
    assert "requests per minute (RPM)" in caught.value.body["message"]
    assert len(fake.requests) == 2
    used = await usage_of(store, "default")
    assert used["requests_per_minute"] == 2
    assert first.usage is not None
    assert final.usage is not None
    assert used["tokens_per_month"] == first.usage.total_tokens + final.usage.total_tokens


# -- settlement ------------------------------------------------------------------------------------------


async def test_a_json_answer_with_cached_and_reasoning_tokens_is_priced_exactly(
    store: RedisBudgetStore,
) -> None:
    app = stack(ResponsesApp(body=response("Paris.", USAGE)), store, limits=Limits(cost_per_day=10.0))
    assert (await post(app, ask(max_output_tokens=1000))).status_code == 200
    ctx = app.contexts[0]
    assert ctx.usage == Usage(5000, 400, 5400, 3000, reasoning_tokens=300)
    # (2000 x 1.25 + 3000 x 0.125 + 400 x 10.00) / 1e6 dollars: the 300 reasoning tokens at the output price
    assert nanos(5000, 400, cached=3000) == 6_875_000
    used = await usage_of(store, "acme")
    assert used["cost_per_day"] == 6_875_000
    assert used["tokens_per_month"] == 5400
    assert ctx.cost == pytest.approx(0.006875, abs=1e-12)


async def test_a_stream_with_cached_and_reasoning_tokens_is_priced_exactly(store: RedisBudgetStore) -> None:
    inner = ResponsesApp(events=stream_events(["Par", "is."], USAGE))
    app = stack(inner, store, limits=Limits(cost_per_day=10.0))
    answer = await post(app, ask(max_output_tokens=1000, stream=True))
    assert answer.status_code == 200
    assert "response.completed" in answer.text
    assert app.contexts[0].usage == Usage(5000, 400, 5400, 3000, reasoning_tokens=300)
    used = await usage_of(store, "acme")
    assert used["cost_per_day"] == 6_875_000
    assert used["tokens_per_month"] == 5400


async def test_an_early_ended_stream_is_charged_the_estimate_and_the_text_it_generated(
    store: RedisBudgetStore,
) -> None:
    pieces = ["The quick brown fox ", "jumps over ", "the lazy dog."]
    inner = ResponsesApp(events=stream_events(pieces, None))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000))
    body = ask(max_output_tokens=1000, stream=True)
    assert (await post(app, body)).status_code == 200
    counter = token_counter()
    prompt = prompt_of(body)
    generated = counter.count_text("".join(pieces), MODEL)
    ctx = app.contexts[0]
    assert ctx.usage == Usage(prompt, generated, prompt + generated, estimated=True)
    assert (await usage_of(store, "acme"))["tokens_per_day"] == prompt + generated


async def test_a_whole_stream_without_usage_is_charged_its_prompt_and_a_cut_empty_one_nothing(
    store: RedisBudgetStore,
) -> None:
    """An answer that reached response.completed was served, even empty and without usage (a server
    that reports none): its prompt is charged. One cut before any text was not: only the request counts."""
    whole = stream_events([], {"input_tokens": 0})
    whole[-1] = whole[-1].replace(b'"usage":{"input_tokens":0}', b'"usage":null')
    app = stack(ResponsesApp(events=whole), store, limits=Limits(tokens_per_day=1_000_000))
    body = ask(stream=True)
    assert (await post(app, body)).status_code == 200
    assert (await usage_of(store, "acme"))["tokens_per_day"] == prompt_of(body)
    cut = stack(ResponsesApp(events=stream_events([], None)), store, limits=Limits(tokens_per_day=1_000_000))
    assert (await post(cut, body)).status_code == 200
    used = await usage_of(store, "acme")
    assert used["tokens_per_day"] == prompt_of(body)
    assert used["requests_per_minute"] == 2
