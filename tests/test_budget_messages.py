"""BudgetMiddleware on Anthropic Messages requests (``POST /v1/messages``), with a real Redis: the estimate
of a Messages body and its required ``max_tokens``, the reservation (a cache breakpoint reserves the
prompt at the cache-write price), 400s and 429s in Anthropic's shape (read by the official ``anthropic``
SDK), settlement from a JSON answer and from a stream with cache reads and writes priced exactly, an
early-ended stream, and ``count_tokens`` passing free. The middleware sits in front of FakeProvider's
Anthropic endpoint, or of a small app answering in Messages format where cache figures are needed."""

from __future__ import annotations

import math
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, ModelPrice, RedisBudgetStore
from asgi_aigw.kernel.context import Usage, ensure_context
from asgi_aigw.testing import FakeBehaviour, FakeProvider

from . import budget_helpers
from .budget_helpers import budget_stack as stack
from .budget_helpers import chat, fixed_clock, token_counter, usage_of
from .support import served

MODEL = "claude-sonnet-4-5"
#: claude-sonnet-4-5's list prices in US dollars per million tokens (docs.anthropic.com, "Pricing"):
#: input, output, cache read (0.1x input), 5-minute cache write (1.25x input).
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE = 3.00, 15.00, 0.30, 3.75
#: ... and its 1-hour cache write (2x input).
CACHE_WRITE_1H = 6.00


_frozen_now = budget_helpers.frozen_now
store = budget_helpers.store


#: Anthropic refuses a request without its API version, and so does FakeProvider.
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


def ask(content: Any = "hello there world", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": content}], **extra}


async def post(app: Any, body: dict[str, Any], path: str = "/v1/messages") -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://testserver", headers=ANTHROPIC_HEADERS
    ) as client:
        return await client.post(path, json=body)


def nanos(prompt: int, output: int, read: int = 0, write: int = 0, hour: int = 0) -> int:
    """What the middleware charges, in nano-dollars: each kind of token at its price, rounded up
    (``write`` counts every cache write, ``hour`` those written for an hour)."""
    plain = prompt - read - write
    dollars = (
        plain * INPUT
        + read * CACHE_READ
        + (write - hour) * CACHE_WRITE
        + hour * CACHE_WRITE_1H
        + output * OUTPUT
    )
    return math.ceil(dollars * 1000 - 1e-6)


def message(text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def stream_events(pieces: list[str], start_usage: dict[str, int], output_tokens: int | None) -> list[bytes]:
    """An Anthropic stream; ``output_tokens=None`` cuts it after the text (no message_delta, no stop)."""
    start = {**message("", start_usage), "content": [], "stop_reason": None}
    events = [
        event("message_start", {"type": "message_start", "message": start}),
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
    ]
    events.extend(
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
        )
        for piece in pieces
    )
    if output_tokens is not None:
        events.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        events.append(
            event(
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}},
            )
        )
        events.append(event("message_stop", {"type": "message_stop"}))
    return events


class MessagesApp:
    """Answers in Anthropic's format: a fixed JSON message or stream, or ``count_tokens``. It records the
    budget store's usage while the request is in flight (what was reserved) and can fill ``ctx.usage``
    as a router would."""

    def __init__(
        self,
        *,
        body: dict[str, Any] | None = None,
        events: list[bytes] | None = None,
        store: RedisBudgetStore | None = None,
        router_usage: Usage | None = None,
    ) -> None:
        self.body = body
        self.events = events
        self.store = store
        self.router_usage = router_usage
        self.reserved: list[dict[str, int]] = []
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        if self.store is not None:
            self.reserved.append(await usage_of(self.store, "acme"))
        if scope["path"].endswith("/count_tokens"):
            await self._json(send, {"input_tokens": 12})
            return
        if self.router_usage is not None:
            ensure_context(scope)[1].usage = self.router_usage
        if self.events is None:
            await self._json(send, self.body or {})
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for raw in self.events:
            await send({"type": "http.response.body", "body": raw, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _json(send: Any, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


# -- estimate and reservation ----------------------------------------------------------------------------


async def test_a_json_answer_reserves_the_estimate_and_is_charged_its_real_usage(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=10_000, requests_per_minute=5))
    body = ask("What is the capital of France?", system="Answer briefly.")
    response = await post(app, body)
    assert response.status_code == 200
    assert response.json()["type"] == "message"
    usage = response.json()["usage"]
    prompt = token_counter().count_messages(body, MODEL)
    ctx = app.contexts[0]
    assert ctx.token_estimate == prompt + 64
    assert response.headers["x-ratelimit-remaining-tokens"] == str(10_000 - prompt - 64)
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    total = usage["input_tokens"] + usage["output_tokens"]
    used = await usage_of(store, "acme")
    assert used["tokens_per_minute"] == total
    assert used["requests_per_minute"] == 1
    assert ctx.usage == Usage(usage["input_tokens"], usage["output_tokens"], total)
    assert ctx.cost == nanos(usage["input_tokens"], usage["output_tokens"]) / 1e9


async def test_a_cache_breakpoint_reserves_the_prompt_at_the_cache_write_price(
    store: RedisBudgetStore,
) -> None:
    app_plain = MessagesApp(body=message("ok", {"input_tokens": 1, "output_tokens": 1}), store=store)
    text = "A long reference document. " * 40
    plain = ask([{"type": "text", "text": text}])
    marked = ask([{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}])
    counter = token_counter()
    prompt = counter.count_messages(plain, MODEL)
    # a breakpoint is metadata: the prompt is as long with it as without
    assert counter.count_messages(marked, MODEL) == prompt

    app = stack(app_plain, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=100.0))
    assert (await post(app, plain)).status_code == 200
    assert (await post(app, marked)).status_code == 200
    before_plain, before_marked = app_plain.reserved
    # what the store held while each request was in flight, less what earlier requests had settled
    settled = nanos(1, 1)
    assert before_plain["tokens_per_day"] == prompt + 64
    assert before_plain["cost_per_day"] == nanos(prompt, 64)
    assert before_marked["tokens_per_day"] == 2 + prompt + 64
    assert before_marked["cost_per_day"] == settled + nanos(prompt, 64, write=prompt)
    assert nanos(prompt, 64, write=prompt) > nanos(prompt, 64)


async def test_a_one_hour_breakpoint_reserves_the_prompt_at_the_one_hour_write_price(
    store: RedisBudgetStore,
) -> None:
    inner = MessagesApp(body=message("ok", {"input_tokens": 1, "output_tokens": 1}), store=store)
    text = "A long reference document. " * 40
    five = {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "5m"}}
    hour = {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    minutes = ask([five])
    # a 1-hour breakpoint in the system prompt, a 5-minute one after it in the messages
    mixed = {**ask([five]), "system": [{**hour, "text": "Answer from the document."}]}
    prompt = token_counter().count_messages(minutes, MODEL)
    mixed_prompt = token_counter().count_messages(mixed, MODEL)

    app = stack(inner, store, limits=Limits(cost_per_day=100.0))
    assert (await post(app, minutes)).status_code == 200
    assert (await post(app, mixed)).status_code == 200
    before_minutes, before_mixed = (r["cost_per_day"] for r in inner.reserved)
    assert before_minutes == nanos(prompt, 64, write=prompt)
    assert before_mixed - nanos(1, 1) == nanos(mixed_prompt, 64, write=mixed_prompt, hour=mixed_prompt)
    assert nanos(prompt, 64, write=prompt, hour=prompt) > nanos(prompt, 64, write=prompt)


async def test_a_one_hour_breakpoint_is_reserved_at_the_dearer_write_price_configured(
    store: RedisBudgetStore,
) -> None:
    inner = MessagesApp(body=message("ok", {"input_tokens": 1, "output_tokens": 1}), store=store)
    body = ask([{"type": "text", "text": "word " * 100, "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    # an unusual table where the 1-hour write costs less than the 5-minute one: the dearer still wins
    price = ModelPrice(input=1.0, output=1.0, cache_write=5.0, cache_write_1h=2.0)
    app = stack(inner, store, limits=Limits(cost_per_day=100.0), pricing={MODEL: price})
    assert (await post(app, body)).status_code == 200
    prompt = token_counter().count_messages(body, MODEL)
    assert inner.reserved[0]["cost_per_day"] == math.ceil((prompt * 5.0 + 64 * 1.0) * 1000 - 1e-6)


async def test_a_chat_request_with_a_breakpoint_is_reserved_at_the_write_price(
    store: RedisBudgetStore,
) -> None:
    """Chat content parts may carry ``cache_control`` (the router passes it on to Anthropic)."""
    seen: list[dict[str, int]] = []

    async def answer(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await usage_of(store, "acme"))
        body = budget_helpers.completion(
            "ok", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    part = {"type": "text", "text": "word " * 50, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    body = chat([part], model=MODEL, max_tokens=10)
    plain = chat([{"type": "text", "text": "word " * 50}], model=MODEL, max_tokens=10)
    app = stack(answer, store, limits=Limits(cost_per_day=100.0))
    settled = []
    for request in (plain, body):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
        settled.append((await usage_of(store, "acme"))["cost_per_day"])
    prompt = token_counter().count_chat(body, MODEL)
    assert seen[0]["cost_per_day"] == nanos(prompt, 10)
    assert seen[1]["cost_per_day"] - settled[0] == nanos(prompt, 10, write=prompt, hour=prompt)


async def test_every_part_of_a_messages_prompt_is_reserved(store: RedisBudgetStore) -> None:
    inner = MessagesApp(body=message("ok", {"input_tokens": 1, "output_tokens": 1}), store=store)
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000))
    short = ask("hi")
    rich = {
        **ask(
            [
                {"type": "text", "text": "Look at this."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."},
                },
            ]
        ),
        "system": [{"type": "text", "text": "You are terse."}],
        "tools": [
            {
                "name": "get_weather",
                "description": "The weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
    }
    await post(app, short)
    await post(app, rich)
    first, second = (r["tokens_per_day"] for r in inner.reserved)
    counter = token_counter()
    rich_prompt = counter.count_messages(rich, MODEL)
    assert second - 2 == rich_prompt + 64  # the first request settled at its 2 reported tokens
    assert first == counter.count_messages(short, MODEL) + 64
    # an image at chat's worst case (765) and Anthropic's tool-use system prompt (346) are in it
    assert rich_prompt > 765 + 346


# -- refusals in Anthropic's shape -----------------------------------------------------------------------


@pytest.mark.parametrize("cap", [None, 0, -5, "64", True, 1.5])
async def test_a_missing_or_invalid_max_tokens_is_a_400_in_anthropics_shape(
    fake: FakeProvider, store: RedisBudgetStore, cap: Any
) -> None:
    body = ask()
    if cap is None:
        del body["max_tokens"]
    else:
        body["max_tokens"] = cap
    app = stack(fake, store, limits=Limits(tokens_per_minute=10_000))
    response = await post(app, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith("max_tokens: ")
    assert fake.requests == []
    assert (await usage_of(store, "acme"))["requests_per_minute"] == 0


async def test_over_the_limit_is_a_429_rate_limit_error_in_anthropics_shape(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=100, tokens_per_day=10_000))
    response = await post(app, ask(max_tokens=500))
    assert response.status_code == 429
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "rate_limit_error"
    text = payload["error"]["message"]
    assert "tokens per minute (TPM)" in text
    assert "lower max_tokens or shorten the prompt" in text
    assert "max_completion_tokens" not in text
    assert response.headers["x-should-retry"] == "false"
    assert "retry-after" not in response.headers
    assert response.headers["x-ratelimit-limit-tokens"] == "100"
    assert response.headers["x-ratelimit-limit-tokens-day"] == "10000"
    assert fake.requests == []
    assert (await usage_of(store, "acme"))["tokens_per_day"] == 0


async def test_the_anthropic_sdk_reads_the_429_and_the_answer(
    fake: FakeProvider, store: RedisBudgetStore, redis_url: str, redis_prefix: str
) -> None:
    """Over a real uvicorn: the official SDK gets an answer and a stream, then raises RateLimitError with
    the refusal's message (the middleware opens its own Redis client in the server's event loop)."""
    config = BudgetConfig(store=redis_url, key_prefix=redis_prefix, limits=Limits(requests_per_minute=2))
    budget = BudgetMiddleware(fake, config=config, token_counter=token_counter(), clock=fixed_clock)
    async with served(budget) as base_url:
        client = anthropic.AsyncAnthropic(api_key="test-key-not-real", base_url=base_url, max_retries=0)
        answer = await client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.usage.output_tokens > 0
        async with client.messages.stream(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hello again"}]
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert text
        assert final.usage.output_tokens > 1
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(
                model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hello"}]
            )
        await client.close()
    error = caught.value
    assert isinstance(error.body, dict)
    assert error.body["error"]["type"] == "rate_limit_error"
    assert "requests per minute (RPM)" in error.body["error"]["message"]
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake.requests) == 2
    used = await usage_of(store, "default")
    assert used["requests_per_minute"] == 2
    # both answers settled at their reported usage, the stream's from message_start + message_delta
    reported = answer.usage.input_tokens + answer.usage.output_tokens
    assert used["tokens_per_month"] == reported + final.usage.input_tokens + final.usage.output_tokens


async def test_a_full_window_is_a_429_with_retry_after(fake: FakeProvider, store: RedisBudgetStore) -> None:
    app = stack(fake, store, limits=Limits(requests_per_minute=1))
    assert (await post(app, ask())).status_code == 200
    response = await post(app, ask())
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert "Try again in" in response.json()["error"]["message"]
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake.requests) == 1


async def test_chat_keeps_its_own_error_shape_and_cap_names(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_minute=100))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        response = await client.post("/v1/chat/completions", json=chat(max_tokens=500))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "lower max_tokens (or max_completion_tokens)" in error["message"]


# -- settlement ------------------------------------------------------------------------------------------

CACHED_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 1200,
    "cache_read_input_tokens": 3000,
    "output_tokens": 40,
}


async def test_a_json_answer_with_cache_reads_and_writes_is_priced_exactly(store: RedisBudgetStore) -> None:
    inner = MessagesApp(body=message("Paris.", CACHED_USAGE))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=10.0))
    response = await post(app, ask(max_tokens=100))
    assert response.status_code == 200
    ctx = app.contexts[0]
    assert ctx.usage == Usage(4225, 40, 4265, 3000, cache_write_tokens=1200)
    # (25 x 3.00 + 1200 x 3.75 + 3000 x 0.30 + 40 x 15.00) / 1e6 dollars = 6075 nano-dollars
    assert nanos(4225, 40, read=3000, write=1200) == 6_075_000
    used = await usage_of(store, "acme")
    assert used["cost_per_day"] == 6_075_000
    assert used["tokens_per_day"] == 4265
    assert ctx.cost == pytest.approx(0.006075, abs=1e-12)


async def test_a_stream_with_cache_reads_and_writes_is_priced_exactly(store: RedisBudgetStore) -> None:
    start = {**CACHED_USAGE, "output_tokens": 1}
    inner = MessagesApp(events=stream_events(["Par", "is."], start, output_tokens=40))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=10.0))
    response = await post(app, ask(max_tokens=100, stream=True))
    assert response.status_code == 200
    assert "message_stop" in response.text
    ctx = app.contexts[0]
    # message_start's input and cache figures with message_delta's cumulative output
    assert ctx.usage == Usage(4225, 40, 4265, 3000, cache_write_tokens=1200)
    used = await usage_of(store, "acme")
    assert used["cost_per_day"] == 6_075_000
    assert used["tokens_per_day"] == 4265


SPLIT_USAGE = {
    **CACHED_USAGE,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
}


async def test_one_hour_cache_writes_are_priced_at_their_own_rate(store: RedisBudgetStore) -> None:
    inner = MessagesApp(body=message("Paris.", SPLIT_USAGE))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=10.0))
    response = await post(app, ask(max_tokens=100))
    assert response.status_code == 200
    ctx = app.contexts[0]
    assert ctx.usage == Usage(4225, 40, 4265, 3000, cache_write_tokens=1200, cache_write_1h_tokens=1000)
    # (25 x 3.00 + 200 x 3.75 + 1000 x 6.00 + 3000 x 0.30 + 40 x 15.00) / 1e6 dollars
    assert nanos(4225, 40, read=3000, write=1200, hour=1000) == 8_325_000
    assert (await usage_of(store, "acme"))["cost_per_day"] == 8_325_000
    assert ctx.cost == pytest.approx(0.008325, abs=1e-12)


async def test_a_streams_one_hour_cache_writes_are_priced_at_their_own_rate(store: RedisBudgetStore) -> None:
    inner = MessagesApp(events=stream_events(["Par", "is."], {**SPLIT_USAGE, "output_tokens": 1}, 40))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=10.0))
    response = await post(app, ask(max_tokens=100, stream=True))
    assert response.status_code == 200
    assert app.contexts[0].usage == Usage(
        4225, 40, 4265, 3000, cache_write_tokens=1200, cache_write_1h_tokens=1000
    )
    assert (await usage_of(store, "acme"))["cost_per_day"] == 8_325_000


async def test_a_cut_streams_one_hour_cache_writes_are_still_priced_at_their_rate(
    store: RedisBudgetStore,
) -> None:
    inner = MessagesApp(events=stream_events(["Par", "is."], {**SPLIT_USAGE, "output_tokens": 1}, None))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=10.0))
    assert (await post(app, ask(max_tokens=100, stream=True))).status_code == 200
    usage = app.contexts[0].usage
    assert usage is not None
    assert usage.estimated
    assert usage.cache_write_1h_tokens == 1000
    used = await usage_of(store, "acme")
    assert used["cost_per_day"] == nanos(4225, usage.completion_tokens, read=3000, write=1200, hour=1000)


async def test_the_fake_reports_cache_writes_then_reads_and_each_is_priced(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    document = "The reference document says the sky is blue. " * 150
    system = [
        {"type": "text", "text": document, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    app = stack(fake, store, limits=Limits(cost_per_day=10.0))
    body = ask("What colour is the sky?", system=system)
    first = (await post(app, body)).json()["usage"]
    second = (await post(app, {**body, "stream": True})).status_code
    assert second == 200
    written = first["cache_creation_input_tokens"]
    assert written >= 1024
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": written}
    assert first["cache_read_input_tokens"] == 0
    write_ctx, read_ctx = app.contexts
    assert write_ctx.usage is not None
    assert read_ctx.usage is not None
    assert write_ctx.usage.cache_write_1h_tokens == written
    assert (read_ctx.usage.cached_tokens, read_ctx.usage.cache_write_tokens) == (written, 0)
    prompt, output = write_ctx.usage.prompt_tokens, write_ctx.usage.completion_tokens
    assert write_ctx.cost == nanos(prompt, output, write=written, hour=written) / 1e9
    assert read_ctx.cost == nanos(prompt, read_ctx.usage.completion_tokens, read=written) / 1e9


async def test_a_routers_usage_wins_over_the_wire(store: RedisBudgetStore) -> None:
    routed = Usage(500, 10, 510, 100, cache_write_tokens=200)
    inner = MessagesApp(body=message("x", CACHED_USAGE), router_usage=routed)
    app = stack(inner, store, limits=Limits(cost_per_day=10.0))
    assert (await post(app, ask())).status_code == 200
    assert (await usage_of(store, "acme"))["cost_per_day"] == nanos(500, 10, read=100, write=200)


async def test_configured_cache_prices_are_used(store: RedisBudgetStore) -> None:
    inner = MessagesApp(body=message("x", CACHED_USAGE))
    price = ModelPrice(input=1.0, output=2.0, cached_input=0.5, cache_write=4.0)
    app = stack(inner, store, limits=Limits(cost_per_day=10.0), pricing={MODEL: price})
    assert (await post(app, ask())).status_code == 200
    # 25 x 1.0 + 1200 x 4.0 + 3000 x 0.5 + 40 x 2.0 = 6405 dollars per million tokens
    assert (await usage_of(store, "acme"))["cost_per_day"] == 6_405_000


async def test_a_stream_from_the_fake_is_charged_its_reported_usage(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    app = stack(fake, store, limits=Limits(tokens_per_day=1_000_000))
    response = await post(app, ask("Tell me a story", stream=True))
    assert response.status_code == 200
    ctx = app.contexts[0]
    assert ctx.usage is not None
    assert not ctx.usage.estimated
    assert ctx.usage.completion_tokens > 1  # message_delta's figure, not message_start's placeholder
    assert (await usage_of(store, "acme"))["tokens_per_day"] == ctx.usage.total_tokens


async def test_an_early_ended_stream_is_charged_its_input_and_the_text_it_generated(
    store: RedisBudgetStore,
) -> None:
    pieces = ["The quick brown fox ", "jumps over ", "the lazy dog."]
    start = {**CACHED_USAGE, "output_tokens": 1}
    inner = MessagesApp(events=stream_events(pieces, start, output_tokens=None))
    app = stack(inner, store, limits=Limits(tokens_per_day=1_000_000, cost_per_day=10.0))
    response = await post(app, ask(max_tokens=100, stream=True))
    assert response.status_code == 200
    generated = token_counter().count_text("".join(pieces), MODEL)
    ctx = app.contexts[0]
    assert ctx.usage == Usage(
        4225, generated, 4225 + generated, 3000, estimated=True, cache_write_tokens=1200
    )
    used = await usage_of(store, "acme")
    assert used["tokens_per_day"] == 4225 + generated
    assert used["cost_per_day"] == nanos(4225, generated, read=3000, write=1200)


async def test_a_fake_stream_cut_short_is_charged_the_counted_text(
    fake: FakeProvider, store: RedisBudgetStore
) -> None:
    fake.behaviour = FakeBehaviour(cut_after=2, answer="one two three four five six seven eight nine ten")
    app = stack(fake, store, limits=Limits(tokens_per_day=1_000_000))
    response = await post(app, ask(stream=True, max_tokens=200))
    assert "message_stop" not in response.text
    ctx = app.contexts[0]
    assert ctx.usage is not None
    assert ctx.usage.estimated
    texts = [
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ") and "text_delta" in line
    ]
    streamed = "".join(orjson.loads(t)["delta"]["text"] for t in texts)
    assert len(texts) == 2
    counted = token_counter().count_text(streamed, MODEL)
    assert ctx.usage.completion_tokens == max(counted, 1)
    assert (await usage_of(store, "acme"))["tokens_per_day"] == ctx.usage.total_tokens
    assert ctx.usage.total_tokens < ctx.token_estimate


async def test_count_tokens_is_neither_charged_nor_counted_as_a_request(store: RedisBudgetStore) -> None:
    inner = MessagesApp()
    app = stack(inner, store, limits=Limits(requests_per_minute=1, tokens_per_minute=10))
    for _ in range(3):
        response = await post(
            app,
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            "/v1/messages/count_tokens",
        )
        assert response.status_code == 200
        assert response.json() == {"input_tokens": 12}
    assert inner.calls == 3
    used = await usage_of(store, "acme")
    assert used["requests_per_minute"] == 0
    assert used["tokens_per_minute"] == 0
