"""The request log on OpenAI Responses requests, in chDB through clickhouse-connect: one row per
``/v1/responses`` request with dialect ``responses``, usage read off the answer (JSON, and the final
event of a stream, cached tokens in their column) when no router recorded it, the router's usage and
provider for a translated request, the budget's exact cost and its estimate for a stream cut short,
and the Prometheus route label."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

pytest.importorskip("chdb")

from prometheus_client.parser import text_string_to_metric_families

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, RedisBudgetStore
from asgi_aigw.kernel.body import read_json
from asgi_aigw.logs import ClickHouseSink, LogConfig, RequestLogMiddleware
from asgi_aigw.logs.metrics import GatewayMetrics
from asgi_aigw.testing import FakeProvider

from . import logs_helpers
from .budget_helpers import fixed_clock, token_counter
from .logs_helpers import logged
from .support import response_object, responses_sse, router_to

MODEL = "gpt-5"
RESPONSES = "/v1/responses"
#: A reasoning model's usage with most of the prompt read from OpenAI's cache.
USAGE = {
    "input_tokens": 5000,
    "input_tokens_details": {"cached_tokens": 3000},
    "output_tokens": 400,
    "output_tokens_details": {"reasoning_tokens": 300},
    "total_tokens": 5400,
}
SELECT = (
    "SELECT route, dialect, status, prompt_tokens, completion_tokens, total_tokens, cached_tokens, "
    "usage_estimated, error_code FROM {table} ORDER BY timestamp, request_id"
)


table = logs_helpers.table_named("responses")
reader = logs_helpers.reader


budget_store = logs_helpers.budget_store


def ask(text: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": text, "max_output_tokens": 64, **extra}


def response(text: str, usage: dict[str, Any] | None, status: str = "completed") -> dict[str, Any]:
    return response_object(MODEL, text, usage, status)


def events(*, complete: bool) -> list[bytes]:
    kinds: list[dict[str, Any]] = [
        {"type": "response.created", "response": response("", None, "in_progress")},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "delta": "Paris."},
    ]
    if complete:
        kinds.append({"type": "response.completed", "response": response("Paris.", USAGE)})
    return responses_sse(kinds)


class ResponsesApp:
    """Answers ``/v1/responses`` with :data:`USAGE`, JSON or streamed (cut before the final event with
    ``complete=False``)."""

    def __init__(self, *, complete: bool = True) -> None:
        self.complete = complete

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope, receive, body = await read_json(scope, receive)
        if body.data.get("stream"):
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for raw in events(complete=self.complete):
                await send({"type": "http.response.body", "body": raw, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        data = orjson.dumps(response("Paris.", USAGE))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})


async def post_all(app: Any, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        return [await client.post(path, json=body) for path, body in requests]


async def test_responses_requests_are_logged_with_their_dialect_and_the_answers_usage(
    fake: FakeProvider, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    """In front of FakeProvider's Responses endpoint (no router): usage from the JSON answer and from
    the stream's response.completed; chat keeps its own dialect."""
    app = logged(fake, chdb_url, table, tmp_path)
    json_answer, stream, _ = await post_all(
        app,
        [
            (RESPONSES, ask()),
            (RESPONSES, ask("Tell me more", stream=True)),
            ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}),
        ],
    )
    await app.aclose()
    reported = json_answer.json()["usage"]
    final = [orjson.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: ")][-1]
    streamed = final["response"]["usage"]
    rows = reader.query(SELECT)
    assert rows[:2] == [
        (
            "responses",
            "responses",
            200,
            reported["input_tokens"],
            reported["output_tokens"],
            reported["total_tokens"],
            0,
            False,
            "",
        ),
        (
            "responses",
            "responses",
            200,
            streamed["input_tokens"],
            streamed["output_tokens"],
            streamed["total_tokens"],
            0,
            False,
            "",
        ),
    ]
    assert rows[2][:2] == ("chat", "chat")
    assert streamed["output_tokens"] > 0


async def test_cached_tokens_have_their_column_from_json_and_stream(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    app = logged(ResponsesApp(), chdb_url, table, tmp_path)
    await post_all(app, [(RESPONSES, ask()), (RESPONSES, ask(stream=True))])
    await app.aclose()
    whole = ("responses", "responses", 200, 5000, 400, 5400, 3000, False, "")
    assert reader.query(SELECT) == [whole, whole]


async def test_a_translated_request_logs_the_routers_provider_and_usage(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    fake = FakeProvider()
    router = router_to(fake, "claude", "anthropic", "claude-up")
    app = logged(router, chdb_url, table, tmp_path)
    [answer] = await post_all(app, [(RESPONSES, {**ask(), "model": "claude"})])
    await app.aclose()
    usage = answer.json()["usage"]
    rows = reader.query(
        "SELECT dialect, model, provider, upstream_model, prompt_tokens, completion_tokens FROM {table}"
    )
    assert rows == [
        ("responses", "claude", "anthropic", "claude-up", usage["input_tokens"], usage["output_tokens"])
    ]


async def test_a_budgeted_request_logs_its_exact_cost_and_a_cut_stream_its_estimate(
    budget_store: RedisBudgetStore, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    def budgeted(inner: Any) -> BudgetMiddleware:
        return BudgetMiddleware(
            inner,
            config=BudgetConfig(limits=Limits(tokens_per_minute=100_000, requests_per_minute=2)),
            store=budget_store,
            token_counter=token_counter(),
            clock=fixed_clock,
        )

    whole = logged(budgeted(ResponsesApp()), chdb_url, table, tmp_path)
    await post_all(whole, [(RESPONSES, ask())])
    await whole.aclose()
    cut = logged(budgeted(ResponsesApp(complete=False)), chdb_url, table, tmp_path)
    _, refused = await post_all(cut, [(RESPONSES, ask(stream=True)), (RESPONSES, ask())])
    await cut.aclose()
    assert refused.status_code == 429
    rows = reader.query(
        "SELECT status, dialect, cost, cached_tokens, usage_estimated, completion_tokens, error_code "
        "FROM {table} ORDER BY timestamp, request_id"
    )
    # (2000 x 1.25 + 3000 x 0.125 + 400 x 10.00) / 1e6 US dollars on gpt-5: reasoning at the output price
    expected = math.ceil((2000 * 1.25 + 3000 * 0.125 + 400 * 10.00) * 1000) / 1e9
    assert rows[0][:2] == (200, "responses")
    assert rows[0][2] == pytest.approx(expected, abs=1e-12)
    assert rows[0][3:] == (3000, False, 400, "")
    # no final event: the budget's estimate (the prompt and the text generated) is what is logged
    generated = token_counter().count_text("Paris.", MODEL)
    assert rows[1][:2] == (200, "responses")
    assert rows[1][4:] == (True, generated, "")
    assert rows[2][:2] == (429, "responses")
    assert rows[2][6] == "rate_limit_exceeded"


async def test_prometheus_labels_the_responses_route() -> None:
    metrics = GatewayMetrics(models=[MODEL])
    app = RequestLogMiddleware(ResponsesApp(), config=LogConfig(store=None), metrics=metrics)
    await post_all(app, [(RESPONSES, ask())])
    seen = {
        (sample.labels["route"], sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        for sample in family.samples
        if sample.name == "aigw_requests_total"
    }
    assert seen == {("responses", MODEL): 1.0}
