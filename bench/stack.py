"""The whole gateway against the bare limits, and what each layer costs, over HTTP.

    python bench/stack.py [--seconds 3] [--rounds 3] [--concurrency 32] [--redis redis://127.0.0.1:6379/0]

Every target is one uvicorn process (uvloop, httptools, one worker) on 127.0.0.1 in front of a
FakeProvider process answering at once (the 0-ms upstream), loaded by wrk with ``--concurrency``
connections. The targets take turns, round after round (interleaved, so a slower minute on a shared
machine hits all of them), each turn after a second of warm-up, and each figure is the median of the
rounds: requests per second, p50 and p99 latency, server CPU per request (the process's CPU time
over the requests it served) and the Redis server's CPU per request (from its ``INFO cpu``: what one
Redis spends on each request of every worker in front of it, so how many it can serve).

- the limits: a bare ASGI app returning fixed JSON (the most a cache hit can do), a bare aiohttp proxy
  (the most a pass-through can do);
- the router alone;
- the full stack: tenant (header) + budget (Redis) + regex-only redaction + cache (Redis exact and the
  embedded Qdrant Edge semantic layer, the default) + request log (chDB, the default): an exact hit
  (the same question every time), the answer forwarded and stored (``Cache-Control: no-cache``, with
  the semantic layer off and on), and unique questions (embedding, search, forward, store);
- one layer at a time in front of the router.

Writes bench/results/stack.{md,json}, with the ratios issue 21 sets as targets.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    LoadResult,
    Server,
    check_answers,
    delete_keys,
    require_wrk,
    unique_bodies_lua,
    uvicorn_process,
    write_results,
    wrk,
)

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}'
FULL = "tenant,budget,redact,exact,semantic,chdb"
FULL_NO_SEMANTIC = "tenant,budget,redact,exact,chdb"


def _fixed(*headers: tuple[str, str]) -> str:
    """A wrk script posting BODY with ``headers`` (the tenant header always)."""
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        'wrk.headers["x-tenant-id"] = "bench"',
        *(f'wrk.headers["{name}"] = "{value}"' for name, value in headers),
        "wrk.body = '" + BODY.decode() + "'",
    ]
    return "\n".join(lines) + "\n"


SAME = _fixed()
NO_CACHE = _fixed(("Cache-Control", "no-cache"))
#: Every request a new question (letters only, so no PII pattern fires), from each wrk thread's counter.
UNIQUE = unique_bodies_lua("Tell me about ", "RUN")


@dataclass(frozen=True)
class Target:
    name: str
    #: ``module:app`` of a baseline, or the layers of ``_stack_apps:stack`` (comma-separated).
    app: str
    script: str
    group: str = "stack"

    @property
    def baseline(self) -> bool:
        return ":" in self.app


BARE = Target("bare ASGI app, fixed JSON", "_baselines:fixed_json", SAME, "limit")
PROXY = Target("bare aiohttp proxy", "_baselines:aiohttp_proxy", SAME, "limit")
ROUTER = Target("ProviderRouter alone", "", SAME)
HIT = Target("full stack, exact hit", FULL, SAME)
STORED = Target("full stack, forwarded and stored (no-cache, semantic off)", FULL_NO_SEMANTIC, NO_CACHE)
STORED_SEMANTIC = Target("full stack, forwarded and stored (no-cache, semantic on)", FULL, NO_CACHE)
UNIQUE_Q = Target("full stack, unique questions", FULL, UNIQUE)
TARGETS = [
    BARE,
    PROXY,
    ROUTER,
    HIT,
    STORED,
    STORED_SEMANTIC,
    UNIQUE_Q,
    Target("router + tenant (header)", "tenant", SAME, "layer"),
    Target("router + budget (memory)", "budget-memory", SAME, "layer"),
    Target("router + budget (Redis)", "budget", SAME, "layer"),
    Target("router + redaction (regex-only)", "redact", SAME, "layer"),
    Target("router + request log (chDB)", "chdb", SAME, "layer"),
    Target("router + cache, storing every answer (Redis + Qdrant Edge)", "exact,semantic", NO_CACHE, "layer"),
    Target("router + cache, exact hit (Redis)", "exact", SAME, "layer"),
    Target("router + cache, exact hit (memory)", "exact-memory", SAME, "layer"),
]


def redis_cpu_seconds(url: str) -> float:
    """The Redis server's CPU time so far (user and system), from ``INFO cpu``."""
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def median_result(samples: list[LoadResult]) -> LoadResult:
    first = samples[0]
    return LoadResult(
        first.name,
        first.concurrency,
        statistics.median(s.requests_per_s for s in samples),
        statistics.median(s.p50_ms for s in samples),
        statistics.median(s.p99_ms for s in samples),
        sum(s.errors for s in samples),
        sum(s.requests for s in samples),
        statistics.median(s.cpu_us_per_request or 0.0 for s in samples),
    )


#: Issue 21's throughput ratios: (what, target measured, its limit, the least ratio).
RATIOS = (
    ("full stack exact hit / bare fixed-JSON app (req/s)", HIT, BARE, 0.25),
    ("full stack forwarded and stored, semantic off / bare aiohttp proxy", STORED, PROXY, 0.40),
    ("full stack unique questions / bare aiohttp proxy", UNIQUE_Q, PROXY, 0.20),
    ("router alone / bare aiohttp proxy", ROUTER, PROXY, 0.60),
)


def ratios(by: dict[str, LoadResult]) -> list[tuple[str, float, str, bool]]:
    """(what, value, target, met) for issue 21's "done when" ratios, of the targets' medians."""
    hit = by[HIT.name]
    items = [
        (what, by[target.name].requests_per_s / by[limit.name].requests_per_s, least)
        for what, target, limit, least in RATIOS
    ]
    out = [(what, value, f">= {target:.0%}", value >= target) for what, value, target in items]
    tail = hit.p99_ms / hit.p50_ms if hit.p50_ms else float("inf")
    out.append(("full stack exact hit p99 / its p50", tail, "<= 5x", tail <= 5))
    return out


def round_ratios(samples: dict[str, list[LoadResult]]) -> dict[str, list[float]]:
    """Each throughput ratio in each round: the target against its limit measured in the same round, a
    few seconds apart, so that a slow minute of a shared host weighs on both."""
    return {
        what: [t.requests_per_s / max(b.requests_per_s, 1e-9) for t, b in zip(mine, theirs, strict=False)]
        for what, target, limit, _ in RATIOS
        if (mine := samples.get(target.name)) and (theirs := samples.get(limit.name))
    }


def table(
    targets: list[Target],
    results: list[LoadResult],
    rounds: int,
    seconds: float,
    concurrency: int,
    redis_us: dict[str, float],
    per_round: dict[str, list[float]] | None = None,
) -> str:
    by = {r.name: r for r in results}
    lines = [
        f"One uvicorn worker per target, wrk with {concurrency} connections, {seconds:g} s per target and round,",
        f"medians of {rounds} interleaved rounds; the upstream is FakeProvider answering at once. Full stack:",
        "tenant (header) + budget (Redis) + regex-only redaction + cache (Redis exact + Qdrant Edge semantic)",
        "+ request log (chDB).",
        "",
        "| target | req/s | p50 ms | p99 ms | server CPU µs/req | Redis CPU µs/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    layer_heading = False
    for target in targets:
        if target.group == "layer" and not layer_heading:
            layer_heading = True
            lines.append("| *one layer in front of the router:* | | | | | | |")
        r = by[target.name]
        lines.append(
            f"| {r.name} | {r.requests_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.cpu_us_per_request or 0:,.0f} | {redis_us.get(r.name, 0.0):,.1f} | {r.errors} |"
        )
    if any(t.name not in by for t in (BARE, PROXY, ROUTER, HIT, STORED, UNIQUE_Q)):
        return "\n".join(lines)
    per_round = per_round or {}
    lines += [
        "",
        "| ratio (issue 21's targets) | measured | target | met | each round (median, lowest-highest) |",
        "|---|---:|---|---|---|",
    ]
    for what, value, target, met in ratios(by):
        shown = f"{value:.1f}x" if target.endswith("x") else f"{value:.0%}"
        values = per_round.get(what)
        spread = f"{statistics.median(values):.0%} ({min(values):.0%}-{max(values):.0%})" if values else ""
        lines.append(f"| {what} | {shown} | {target} | {'yes' if met else 'no'} | {spread} |")
    lines += [
        "",
        "*measured*: the ratio of the two targets' medians, which *met* is decided on. *Each round*: the",
        "ratio of the two in the same round; it moves less with a host whose speed changes from minute to",
        "minute.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--only", nargs="+", help="targets whose name contains one of these (and the limits)")
    args = parser.parse_args()
    require_wrk()
    targets = [
        t for t in TARGETS if not args.only or t.group == "limit" or any(w in t.name for w in args.only)
    ]
    prefix = f"aigw-bench-{uuid.uuid4().hex[:8]}:"
    data_dir = Path(tempfile.mkdtemp(prefix="aigw-bench-stack-"))
    samples: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    #: The Redis server's CPU per request of each target and round, in µs.
    redis_samples: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        with contextlib.ExitStack() as stack:
            fake = stack.enter_context(uvicorn_process("asgi_aigw.testing.fake_provider:app"))
            env = {
                "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
                "BENCH_REDIS": args.redis,
                "BENCH_KEY_PREFIX": prefix,
                "BENCH_DATA_DIR": str(data_dir),
            }
            servers: dict[str, tuple[Server, str]] = {}
            for t in targets:
                if t.baseline:
                    server = stack.enter_context(uvicorn_process(t.app, env=env))
                    path = "/v1/chat/completions"
                else:
                    server = stack.enter_context(
                        uvicorn_process("_stack_apps:stack", factory=True, env={**env, "BENCH_STACK": t.app})
                    )
                    path = "/ai/v1/chat/completions"
                check_answers(f"{server}{path}", BODY, {"x-tenant-id": "bench"})
                servers[t.name] = (server, path)
            for round_no in range(args.rounds):
                for t in targets:
                    server, path = servers[t.name]
                    script = t.script.replace("RUN", f'"r{round_no}{uuid.uuid4().hex[:6]} "')
                    redis_before = redis_cpu_seconds(args.redis)
                    result = wrk(
                        t.name,
                        f"{server}{path}",
                        BODY,
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                        # every round: a target waits its turn for tens of seconds, and a chDB log
                        # lets go of its engine after 1 s idle (docs/logging.md): the reopening is a
                        # cost of the pause, not of the requests this round measures
                        warmup=1.0,
                        pid=server.pid,
                        lua=script,
                    )
                    # the warm-up's second is in it too: its requests are counted at the run's rate
                    served = result.requests_per_s * (args.seconds + 1.0)
                    redis_cost = (redis_cpu_seconds(args.redis) - redis_before) / max(served, 1.0) * 1e6
                    redis_samples[t.name].append(redis_cost)
                    print(
                        f"  r{round_no} {t.name:60} {result.requests_per_s:8.0f} req/s  p50 {result.p50_ms:7.2f}"
                        f"  p99 {result.p99_ms:7.2f} ms  cpu {result.cpu_us_per_request or 0:6.0f} us/req"
                        f"  redis {redis_cost:5.1f} us/req  errors {result.errors}",
                        file=sys.stderr,
                        flush=True,
                    )
                    samples[t.name].append(result)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        delete_keys(args.redis, prefix)
    results = [median_result(s) for s in samples.values()]
    redis_us = {name: statistics.median(values) for name, values in redis_samples.items() if values}
    per_round = round_ratios(samples)
    report = table(targets, results, args.rounds, args.seconds, args.concurrency, redis_us, per_round)
    by = {r.name: r for r in results}
    checks = (
        [
            {"what": w, "measured": v, "target": t, "met": m, "each_round": per_round.get(w)}
            for w, v, t, m in ratios(by)
        ]
        if all(t.name in by for t in (BARE, PROXY, ROUTER, HIT, STORED, UNIQUE_Q))
        else []
    )
    data = {
        "concurrency": args.concurrency,
        "targets": results,
        "redis_cpu_us_per_request": redis_us,
        "ratios": checks,
    }
    write_results("stack", "The whole gateway against the bare limits", report, data)


if __name__ == "__main__":
    main()
