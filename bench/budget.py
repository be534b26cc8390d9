"""Budget check + settle overhead: BudgetMiddleware (Redis on loopback, and memory) in front of an inner
app, vs the bare inner app, in the same run and process.

    python bench/budget.py [--requests 5000] [--redis redis://127.0.0.1:6379/0]

Requests go straight through ASGI (no HTTP server, no client), one at a time, so the figures are the
middleware's own added latency: estimate (token count), one EVALSHA to reserve in every window, the
response tap, one EVALSHA to settle. The inner app parses the body as the router would (``read_json``)
and answers a fixed completion with ``usage``. Variants run in interleaved rounds so drift on a shared
machine hits them alike. "answer" is when the last body byte left; "call" includes the settle that
follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from _harness import write_results

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, MemoryBudgetStore, RedisBudgetStore
from asgi_aigw.kernel.body import read_json
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.tenant import TenantConfig, TenantMiddleware

BODY = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "max_tokens": 200,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello, how are you today? Tell me about budgets."},
        ],
    }
)
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Fine."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32},
    }
)
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "path": "/v1/chat/completions",
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-tenant-id", b"bench"),
    ],
}


async def inner(scope: Any, receive: Any, send: Any) -> None:
    """Stands for the router: reads the parsed body, records usage, answers fixed JSON."""
    scope, receive, _ = await read_json(scope, receive)
    ensure_context(scope)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER, "more_body": False})


async def one(app: Any) -> tuple[float, float]:
    """(answer, call) latency in milliseconds for one request."""
    sent = False
    answered = 0.0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal answered
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered = time.perf_counter()

    started = time.perf_counter()
    await app({**SCOPE, "state": {}}, receive, send)
    ended = time.perf_counter()
    return (answered - started) * 1000, (ended - started) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(requests: int, redis_url: str) -> dict[str, Any]:
    prefix = f"aigw-bench:{uuid.uuid4().hex[:8]}:"
    limits = Limits(
        requests_per_minute=10**9, tokens_per_minute=10**12, tokens_per_day=10**12, cost_per_day=10**6
    )
    redis_store = RedisBudgetStore(redis_url, key_prefix=prefix)
    variants: dict[str, Any] = {
        "bare inner app": inner,
        "budget, Redis": BudgetMiddleware(inner, store=redis_store, config=BudgetConfig(limits=limits)),
        "budget, memory": BudgetMiddleware(
            inner, store=MemoryBudgetStore(), config=BudgetConfig(limits=limits)
        ),
        "tenant + budget, Redis": TenantMiddleware(
            BudgetMiddleware(inner, store=redis_store, config=BudgetConfig(limits=limits)),
            config=TenantConfig(required=False),
        ),
    }
    for app in variants.values():  # warm up: tokenizer load, script load, connections
        for _ in range(200):
            await one(app)
    answer: dict[str, list[float]] = {name: [] for name in variants}
    call: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, float] = dict.fromkeys(variants, 0.0)
    client = redis_store.client()
    pings: list[float] = []
    rounds = 50
    batch = max(1, requests // rounds)
    for _ in range(rounds):
        for name, app in variants.items():
            started_cpu = time.process_time()
            for _ in range(batch):
                a, c = await one(app)
                answer[name].append(a)
                call[name].append(c)
            cpu[name] += time.process_time() - started_cpu
        for _ in range(batch):  # the round trip every store call pays, measured alongside
            started = time.perf_counter()
            await client.ping()
            pings.append((time.perf_counter() - started) * 1000)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await redis_store.aclose()
    results: dict[str, Any] = {
        name: {
            "answer_p50_ms": statistics.median(answer[name]),
            "answer_p90_ms": percentile(answer[name], 0.9),
            "call_p50_ms": statistics.median(call[name]),
            "call_p90_ms": percentile(call[name], 0.9),
            "call_p99_ms": percentile(call[name], 0.99),
            "cpu_us_per_request": cpu[name] / len(call[name]) * 1e6,
            "requests": len(call[name]),
        }
        for name in variants
    }
    results["redis PING round trip"] = {"p50_ms": statistics.median(pings), "requests": len(pings)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests per variant")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(run(args.requests, args.redis))
    ping = results.pop("redis PING round trip")
    bare = results["bare inner app"]
    lines = [
        "| variant | answer p50 ms | answer p90 ms | call p50 ms | call p90 ms | call p99 ms | added p50 (call) ms | CPU µs/request |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['answer_p50_ms']:.3f} | {r['answer_p90_ms']:.3f} | {r['call_p50_ms']:.3f} | "
            f"{r['call_p90_ms']:.3f} | {r['call_p99_ms']:.3f} | {r['call_p50_ms'] - bare['call_p50_ms']:+.3f} | "
            f"{r['cpu_us_per_request']:.0f} |"
        )
    budget = results["budget, Redis"]
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| added latency p50 as the client sees it (last byte out) | {budget['answer_p50_ms'] - bare['answer_p50_ms']:+.3f} ms |",
        f"| added server time p50 per request (check + answer + settle) | {budget['call_p50_ms'] - bare['call_p50_ms']:+.3f} ms |",
        f"| redis-py PING round trip p50, same run (interleaved) | {ping['p50_ms']:.3f} ms |",
        f"| added CPU per request, Redis store | {budget['cpu_us_per_request'] - bare['cpu_us_per_request']:.0f} µs |",
        f"| added server time / PING round trip | {(budget['call_p50_ms'] - bare['call_p50_ms']) / ping['p50_ms']:.1f}x |",
        f"| load average (1 min) at the end | {os.getloadavg()[0]:.2f} |",
    ]
    counter = "asgi_aigw.runtime tokenizers"
    try:
        import asgi_aigw.runtime.tokens  # noqa: F401
    except ImportError:
        counter = "no runtime installed: the estimate fell back to body size / 4"
    lines += [
        "",
        f"Token counting: {counter}. Redis: {args.redis} (loopback), one connection pool per store.",
    ]
    write_results(
        "budget", "Budget check + settle overhead (in process, sequential)", "\n".join(lines), results
    )


if __name__ == "__main__":
    main()
