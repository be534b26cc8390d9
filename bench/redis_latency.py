"""What a Redis on another host costs the whole stack: round trips per request, and latency over HTTP.

    python bench/redis_latency.py [--pairs 200] [--delays 0 1] [--redis redis://127.0.0.1:6379/0]

The full stack (tenant header, budget and exact cache in one Redis, regex-only redaction, JSONL request
log) runs as one uvicorn worker in front of a FakeProvider process answering at once. Its Redis is a
proxy in this process in front of the real server that holds every reply back ``--delays``
milliseconds (a server across a network), and counts round trips: the times the gateway sent commands
with no reply pending. One client sends a new question (a miss, forwarded and stored), then the same
question again (an exact hit), ``--pairs`` times, one request at a time, waiting between requests
until Redis has answered everything (a miss's settlement leaves after its answer); medians.
On loopback a round trip costs next to nothing; across hosts each one is a network delay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import uvicorn_process, write_results

from asgi_aigw.testing.redis_proxy import RedisProxy


class DelayProxy:
    """:class:`RedisProxy` on a thread and event loop of its own (the client here is synchronous)."""

    def __init__(self, server_url: str) -> None:
        self.proxy = RedisProxy(server_url)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)
        self.url = self.proxy.url

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.proxy.start())
        ready.set()
        self.loop.run_forever()

    def wait_idle(self) -> None:
        """Until every command sent has its reply (a settlement still under way after its answer went)
        and nothing more came for a moment."""
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.005:
            if self.proxy.inflight:
                quiet_since = time.monotonic()
            time.sleep(0.0005)


def body(question: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], "max_tokens": 20}


def measure(url: str, proxy: DelayProxy, pairs: int) -> dict[str, float]:
    """Median latency (ms) and round trips per request of misses and hits."""
    misses: list[float] = []
    hits: list[float] = []
    miss_trips = hit_trips = 0
    run = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=url, headers={"x-tenant-id": "bench"}, timeout=30) as client:
        for i in range(-5, pairs):  # the first five warm up (connections, scripts)
            question = body(f"question {run} {i}")
            before = proxy.proxy.round_trips
            start = time.perf_counter()
            miss = client.post("/ai/v1/chat/completions", json=question)
            miss_time = time.perf_counter() - start
            proxy.wait_idle()  # the miss's settlement and new entry, sent after its answer
            trips = proxy.proxy.round_trips
            start = time.perf_counter()
            hit = client.post("/ai/v1/chat/completions", json=question)
            hit_time = time.perf_counter() - start
            proxy.wait_idle()
            if miss.headers.get("x-aigw-cache") != "miss" or hit.headers.get("x-aigw-cache") != "hit-exact":
                raise RuntimeError(f"expected a miss then a hit: {miss.status_code} {hit.status_code}")
            if i >= 0:
                misses.append(miss_time)
                hits.append(hit_time)
                miss_trips += trips - before
                hit_trips += proxy.proxy.round_trips - trips
    return {
        "miss_p50_ms": statistics.median(misses) * 1000,
        "hit_p50_ms": statistics.median(hits) * 1000,
        "miss_round_trips": miss_trips / pairs,
        "hit_round_trips": hit_trips / pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 1.0], help="milliseconds")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    proxy = DelayProxy(args.redis)
    data_dir = tempfile.mkdtemp(prefix="aigw-bench-latency-")
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(uvicorn_process("asgi_aigw.testing.fake_provider:app"))
        env = {
            "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
            "BENCH_REDIS": proxy.url,
            "BENCH_KEY_PREFIX": f"aigw-bench-{uuid.uuid4().hex[:8]}:",
            "BENCH_DATA_DIR": data_dir,
            "BENCH_STACK": "tenant,budget,redact,exact,jsonl",
        }
        server = stack.enter_context(uvicorn_process("_stack_apps:stack", factory=True, env=env))
        for delay in args.delays:
            proxy.proxy.delay = delay / 1000
            row = {"delay_ms": delay, **measure(str(server), proxy, args.pairs)}
            rows.append(row)
            print(
                f"Redis replies {delay:g} ms late: miss p50 {row['miss_p50_ms']:.2f} ms "
                f"({row['miss_round_trips']:.2f} round trips), hit p50 {row['hit_p50_ms']:.2f} ms "
                f"({row['hit_round_trips']:.2f})",
                flush=True,
            )
    table = [
        f"One uvicorn worker, one request at a time, medians of {args.pairs} misses and {args.pairs} exact"
        " hits; Redis behind a proxy that holds each reply back the delay given. Full stack: tenant"
        " (header) + budget and exact cache (one Redis) + regex-only redaction + request log (JSONL).",
        "",
        "| Redis reply delay | miss p50 ms | round trips per miss | exact hit p50 ms | round trips per hit |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['delay_ms']:g} ms | {r['miss_p50_ms']:.2f} | {r['miss_round_trips']:.2f} | "
            f"{r['hit_p50_ms']:.2f} | {r['hit_round_trips']:.2f} |"
            for r in rows
        ),
    ]
    write_results("redis_latency", "What a distant Redis costs the whole stack", "\n".join(table), rows)
    print("\n".join(table))


if __name__ == "__main__":
    main()
