"""Fault injection against the full gateway on a real uvicorn (tenant from a header, budgets and the exact
cache in a Redis of the test's own, regex-only redaction, the request log), FakeProvider upstream on
real ports. Each test breaks one part, counts every answer, and checks that no answer is a 500, every
request has exactly one log row, nothing partial or failed is cached, and budgets add up afterwards.

``AIGW_FAULTS_SINK_DOWN_SECONDS`` sets how long the log sink stays down (default 2; 60 for the long run).
``AIGW_FAULTS_REPORT=file.jsonl`` appends each test's figures to that file.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits
from asgi_aigw.budget.memory import MemoryBudgetStore
from asgi_aigw.budget.store import StoreError
from asgi_aigw.budget.windows import Slot, SlotClock
from asgi_aigw.cache import CacheConfig, RedisExactStore, SemanticCacheMiddleware
from asgi_aigw.testing import FakeBehaviour

from .. import budget_helpers
from ..redis_server import RedisServer
from ..support import eventually
from ._faults_support import (
    FaultStack,
    LogCapture,
    ReplyCutter,
    abort,
    chat,
    clear_queue,
    env_seconds,
    no_500,
    open_raw,
    request_head,
    unique_rows,
)

pytestmark = pytest.mark.e2e

#: Hang detector for one request: every fault here is bounded by timeouts far shorter than this.
HANG = 15.0

MakeStack = Callable[..., Awaitable[FaultStack]]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    with LogCapture() as capture:
        yield capture


@pytest.fixture
async def make_stack(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[MakeStack]:
    stacks: list[FaultStack] = []

    async def make(**options: Any) -> FaultStack:
        stack = await asyncio.to_thread(FaultStack, tmp_path, redis_server, **options)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.aclose()


def report(name: str, stack: FaultStack, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Append this test's figures to ``AIGW_FAULTS_REPORT`` (for the reliability page)."""
    path = os.environ.get("AIGW_FAULTS_REPORT")
    if not path:
        return
    ids = [r["request_id"] for r in rows]
    figures = {
        "test": name,
        "requests": stack.requests,
        "outcomes": stack.statuses(),
        "rows": len(rows),
        "rows_lost": stack.requests - len(set(ids)),
        "duplicate_rows": len(ids) - len(set(ids)),
        **extra,
    }
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(figures) + "\n")


def metered(rows: list[dict[str, Any]], tenant: str) -> list[dict[str, Any]]:
    """Rows of requests the budget reserved for (a store that failed open leaves them unmetered)."""
    return [r for r in rows if r["tenant"] == tenant and r["budget_remaining"]]


async def assert_budget_consistent(stack: FaultStack, rows: list[dict[str, Any]], tenant: str) -> None:
    """Every reservation was settled: the counters hold exactly what the metered requests cost
    (a leaked reservation would leave its whole estimate, thousands of tokens, in ``tpm``). Waits a
    little for settlements the store missed, which are retried in the background."""
    charged = metered(rows, tenant)
    expected = {
        "rpm": len(charged),
        "tpm": sum(r["total_tokens"] for r in charged if not (r["cache_status"] or "").startswith("hit")),
    }

    def counted() -> dict[str, int]:
        totals = stack.budget_totals(tenant)
        return {"rpm": totals.get("rpm", 0), "tpm": totals.get("tpm", 0)}

    await eventually(lambda: counted() == expected, seconds=5.0)
    assert counted() == expected


def assert_rows_match_answers(stack: FaultStack, rows: list[dict[str, Any]]) -> None:
    """One row per request, each with the status its client saw (a stream that broke after it started
    keeps its 200)."""
    assert len(rows) == stack.requests, f"{stack.requests - len(rows)} rows missing"
    unique_rows(rows)
    seen: collections.Counter[int] = collections.Counter()
    for counter in stack.tally.values():
        for outcome, count in counter.items():
            if outcome != "gone":  # raw-socket clients that left: their rows are checked where made
                seen[int(outcome.split("+")[0])] += count
    logged = collections.Counter(r["status"] for r in rows)
    assert not seen - logged, (seen, logged)


async def in_flight_stream(stack: FaultStack, fault: str, words: int = 12) -> asyncio.Task[Any]:
    """Start a slow stream (its reservation made) and return once the provider is generating it."""
    stack.fake.enqueue(FakeBehaviour(chunk_delay=0.1))
    before = len(stack.fake.requests)
    task = asyncio.create_task(stack.call(fault, chat(" ".join(["slow"] * words) + " stream", stream=True)))
    deadline = time.monotonic() + HANG
    while len(stack.fake.requests) == before:
        assert time.monotonic() < deadline, "the stream never reached the provider"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.15)
    return task


# -- Redis stopped and restarted ----------------------------------------------------------------------


async def test_redis_down_fail_open_then_back(
    make_stack: MakeStack, redis_server: RedisServer, logs: LogCapture
) -> None:
    stack = await make_stack(failure_mode="open")
    first = await stack.call("redis up", chat("What is the boiling point of water?"))
    assert first.status == 200
    assert first.headers["x-aigw-cache"] == "miss"
    await stack.rows()  # the answer is stored after it went out: wait for the request to finish
    assert (await stack.call("redis up", chat("What is the boiling point of water?"))).headers[
        "x-aigw-cache"
    ] == "hit-exact"

    # a stream reserved while Redis was up, settled while it is down
    stream = await in_flight_stream(stack, "redis stopped mid-request")
    await asyncio.to_thread(redis_server.stop)
    streamed = await asyncio.wait_for(stream, HANG)
    assert streamed.status == 200
    assert streamed.error is None

    upstream_before = len(stack.fake.requests)
    down = [
        await stack.call("redis down", chat("What is the boiling point of water?")),
        await stack.call("redis down", chat("Name a prime number", stream=True)),
        await stack.call("redis down", chat("Name a prime number")),
    ]
    for answer in down:
        assert answer.status == 200, answer.text  # failing open: served, unmetered
        assert answer.headers["x-aigw-cache"] == "miss"  # the cache degrades to misses
        assert "x-ratelimit-limit-tokens" not in answer.headers
    assert len(stack.fake.requests) == upstream_before + 3
    assert down[0].content() == first.content()
    assert any("Budget store failed" in m and "failing open" in m for m in logs.messages())
    assert any("exact store failed, treated as a miss" in m for m in logs.messages())

    await asyncio.to_thread(redis_server.start)
    await asyncio.sleep(0.3)  # store_retry_seconds: the budget tries the store again
    back = [
        await stack.call("redis back", chat("What is the boiling point of water?")),
        await stack.call("redis back", chat("A brand new question after the restart")),
    ]
    await stack.rows()
    back.append(await stack.call("redis back", chat("A brand new question after the restart")))
    assert [a.status for a in back] == [200, 200, 200]
    assert back[0].headers["x-aigw-cache"] == "hit-exact"  # the entry survived the restart
    assert [a.headers["x-aigw-cache"] for a in back[1:]] == ["miss", "hit-exact"]
    assert "x-ratelimit-limit-tokens" in back[1].headers

    rows = await stack.rows()
    assert_rows_match_answers(stack, rows)
    no_500(stack, rows, logs)
    await assert_budget_consistent(stack, rows, "acme")
    report("redis down, fail open", stack, rows)


async def test_redis_down_fail_closed_then_back(
    make_stack: MakeStack, redis_server: RedisServer, logs: LogCapture
) -> None:
    stack = await make_stack(failure_mode="closed")
    assert (await stack.call("redis up", chat("Tell me about tides"))).status == 200
    await stack.rows()
    stream = await in_flight_stream(stack, "redis stopped mid-request")
    await asyncio.to_thread(redis_server.stop)
    assert (await asyncio.wait_for(stream, HANG)).status == 200

    upstream_before = len(stack.fake.requests)
    down = [
        await stack.call("redis down", chat("Tell me about tides")),
        await stack.call("redis down", chat("Tell me about tides", stream=True)),
        await stack.call("redis down", chat("Something else entirely")),
    ]
    for answer in down:
        assert answer.status == 503, answer.text
        error = answer.error
        assert error is not None
        assert error["code"] == "budget_unavailable"
        assert error["type"] == "server_error"
        assert "budget store is unreachable" in error["message"]
    assert len(stack.fake.requests) == upstream_before  # nothing went upstream unmetered

    await asyncio.to_thread(redis_server.start)
    await asyncio.sleep(0.3)
    back = [
        await stack.call("redis back", chat("Tell me about tides")),
        await stack.call("redis back", chat("After the outage")),
    ]
    assert [a.status for a in back] == [200, 200]
    assert back[0].headers["x-aigw-cache"] == "hit-exact"

    rows = await stack.rows()
    assert_rows_match_answers(stack, rows)
    assert sorted(r["status"] for r in rows).count(503) == 3
    no_500(stack, rows, logs)
    await assert_budget_consistent(stack, rows, "acme")
    report("redis down, fail closed", stack, rows)


async def test_redis_restarted_under_load_leaves_budgets_consistent(
    make_stack: MakeStack, redis_server: RedisServer, logs: LogCapture
) -> None:
    """Redis stopped and started twice while eight clients keep sending (failing closed, so refusals
    are quick and many calls are in flight when it stops). A script Redis ran just before it stopped
    may never have its reply sent: without reservation tokens such reservations stayed counted."""
    stack = await make_stack(failure_mode="closed")
    tenants = ("t0", "t1", "t2")
    done = asyncio.Event()

    async def client(n: int) -> None:
        i = 0
        while not done.is_set():
            body = chat(f"load {n} {i % 4}", stream=i % 2 == 0)
            answer = await asyncio.wait_for(
                stack.call("redis restarts under load", body, tenant=tenants[n % 3]), HANG
            )
            assert answer.status in (200, 503), answer.text
            i += 1

    clients = [asyncio.create_task(client(n)) for n in range(8)]
    await asyncio.sleep(0.5)
    for _ in range(2):
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis_server.start)
        await asyncio.sleep(0.5)
    done.set()
    await asyncio.gather(*clients)

    rows = await stack.rows(seconds=HANG)
    assert_rows_match_answers(stack, rows)
    assert stack.tally["redis restarts under load"]["503"] > 0  # the outages were seen
    no_500(stack, rows, logs)
    for tenant in tenants:
        await assert_budget_consistent(stack, rows, tenant)
    report("redis restarted twice under load (8 clients), fail closed", stack, rows)


async def test_redis_replies_lost_after_the_commands_ran(
    make_stack: MakeStack, redis_server: RedisServer, logs: LogCapture
) -> None:
    """The budget's reserve and the cache's calls run in Redis but their replies never arrive (the
    connection drops right after): the request is served (failing open) and the reservation it did
    not know it made is given back once Redis answers again."""
    cutter = ReplyCutter(redis_server.port)
    try:
        stack = await make_stack(failure_mode="open", redis_url=cutter.url)
        assert (await stack.call("redis up", chat("Before the cut"))).status == 200
        await stack.rows()
        cutter.cut = True
        cut = await stack.call("replies lost", chat("During the cut"))
        assert cut.status == 200, cut.text
        assert "x-ratelimit-limit-tokens" not in cut.headers  # served unmetered
        await stack.rows()
        assert cutter.cuts >= 1
        cutter.cut = False
        await asyncio.sleep(0.3)  # store_retry_seconds
        assert (await stack.call("redis back", chat("After the cut"))).status == 200
        rows = await stack.rows()
        assert_rows_match_answers(stack, rows)
        no_500(stack, rows, logs)
        await assert_budget_consistent(stack, rows, "acme")
        report("redis replies lost after the commands ran", stack, rows)
    finally:
        cutter.close()


# -- Redis slow --------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
async def test_redis_slow_timeouts_apply(
    make_stack: MakeStack, redis_server: RedisServer, logs: LogCapture, failure_mode: str
) -> None:
    stack = await make_stack(failure_mode=failure_mode, store_timeout=0.3, lookup_timeout=0.3)
    assert (await stack.call("redis up", chat("Warm the connections"))).status == 200
    await stack.rows()
    pause = 4.0
    await asyncio.to_thread(redis_server.pause, pause)
    paused_at = time.monotonic()
    # each request waits at most the store and lookup timeouts (0.3 s): a request stuck behind the
    # paused server would take the whole pause; half of it is the hang detector
    slow = await asyncio.wait_for(
        asyncio.gather(*(stack.call("redis slow", chat(f"Slow store question {i}")) for i in range(3))),
        pause / 2,
    )
    assert time.monotonic() - paused_at < pause, "the answers waited for the paused server"
    for answer in slow:
        if failure_mode == "open":
            assert answer.status == 200, answer.text
            assert answer.headers["x-aigw-cache"] == "miss"
        else:
            assert answer.status == 503
            assert answer.error is not None
            assert answer.error["code"] == "budget_unavailable"
    assert any("TimeoutError" in m for m in logs.messages())

    await asyncio.sleep(max(0.0, pause - (time.monotonic() - paused_at)) + 0.3)
    again = await stack.call("redis back", chat("Warm the connections"))
    assert again.status == 200
    assert again.headers["x-aigw-cache"] == "hit-exact"
    fresh = await stack.call("redis back", chat("After the pause"))
    assert fresh.status == 200
    assert "x-ratelimit-limit-tokens" in fresh.headers

    rows = await stack.rows()
    assert_rows_match_answers(stack, rows)
    no_500(stack, rows, logs)
    await assert_budget_consistent(stack, rows, "acme")
    report(f"redis slow, fail {failure_mode}", stack, rows)


# -- the semantic layer failing --------------------------------------------------------------------------


async def test_embedder_or_vector_store_failing_is_a_miss(make_stack: MakeStack, logs: LogCapture) -> None:
    stack = await make_stack(vector="memory://")
    stack.embedder.fail = True
    a = await stack.call("embedder raising", chat("How do I reset my password?"))
    assert a.status == 200
    assert a.headers["x-aigw-cache"] == "miss"
    assert a.content() == "Echo: How do I reset my password?"
    assert stack.vector.entries() == []  # no vector without an embedding
    assert any("the embedder failed, treated as a miss (RuntimeError" in m for m in logs.messages())
    await stack.rows()  # the request is over: the cache stored what it would after the answer

    stack.embedder.fail = False
    stack.vector.fail = True
    b = await stack.call("vector store raising", chat("What time does the library open?"))
    assert b.status == 200
    assert b.headers["x-aigw-cache"] == "miss"
    assert b.content() == "Echo: What time does the library open?"
    assert stack.vector.entries() == []
    assert any("the vector store failed, treated as a miss (ConnectionError" in m for m in logs.messages())
    await stack.rows()
    upstream = len(stack.fake.requests)
    assert upstream == 2

    stack.vector.fail = False
    c = await stack.call("semantic back", chat("How can I cancel my subscription?"))
    await stack.rows()
    hit = await stack.call("semantic back", chat("How can I cancel my subscription, please?"))
    assert c.headers["x-aigw-cache"] == "miss"
    assert hit.headers["x-aigw-cache"] == "hit-semantic"
    assert hit.content() == c.content()
    # what the failures left behind is right: exact entries of the answers the provider gave
    assert {e.question for e in stack.vector.entries()} == {"How can I cancel my subscription?"}
    assert len(stack.fake.requests) == upstream + 1
    exact = b"\n".join(stack.exact_entries())
    assert b"Echo: How do I reset my password?" in exact
    assert b"Echo: What time does the library open?" in exact

    rows = await stack.rows()
    assert_rows_match_answers(stack, rows)
    no_500(stack, rows, logs)
    report("semantic layer failing", stack, rows)


# -- the request log sink down -------------------------------------------------------------------------


@pytest.mark.parametrize("lose_acks", [False, True], ids=["refusing", "acks-lost"])
async def test_log_sink_down_loses_and_duplicates_nothing(
    make_stack: MakeStack, logs: LogCapture, lose_acks: bool
) -> None:
    down_for = env_seconds("AIGW_FAULTS_SINK_DOWN_SECONDS", 2.0)
    stack = await make_stack()
    for i in range(3):
        assert (await stack.call("sink up", chat(f"Before the outage {i}"))).status == 200
    await stack.rows()

    stack.sink.lose_acks = lose_acks
    stack.sink.down = True
    writer = stack.log_layer.writer
    started = time.monotonic()
    i = peak = 0
    while time.monotonic() - started < down_for:
        body = chat(f"During the outage {i}", stream=i % 3 == 0)
        assert (await stack.call("sink down", body)).status == 200
        i += 1
        peak = max(peak, writer.queue_depth)
        await asyncio.sleep(0.05)
    assert stack.sink.failed_writes > 0, "the sink was never asked while down"
    assert writer.spilled > 0
    assert peak > 10, "rows did not wait for the sink"  # the outage really held rows back
    stack.sink.down = False

    for i in range(3):
        assert (await stack.call("sink back", chat(f"After the outage {i}"))).status == 200
    rows = await stack.rows(seconds=HANG)
    assert len(rows) == stack.requests, f"{stack.requests - len(rows)} rows lost"
    unique_rows(rows)
    assert writer.dropped == 0
    assert any("request log sink memory failed" in m for m in logs.messages())
    assert stack.spool_files() == [], "spool files left behind after recovery"
    no_500(stack, rows, logs)
    report(
        f"log sink down {down_for:g}s ({'acks lost' if lose_acks else 'refusing'})",
        stack,
        rows,
        failed_inserts=stack.sink.failed_writes,
        peak_rows_waiting=peak,
        memory_rows_at_end=writer.memory_rows,
    )


# -- the provider failing ------------------------------------------------------------------------------


async def test_provider_faults_are_mapped_bounded_and_accounted(
    make_stack: MakeStack, logs: LogCapture
) -> None:
    stack = await make_stack()
    fake = stack.fake

    async def run(fault: str, behaviour: FakeBehaviour, body: dict[str, Any], times: int = 1) -> Any:
        fake.enqueue(behaviour, times)
        answer = await asyncio.wait_for(stack.call(fault, body), HANG)
        clear_queue(fake)
        return answer

    # 500 on every attempt: 502 after the one retry
    for stream in (False, True):
        before = len(fake.requests)
        answer = await run("500", FakeBehaviour(status=500), chat("Provider error", stream=stream), times=2)
        assert answer.status == 502
        assert answer.error["code"] == "bad_gateway"
        assert len(fake.requests) == before + 2
    # 429 with a short Retry-After: waited for, then answered
    answer = await run("429 retry-after 1", FakeBehaviour(status=429, retry_after="1"), chat("Busy once"))
    assert answer.status == 200
    assert answer.headers["x-aigw-attempts"] == "2"
    # 429 asking for longer than max_retry_after: passed on with its Retry-After
    answer = await run("429 retry-after 100", FakeBehaviour(status=429, retry_after="100"), chat("Busy long"))
    assert answer.status == 429
    assert answer.headers["retry-after"] == "100"
    assert answer.error["code"] == "rate_limit_exceeded"
    # malformed JSON: 502 after the retry
    answer = await run("malformed JSON", FakeBehaviour(malformed=True), chat("Garbled"), times=2)
    assert answer.status == 502
    assert answer.error["code"] == "bad_gateway"
    # a stream with an event that is not JSON: OpenAI-format streams are relayed event by event without
    # parsing them, so the client gets the bad event as sent (and the cache refuses the answer, below)
    answer = await run(
        "malformed SSE event", FakeBehaviour(malformed=True), chat("Garbled stream", stream=True)
    )
    assert answer.status == 200
    assert "data: {this is not json" in answer.text
    # a stream cut short: an error event after the pieces already sent
    answer = await run(
        "truncated stream", FakeBehaviour(cut_after=2), chat("one two three four five", stream=True)
    )
    assert answer.outcome == "200+sse-error"
    assert "ended the stream" in answer.error["message"]
    # a provider that stalls before the first byte, and in the middle of a stream (timeouts of 1 s)
    answer = await run("stall before first byte", FakeBehaviour(first_byte_delay=4), chat("Stall"), times=2)
    assert answer.status == 504
    assert answer.error["code"] == "upstream_timeout"
    answer = await run(
        "stall mid-stream", FakeBehaviour(chunk_delay=4), chat("alpha beta gamma delta", stream=True)
    )
    assert answer.outcome == "200+sse-error"
    assert answer.error["code"] == "upstream_timeout"
    # a second deployment takes over from a failing first one
    before = len(stack.second.requests)
    answer = await run(
        "500, fallback configured", FakeBehaviour(status=500), chat("Fall back", model="with-fallback")
    )
    assert answer.status == 200
    assert answer.content() == "Echo: Fall back"
    assert answer.headers["x-aigw-attempts"] == "2"
    assert len(stack.second.requests) == before + 1

    # nothing cached from a failed or truncated answer: only the two that succeeded are in Redis. The
    # cache stores an answer after it has gone to the client: give the last store a moment to land
    deadline = time.monotonic() + 5
    while b"Echo: Fall back" not in (entries := b"\n".join(stack.exact_entries())):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert b"Echo: Busy once" in entries
    assert b"Echo: Fall back" in entries
    for word in (b"Provider error", b"Garbled", b"one two", b"Stall", b"alpha", b"Busy long"):
        assert word not in entries, word
    # the stalled stream was closed upstream, not left running
    assert fake.disconnects >= 1

    rows = await stack.rows()
    assert_rows_match_answers(stack, rows)
    no_500(stack, rows, logs)
    await assert_budget_consistent(stack, rows, "acme")
    report("provider faults", stack, rows)


# -- client disconnects ----------------------------------------------------------------------------------


async def test_client_disconnects_at_every_stage(make_stack: MakeStack, logs: LogCapture) -> None:
    stack = await make_stack()
    fake = stack.fake
    body = json.dumps(chat(" ".join(["word"] * 30), stream=True)).encode()

    # mid-upload: half the body, then gone
    reader, writer = await open_raw(stack.base_url)
    writer.write(request_head(stack.base_url, len(body)) + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)
    abort(writer)
    stack.count("disconnect mid-upload", "gone")
    rows = await stack.rows()
    assert rows[-1]["status"] == 499
    assert rows[-1]["client_disconnected"]
    assert fake.requests == []  # nothing went upstream

    # waiting for the first byte (the provider takes 0.8 s to answer; its pauses between chunks let it
    # notice a closed connection)
    fake.enqueue(FakeBehaviour(first_byte_delay=0.8, chunk_delay=0.05))
    reader, writer = await open_raw(stack.base_url)
    writer.write(request_head(stack.base_url, len(body)) + body)
    await writer.drain()
    await _until(lambda: len(fake.requests) == 1)
    abort(writer)
    stack.count("disconnect before first byte", "gone")
    rows = await stack.rows()
    assert rows[-1]["status"] == 499
    assert rows[-1]["client_disconnected"]
    # the gateway closed its upstream request: the provider sees the client (the gateway) gone
    await _until(lambda: fake.disconnects == 1)

    # mid-stream, after the first piece
    fake.enqueue(FakeBehaviour(chunk_delay=0.1))
    reader, writer = await open_raw(stack.base_url)
    writer.write(request_head(stack.base_url, len(body)) + body)
    await writer.drain()
    seen = b""
    while b"word" not in seen:
        seen += await asyncio.wait_for(reader.read(4096), HANG)
    abort(writer)
    stack.count("disconnect mid-stream", "gone")
    await _until(lambda: fake.disconnects == 2)
    assert fake.completed_streams == 0
    rows = await stack.rows()
    assert rows[-1]["status"] == 200
    assert rows[-1]["client_disconnected"]
    assert 0 < rows[-1]["completion_tokens"] < 31  # charged for what was generated, no more

    # the gateway still answers, and nothing partial was cached
    again = await stack.call("after disconnects", json.loads(body))
    assert again.status == 200
    assert again.headers["x-aigw-cache"] == "miss"
    rows = await stack.rows()
    assert_rows_match_answers(stack, rows)
    no_500(stack, rows, logs)
    await assert_budget_consistent(stack, rows, "acme")
    report("client disconnects", stack, rows)


async def _until(predicate: Callable[[], bool], seconds: float = HANG) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the gateway"
        await asyncio.sleep(0.01)


# -- store failures at the edges of a request (in process) ------------------------------------------


class _SettleFailsStore(MemoryBudgetStore):
    """A memory budget store whose next ``failures`` settlements raise (the store went away)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def settle(self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("ConnectionRefusedError: the store is down (fault injected)")
        await super().settle(tenant, slots, deltas)


def _json_app() -> Any:
    """An inner app answering every chat request with 7 tokens of usage."""
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    answer = orjson.dumps(
        {"object": "chat.completion", "model": "gpt-4o-mini", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    )  # fmt: skip

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return inner


async def test_a_settlement_the_store_did_not_take_is_retried() -> None:
    store = _SettleFailsStore(failures=2)
    budget = BudgetMiddleware(
        _json_app(),
        store=store,
        config=BudgetConfig(limits=Limits(tokens_per_minute=10**6), store_retry_seconds=0.05),
    )
    now = time.time()
    transport = httpx.ASGITransport(budget)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    slots = SlotClock().slots(now)
    tpm = next(i for i, slot in enumerate(slots) if slot.window.name == "tokens_per_minute")
    # the whole estimate (prompt + default_max_tokens) is still reserved: the settlement failed
    assert (await store.usage("default", slots))[tpm] > 4096
    for _ in range(100):  # retried in the background (once more failing, then taken)
        if (await store.usage("default", slots))[tpm] == 7:
            break
        await asyncio.sleep(0.02)
    assert (await store.usage("default", slots))[tpm] == 7
    assert store.failures == 0
    await budget.aclose()


async def test_kept_settlements_go_out_as_soon_as_the_store_answers_again() -> None:
    store = _SettleFailsStore(failures=1)
    # a retry pause far longer than the test: only the next successful reservation can trigger it
    budget = BudgetMiddleware(
        _json_app(),
        store=store,
        config=BudgetConfig(limits=Limits(tokens_per_minute=10**6), store_retry_seconds=60),
    )
    now = time.time()
    slots = SlotClock().slots(now)
    tpm = next(i for i, slot in enumerate(slots) if slot.window.name == "tokens_per_minute")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(budget), base_url="http://t") as client:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        assert (await store.usage("default", slots))[tpm] > 4096
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        for _ in range(100):
            if (await store.usage("default", slots))[tpm] == 14:
                break
            await asyncio.sleep(0.02)
    assert (await store.usage("default", slots))[tpm] == 14  # both answers, 7 tokens each
    await budget.aclose()


def test_exact_store_calls_are_bounded_by_the_lookup_timeout() -> None:
    cache = SemanticCacheMiddleware(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        config=CacheConfig(store="redis://127.0.0.1:6379/0", vector_store=None, lookup_timeout=0.25),
    )
    assert isinstance(cache.exact, RedisExactStore)
    assert cache.exact.timeout == 0.25


# -- reservations whose reply was lost -------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis-url", "redis-client"])
async def budget_store(request: Any, redis_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryBudgetStore()
        return
    given = request.param == "redis-client"
    async with budget_helpers.redis_budget_store(redis_url, redis_prefix, given_client=given) as store:
        yield store


async def test_a_token_makes_reserve_and_settle_apply_once(
    budget_store: Any,
) -> None:
    slots = SlotClock().slots(time.time())
    unlimited = [-1] * len(slots)
    amounts = [1, 100, 100, 100, 100, 0, 0]
    assert (await budget_store.reserve("acme", slots, amounts, unlimited, 60, token="t1")).allowed
    # the same call again (a client retried after losing the reply): reserved once
    assert (await budget_store.reserve("acme", slots, amounts, unlimited, 60, token="t1")).allowed
    assert (await budget_store.usage("acme", slots))[:2] == [1, 100]
    give_back = [0, -90, -90, -90, -90, 0, 0]
    await budget_store.settle("acme", slots, give_back, token="t1")
    await budget_store.settle("acme", slots, give_back, token="t1")  # sent again: its reply was lost
    assert (await budget_store.usage("acme", slots))[:2] == [1, 10]
    # the release of a reservation that was never made (the reserve call failed before it ran)
    await budget_store.settle("acme", slots, [-1, -100, -100, -100, -100, 0, 0], token="never-made")
    assert (await budget_store.usage("acme", slots))[:2] == [1, 10]
    # without tokens, as before: every settlement applies
    assert (await budget_store.reserve("acme", slots, amounts, unlimited, 60)).allowed
    await budget_store.settle("acme", slots, give_back)
    await budget_store.settle("acme", slots, give_back)
    assert (await budget_store.usage("acme", slots))[:2] == [2, 0]  # 20 + 100 - 90 - 90, floored at 0


class _LostReplyStore(MemoryBudgetStore):
    """A memory budget store whose next reservation is made but answered with an error, as when Redis
    runs the script and stops before its reply leaves."""

    lose_next = True

    async def reserve(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        limits: Sequence[int],
        grace: int,
        *,
        token: str | None = None,
    ) -> Any:
        reservation = await super().reserve(tenant, slots, amounts, limits, grace, token=token)
        if self.lose_next:
            self.lose_next = False
            raise StoreError("ConnectionLost: the Redis server closed the connection (fault injected)")
        return reservation


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
async def test_a_reservation_whose_reply_was_lost_is_given_back(failure_mode: str) -> None:
    store = _LostReplyStore()
    budget = BudgetMiddleware(
        _json_app(),
        store=store,
        config=BudgetConfig(
            limits=Limits(tokens_per_minute=10**6), failure_mode=failure_mode, store_retry_seconds=0
        ),
    )
    slots = SlotClock().slots(time.time())
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(budget), base_url="http://t") as client:
        first = await client.post("/v1/chat/completions", json=body)
        assert first.status_code == (200 if failure_mode == "open" else 503)
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        for _ in range(100):
            if (await store.usage("default", slots))[:2] == [1, 7]:
                break
            await asyncio.sleep(0.02)
    # only the second request counts: the first one's reservation, made unseen, was given back
    assert (await store.usage("default", slots))[:2] == [1, 7]
    await budget.aclose()
