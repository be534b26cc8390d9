"""The request log on Anthropic Messages requests, in chDB through clickhouse-connect: one row per
``/v1/messages`` and ``/v1/messages/count_tokens`` request with its ``dialect``, usage read off the
answer (JSON and stream, cache reads and writes in their columns) when no router recorded it, the
budget's exact cost (1-hour cache writes at their rate), the API key's id, columns added to older
tables, bodies stored only once redacted, the Prometheus route label, and ``aigw usage --by-dialect``."""

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
from asgi_aigw.cli import main
from asgi_aigw.kernel.body import read_json
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.logs import ClickHouseSink, LogConfig, RequestLogMiddleware
from asgi_aigw.logs.clickhouse import create_table_sql
from asgi_aigw.logs.metrics import GatewayMetrics
from asgi_aigw.tenant import TenantConfig, TenantMiddleware
from asgi_aigw.tenant.config import APIKeyEntry
from asgi_aigw.tenant.keys import hash_key, key_id, new_key
from asgi_aigw.testing import FakeProvider

from . import logs_helpers
from .budget_helpers import fixed_clock, token_counter
from .logs_helpers import logged

MODEL = "claude-sonnet-4-5"
MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
CACHED_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 1200,
    "cache_read_input_tokens": 3000,
    "output_tokens": 40,
}
#: The columns each test reads back, in this order.
SELECT = (
    "SELECT route, dialect, status, prompt_tokens, completion_tokens, total_tokens, cached_tokens, "
    "cache_write_tokens, usage_estimated, error_code FROM {table} ORDER BY timestamp, request_id"
)


table = logs_helpers.table_named("messages")
reader = logs_helpers.reader


budget_store = logs_helpers.budget_store


def ask(content: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": content}], **extra}


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def cached_stream(*, complete: bool) -> list[bytes]:
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**CACHED_USAGE, "output_tokens": 1},
    }
    delta = {"type": "text_delta", "text": "Paris."}
    events = [
        event("message_start", {"type": "message_start", "message": start}),
        event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
    ]
    if complete:
        events.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 40},
                },
            )
        )
        events.append(event("message_stop", {"type": "message_stop"}))
    return events


class MessagesApp:
    """Answers ``/v1/messages`` in Anthropic's format, with cache figures, JSON or streamed (cut short with
    ``complete=False``), ``count_tokens`` with a count, and anything else with ``{}``; it can mark the
    body redacted as RedactMiddleware does once it has scanned it."""

    def __init__(self, *, complete: bool = True, redacted: bool = False) -> None:
        self.complete = complete
        self.redacted = redacted

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope, receive, body = await read_json(scope, receive)
        _, ctx = ensure_context(scope)
        ctx.body_redacted = self.redacted
        if scope["path"].endswith("/count_tokens"):
            await self._json(send, {"input_tokens": 14})
        elif not scope["path"].endswith("/messages"):
            await self._json(send, {})
        elif body.data.get("stream"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            for raw in cached_stream(complete=self.complete):
                await send({"type": "http.response.body", "body": raw, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            answer = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [{"type": "text", "text": "Paris."}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": CACHED_USAGE,
            }
            await self._json(send, answer)

    @staticmethod
    async def _json(send: Any, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def post_all(app: Any, requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    # Anthropic refuses a request without its API version, and so does FakeProvider
    headers = {"anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://t", headers=headers
    ) as client:
        return [await client.post(path, json=body) for path, body in requests]


async def test_messages_requests_are_logged_with_their_dialect_and_the_answers_usage(
    fake: FakeProvider, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    """In front of FakeProvider's Anthropic endpoint (no router): usage from the JSON answer and from
    the stream's message_start + message_delta; chat keeps its own dialect."""
    app = logged(fake, chdb_url, table, tmp_path)
    json_answer, stream, chat, chat_stream = await post_all(
        app,
        [
            (MESSAGES, ask()),
            (MESSAGES, ask("Tell me more", stream=True)),
            (
                "/v1/chat/completions",
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]},
            ),
            (
                "/v1/chat/completions",
                {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Hello again"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ),
        ],
    )
    await app.aclose()
    reported = json_answer.json()["usage"]
    streamed = [orjson.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: ")]
    stream_input = streamed[0]["message"]["usage"]["input_tokens"]
    stream_output = streamed[-2]["usage"]["output_tokens"]
    chat_usage = chat.json()["usage"]
    [chunk_usage] = [
        orjson.loads(line[6:])["usage"]
        for line in chat_stream.text.splitlines()
        if line.startswith("data: {") and '"prompt_tokens"' in line
    ]
    rows = reader.query(SELECT)
    assert rows == [
        (
            "messages",
            "messages",
            200,
            reported["input_tokens"],
            reported["output_tokens"],
            reported["input_tokens"] + reported["output_tokens"],
            0,
            0,
            False,
            "",
        ),
        (
            "messages",
            "messages",
            200,
            stream_input,
            stream_output,
            stream_input + stream_output,
            0,
            0,
            False,
            "",
        ),
        (
            "chat",
            "chat",
            200,
            chat_usage["prompt_tokens"],
            chat_usage["completion_tokens"],
            chat_usage["total_tokens"],
            0,
            0,
            False,
            "",
        ),
        (
            "chat",
            "chat",
            200,
            chunk_usage["prompt_tokens"],
            chunk_usage["completion_tokens"],
            chunk_usage["total_tokens"],
            0,
            0,
            False,
            "",
        ),
    ]
    assert stream_output > 1  # message_delta's cumulative figure, not message_start's


async def test_cache_reads_and_writes_have_their_columns_and_a_cut_stream_is_marked_estimated(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    complete = logged(MessagesApp(), chdb_url, table, tmp_path)
    await post_all(complete, [(MESSAGES, ask()), (MESSAGES, ask(stream=True))])
    await complete.aclose()
    cut = logged(MessagesApp(complete=False), chdb_url, table, tmp_path)
    await post_all(cut, [(MESSAGES, ask(stream=True)), (COUNT, {"model": MODEL, "messages": []})])
    await cut.aclose()
    whole = ("messages", "messages", 200, 4225, 40, 4265, 3000, 1200, False, "")
    assert reader.query(SELECT) == [
        whole,
        whole,
        # message_start's figures only: the input is real, the output is not known
        ("messages", "messages", 200, 4225, 1, 4226, 3000, 1200, True, ""),
        ("count_tokens", "messages", 200, 0, 0, 0, 0, 0, False, ""),
    ]


async def test_a_budgeted_messages_request_logs_its_exact_cost(
    budget_store: RedisBudgetStore, chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    budget = BudgetMiddleware(
        MessagesApp(),
        config=BudgetConfig(limits=Limits(tokens_per_minute=100_000, requests_per_minute=1)),
        store=budget_store,
        token_counter=token_counter(),
        clock=fixed_clock,
    )
    app = logged(budget, chdb_url, table, tmp_path)
    _, refused = await post_all(app, [(MESSAGES, ask()), (MESSAGES, ask())])
    await app.aclose()
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    rows = reader.query(
        "SELECT status, dialect, cost, cache_write_tokens, cached_tokens, error_code FROM {table} "
        "ORDER BY timestamp, request_id"
    )
    # (25 x 3.00 + 1200 x 3.75 + 3000 x 0.30 + 40 x 15.00) / 1e6 US dollars on claude-sonnet-4-5
    expected = math.ceil((25 * 3.00 + 1200 * 3.75 + 3000 * 0.30 + 40 * 15.00) * 1000) / 1e9
    assert rows[0][:2] == (200, "messages")
    assert rows[0][2] == pytest.approx(expected, abs=1e-12)
    assert rows[0][3:] == (1200, 3000, "")
    assert rows[1] == (429, "messages", None, 0, 0, "rate_limit_exceeded")


async def test_an_anthropic_shaped_error_gives_the_rows_error_code(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    async def overloaded(scope: Any, receive: Any, send: Any) -> None:
        body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
        await send(
            {
                "type": "http.response.start",
                "status": 529,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    app = logged(overloaded, chdb_url, table, tmp_path)
    await post_all(app, [(MESSAGES, ask())])
    await app.aclose()
    assert reader.query("SELECT status, dialect, error_code, total_tokens FROM {table}") == [
        (529, "messages", "overloaded_error", 0)
    ]


async def test_older_tables_get_the_dialect_and_cache_write_columns(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    old_schema = (
        create_table_sql("default", table)
        .replace("`dialect` LowCardinality(String),", "")
        .replace("`cache_write_tokens` UInt32,", "")
    )
    assert "dialect" not in old_schema
    assert "cache_write_tokens" not in old_schema
    client = reader.client(ensure_schema=False)
    client.command(old_schema)
    client.command(f"INSERT INTO {reader.qualified_table} (request_id, route) VALUES ('before', 'chat')")

    app = logged(MessagesApp(), chdb_url, table, tmp_path)
    await post_all(app, [(MESSAGES, ask())])
    await app.aclose()
    columns = {
        row[0]
        for row in reader.query(
            "SELECT name FROM system.columns WHERE database = 'default' AND table = {t:String}", {"t": table}
        )
    }
    assert {"dialect", "cache_write_tokens"} <= columns
    assert reader.query(
        "SELECT request_id = 'before', dialect, cache_write_tokens FROM {table} ORDER BY 1"
    ) == [
        (False, "messages", 1200),
        (True, "", 0),
    ]


async def test_bodies_are_stored_only_once_redacted(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path
) -> None:
    plain = logged(MessagesApp(), chdb_url, table, tmp_path, log_bodies=True)
    await post_all(plain, [(MESSAGES, ask("my secret question"))])
    await plain.aclose()
    scanned = logged(MessagesApp(redacted=True), chdb_url, table, tmp_path, log_bodies=True)
    await post_all(scanned, [(MESSAGES, ask("a scanned question"))])
    await scanned.aclose()
    bodies = [
        row[0] for row in reader.query("SELECT request_body FROM {table} ORDER BY timestamp, request_id")
    ]
    assert bodies[0] == ""
    assert orjson.loads(bodies[1]) == ask("a scanned question")


async def test_jsonl_rows_carry_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    app = RequestLogMiddleware(
        MessagesApp(), config=LogConfig(store=f"jsonl://{path}", spool_dir=None, flush_interval=3600)
    )
    await post_all(app, [(MESSAGES, ask())])
    await app.aclose()
    [row] = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert (row["dialect"], row["cache_write_tokens"], row["cached_tokens"], row["prompt_tokens"]) == (
        "messages",
        1200,
        3000,
        4225,
    )


async def test_prometheus_labels_the_messages_routes(tmp_path: Path) -> None:
    metrics = GatewayMetrics(models=[MODEL])
    app = RequestLogMiddleware(MessagesApp(), config=LogConfig(store=None), metrics=metrics)
    await post_all(app, [(MESSAGES, ask()), (COUNT, {"model": MODEL, "messages": []})])
    seen = {
        (sample.labels["route"], sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(metrics.render()[0].decode())
        for sample in family.samples
        if sample.name == "aigw_requests_total"
    }
    assert seen == {("messages", MODEL): 1.0, ("count_tokens", MODEL): 1.0}


async def test_aigw_usage_groups_by_dialect(
    chdb_url: str, table: str, reader: ClickHouseSink, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def answer(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"].endswith("/messages"):
            await MessagesApp()(scope, receive, send)
            return
        await read_json(scope, receive)  # the model is logged from the body a layer parsed
        body = orjson.dumps({"usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    app = logged(answer, chdb_url, table, tmp_path)
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    await post_all(app, [(MESSAGES, ask()), (MESSAGES, ask()), ("/v1/chat/completions", chat)])
    await app.aclose()
    assert main(["usage", "--url", chdb_url, "--table", table, "--by-dialect"]) == 0
    out = capsys.readouterr().out
    assert "DIALECT" in out
    lines = [line.split()[:7] for line in out.splitlines() if line.split()[:1] in (["-"], ["all"])]
    # tenant dialect model requests prompt completion total
    assert ["-", "chat", MODEL, "1", "7", "3", "10"] in lines
    assert ["-", "messages", MODEL, "2", "8,450", "80", "8,530"] in lines
    assert ["all", "all", "all", "3", "8,457", "83", "8,540"] in lines


async def test_older_tables_get_the_key_and_one_hour_write_columns(
    fake: FakeProvider,
    budget_store: RedisBudgetStore,
    chdb_url: str,
    table: str,
    reader: ClickHouseSink,
    tmp_path: Path,
) -> None:
    """Through TenantMiddleware (a gateway API key) and BudgetMiddleware to FakeProvider: the row names the
    key's id and the 1-hour cache writes, and its cost prices them at the 1-hour rate."""
    old_schema = (
        create_table_sql("default", table)
        .replace("`key_id` LowCardinality(String),", "")
        .replace("`cache_write_1h_tokens` UInt32,", "")
    )
    assert "key_id" not in old_schema
    assert "cache_write_1h_tokens" not in old_schema
    client = reader.client(ensure_schema=False)
    client.command(old_schema)
    client.command(f"INSERT INTO {reader.qualified_table} (request_id, route) VALUES ('before', 'chat')")

    _, key = new_key()
    budget = BudgetMiddleware(
        fake,
        config=BudgetConfig(limits=Limits(cost_per_day=10.0)),
        store=budget_store,
        token_counter=token_counter(),
        clock=fixed_clock,
    )
    tenant = TenantMiddleware(
        budget, config=TenantConfig(api_keys=[APIKeyEntry(id=key_id(key), hash=hash_key(key), tenant="acme")])
    )
    app = logged(tenant, chdb_url, table, tmp_path)
    document = "Pumps are inspected on Mondays. " * 200
    system = [{"type": "text", "text": document, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://t",
        headers={"anthropic-version": "2023-06-01", "x-api-key": key},
    ) as http:
        answers = [(await http.post(MESSAGES, json=ask(system=system))).json() for _ in range(2)]
    await app.aclose()

    written = answers[0]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"]
    assert written >= 1024
    rows = reader.query(
        "SELECT request_id = 'before', key_id, cache_write_1h_tokens, cached_tokens, cost FROM {table} "
        "ORDER BY request_id = 'before', timestamp, request_id"
    )
    assert [row[:4] for row in rows] == [
        (False, key_id(key), written, 0),
        (False, key_id(key), 0, written),
        (True, "", 0, 0),
    ]
    first = answers[0]["usage"]
    # claude-sonnet-4-5: input 3.00, 1-hour write 6.00, output 15.00 per million tokens
    dollars = first["input_tokens"] * 3.00 + written * 6.00 + first["output_tokens"] * 15.00
    assert rows[0][4] == pytest.approx(math.ceil(dollars * 1000 - 1e-6) / 1e9, abs=1e-12)
