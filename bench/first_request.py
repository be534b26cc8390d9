"""The first requests a fresh worker serves: what a restart or a new replica costs its first clients.

    python bench/first_request.py [--starts 5] [--requests 5] [--redis redis://127.0.0.1:6379/0]

Each start is a new uvicorn process (uvloop, httptools, one worker) in front of FakeProvider on loopback.
As soon as its port accepts connections (after lifespan startup), one client sends ``--requests`` new
questions one after another and times each; the process is then stopped. Targets: the bare ASGI app
returning fixed JSON (the server alone), the router alone, and the full stack on its embedded defaults
(tenant header, budget in Redis, regex-only redaction, the cache with Redis exact and Qdrant Edge
semantic layers, the chDB request log). Medians over ``--starts`` starts, the targets taking turns.

Writes bench/results/first_request.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import delete_keys, uvicorn_process, write_results

#: (name, uvicorn target, whether it is a ``_stack_apps`` factory, its layers, its path)
TARGETS = [
    ("bare ASGI app, fixed JSON", "_baselines:fixed_json", False, "", "/v1/chat/completions"),
    ("ProviderRouter alone", "_stack_apps:stack", True, "", "/ai/v1/chat/completions"),
    (
        "full stack, embedded defaults",
        "_stack_apps:stack",
        True,
        "tenant,budget,redact,exact,semantic,chdb",
        "/ai/v1/chat/completions",
    ),
]


def first_requests(url: str, count: int) -> tuple[list[float], float]:
    """``count`` new questions, one after another, from a new client: each one's milliseconds, and
    the seconds the first took to connect."""
    import httpx

    times: list[float] = []
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for n in range(count):
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Tell me about {uuid.uuid4().hex[:8]} number {n}"}],
            }
            before = time.perf_counter()
            response = client.post(url, json=body, headers={"x-tenant-id": "bench"})
            times.append((time.perf_counter() - before) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return times, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    prefix = f"aigw-bench-first-{uuid.uuid4().hex[:8]}:"
    data_dir = Path(tempfile.mkdtemp(prefix="aigw-bench-first-"))
    samples: dict[str, list[list[float]]] = {name: [] for name, *_ in TARGETS}
    startups: dict[str, list[float]] = {name: [] for name, *_ in TARGETS}
    try:
        with uvicorn_process("asgi_aigw.testing.fake_provider:app") as fake:
            for start in range(args.starts):
                for name, target, factory, layers, path in TARGETS:
                    env = {
                        "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
                        "BENCH_REDIS": args.redis,
                        "BENCH_KEY_PREFIX": prefix,
                        # a directory of its own each start: a new replica's stores start empty
                        "BENCH_DATA_DIR": str(data_dir / f"{start}"),
                        "BENCH_STACK": layers,
                    }
                    launched = time.perf_counter()
                    with uvicorn_process(target, factory=factory, env=env) as server:
                        startups[name].append(time.perf_counter() - launched)
                        times, _ = first_requests(f"{server}{path}", args.requests)
                    samples[name].append(times)
                    print(
                        f"  start {start} {name:32} " + " ".join(f"{t:7.1f}" for t in times) + " ms",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            delete_keys(args.redis, prefix)
    results = []
    for name, runs in samples.items():
        results.append(
            {
                "name": name,
                "startup_s": statistics.median(startups[name]),
                "first_ms": statistics.median(run[0] for run in runs),
                "second_ms": statistics.median(run[1] for run in runs) if args.requests > 1 else None,
                "later_ms": statistics.median(t for run in runs for t in run[2:])
                if args.requests > 2
                else None,
                "runs": runs,
            }
        )
    lines = [
        f"A new uvicorn worker per start, {args.starts} starts, {args.requests} new questions one after",
        "another from one client once its port accepts connections; medians. *Startup*: from launching",
        "the process to its port accepting (the imports, the app built, lifespan startup).",
        "",
        "| target | startup s | first request ms | second ms | later ms (median) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {r['name']} | {r['startup_s']:.2f} | {r['first_ms']:.1f} | "
            f"{r['second_ms'] if r['second_ms'] is None else format(r['second_ms'], '.1f')} | "
            f"{r['later_ms'] if r['later_ms'] is None else format(r['later_ms'], '.1f')} |"
            for r in results
        ),
    ]
    write_results("first_request", "The first requests of a fresh worker", "\n".join(lines), results)


if __name__ == "__main__":
    main()
