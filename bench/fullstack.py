"""Latency against concurrency for the main paths, with their baselines, all in one run.

    python bench/fullstack.py [--seconds 4] [--concurrency 1 4 16 64] [--redis redis://127.0.0.1:6379/0]

Targets, each one uvicorn process (uvloop, httptools, one worker) on 127.0.0.1, loaded by wrk:

- baselines: FakeProvider called directly; a bare ASGI app returning fixed JSON; a bare aiohttp proxy
  in front of FakeProvider (one shared session, no parsing);
- router pass-through: ProviderRouter mounted at /ai in front of FakeProvider;
- full stack pass-through: tenant (header) + budget (Redis) + regex-only redaction + exact cache (Redis)
  in front of the router, every request a new body, so every request is a cache miss that goes
  upstream, is metered, scanned and stored;
- exact cache hit: the cache in front of the router, the same body every time (all hits).

Then, in process (no HTTP, no load generator), where the full stack's CPU goes: the router alone, then
each layer added on top of it, CPU time per request (this process, its threads included) for the same
kind of new-body requests, in interleaved rounds.

Writes bench/results/fullstack.{md,json}; ``--plot PNG`` also draws p50 latency against concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    RESULTS,
    LoadResult,
    Server,
    check_answers,
    delete_keys,
    load_table,
    require_wrk,
    unique_bodies_lua,
    uvicorn_process,
    write_results,
    wrk,
)

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}'
DIRECT, BARE, PROXY = "FakeProvider direct", "bare ASGI app, fixed JSON", "bare proxy, aiohttp"
ROUTER, FULL, HIT = "router pass-through", "full stack pass-through", "exact cache hit"
#: Measured on this kind of machine when the project started (LiteLLM proxy, one worker): not part of
#: this run, quoted for DESIGN.md's "30x LiteLLM proxy" budget.
LITELLM_RPS = 37.0

#: Every request a new body (letters only, so no PII pattern fires), from each wrk thread's own counter.
UNIQUE_BODIES = unique_bodies_lua("Hello, how are you today? ", '"RUN"')


def _table(results: list[LoadResult], levels: list[int], layers: str) -> str:
    lines = [f"Full stack here: {layers}.", "", *load_table(results)]
    by = {(r.name, r.concurrency): r for r in results}
    lines += ["", "| ratio | value |", "|---|---|"]
    for c in levels:
        direct, proxy, bare = by[(DIRECT, c)], by[(PROXY, c)], by[(BARE, c)]
        router, full, hit = by[(ROUTER, c)], by[(FULL, c)], by[(HIT, c)]
        lines += [
            f"| c={c} router p50 over direct | {router.p50_ms - direct.p50_ms:+.3f} ms |",
            f"| c={c} full stack p50 over direct | {full.p50_ms - direct.p50_ms:+.3f} ms |",
            f"| c={c} router throughput / bare aiohttp proxy | {router.requests_per_s / proxy.requests_per_s:.0%} |",
            f"| c={c} full stack throughput / bare aiohttp proxy | {full.requests_per_s / proxy.requests_per_s:.0%} |",
            f"| c={c} full stack throughput / LiteLLM proxy's {LITELLM_RPS:.0f} req/s (earlier measurement) | "
            f"{full.requests_per_s / LITELLM_RPS:.0f}x |",
            f"| c={c} exact hit throughput / bare ASGI app | {hit.requests_per_s / bare.requests_per_s:.0%} |",
            f"| c={c} full stack CPU per request / router's | "
            f"{(full.cpu_us_per_request or 0) / (router.cpu_us_per_request or 1):.2f}x |",
        ]
    return "\n".join(lines)


#: The layers added one by one on top of the router, for the in-process breakdown (cumulative).
LADDER = (
    ("router alone", ()),
    ("+ redaction (regex-only)", ("redact",)),
    ("+ exact cache (Redis, miss and store)", ("redact", "cache")),
    ("+ budget (Redis)", ("redact", "cache", "budget")),
    ("+ tenant = full stack", ("redact", "cache", "budget", "tenant")),
)


async def _ladder_round(apps: dict[str, Any], requests: int, round_no: int, nonce: str) -> dict[str, float]:
    import httpx

    cpu: dict[str, float] = {}
    for label, app in apps.items():
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            gc.collect()
            start = time.process_time()
            for i in range(requests):
                # new every time (a miss), even against answers cached by an earlier call
                question = f"Hello, how are you today? {nonce} round {round_no} {label} number {i}"
                response = await client.post(
                    "/ai/v1/chat/completions",
                    headers={"x-tenant-id": "bench"},
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]},
                )
                assert response.status_code == 200, response.text
            # work a layer leaves for after the answer (cache store, budget settle) counts for it, not
            # for the next stack measured: let it finish inside this window (idle time costs no CPU)
            await asyncio.sleep(0.3)
            cpu[label] = (time.process_time() - start) / requests * 1e6
    return cpu


def ladder(redis: str, prefix: str, requests: int, rounds: int) -> list[dict[str, Any]]:
    """CPU per request in process for the router and each layer added on top of it (medians of rounds)."""
    from _fullstack_apps import full_stack_config

    from asgi_aigw import build_app
    from asgi_aigw.testing import FakeProvider, StreamingASGITransport

    url = "http://fake.invalid/v1"
    full = full_stack_config(f"{url}/chat/completions", redis, prefix)
    apps = {}
    for label, keep in LADDER:
        drop = {
            k: None
            for k in ("redact", "cache", "budget", "tenant")
            if k not in keep and k in type(full).model_fields
        }
        config = full.model_copy(update=drop)
        apps[label] = build_app(config, transports={url: StreamingASGITransport(FakeProvider())}, env={})

    async def measure() -> list[dict[str, float]]:
        # letters only, like the HTTP run's bodies: digits would give the PII patterns work to do
        nonce = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:12])
        await _ladder_round(apps, 30, -1, nonce)  # warm-up: connections, compiled patterns, tokenizer
        return [await _ladder_round(apps, requests, r, nonce) for r in range(rounds)]

    samples = asyncio.run(measure())
    rows = []
    previous = None
    for label, _ in LADDER:
        value = statistics.median(sample[label] for sample in samples)
        rows.append(
            {"stack": label, "cpu_us": value, "added_us": None if previous is None else value - previous}
        )
        previous = value
    return rows


def _ladder_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "",
        "Where the full stack's CPU goes (in process, CPU µs per request including the in-process fake",
        "provider and client, medians of interleaved rounds):",
        "",
        "| stack | CPU µs/req | added by the layer |",
        "|---|---|---|",
    ]
    for r in rows:
        added = "" if r["added_us"] is None else f"{r['added_us']:+,.0f}"
        lines.append(f"| {r['stack']} | {r['cpu_us']:,.0f} | {added} |")
    return "\n".join(lines)


def plot(json_path: Path, png: Path) -> None:
    """p50 latency against concurrency, one line per target, log-log (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    payload = json.loads(json_path.read_text())
    series: dict[str, list[tuple[int, float]]] = {}
    for row in payload["results"]:
        series.setdefault(row["name"], []).append((row["concurrency"], row["p50_ms"]))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = {DIRECT: ":", BARE: ":", PROXY: "--"}
    for name, points in series.items():
        points.sort()
        ax.plot(
            [c for c, _ in points], [ms for _, ms in points], styles.get(name, "-"), marker="o", label=name
        )
    ax.set_xscale("log", base=2)
    levels = sorted({c for points in series.values() for c, _ in points})
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_yscale("log")
    ax.set_xlabel("concurrent connections (wrk)")
    ax.set_ylabel("p50 latency, ms (log)")
    ax.set_title(
        f"p50 latency against concurrency: one uvicorn worker\n{payload['machine']}, {payload['date']}"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    print(f"plot: {png}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--plot", type=Path, help="also draw p50 latency against concurrency to this PNG")
    parser.add_argument(
        "--plot-only", action="store_true", help="draw from the last results, measure nothing"
    )
    parser.add_argument(
        "--ladder-requests", type=int, default=60, help="in process: requests per stack, round"
    )
    parser.add_argument("--ladder-rounds", type=int, default=15, help="in process: interleaved rounds")
    args = parser.parse_args()
    if args.plot_only:
        plot(RESULTS / "fullstack.json", args.plot or Path("latency.png"))
        return
    require_wrk()
    from _fullstack_apps import layers

    # keys of this run only, so nothing collides with other users of the same Redis
    prefix = f"aigw-bench-{uuid.uuid4().hex[:8]}:"
    results: list[LoadResult] = []
    try:
        with contextlib.ExitStack() as stack:
            fake = stack.enter_context(uvicorn_process("asgi_aigw.testing.fake_provider:app"))
            env = {
                "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
                "BENCH_REDIS": args.redis,
                "BENCH_KEY_PREFIX": prefix,
            }
            servers: dict[str, tuple[Server, str, str | None]] = {
                DIRECT: (fake, "/v1/chat/completions", None)
            }
            for name, target, factory, path, lua in (
                (BARE, "_baselines:fixed_json", False, "/v1/chat/completions", None),
                (PROXY, "_baselines:aiohttp_proxy", False, "/v1/chat/completions", None),
                (ROUTER, "_baselines:gateway_aiohttp", True, "/ai/v1/chat/completions", None),
                (FULL, "_fullstack_apps:full_stack", True, "/ai/v1/chat/completions", UNIQUE_BODIES),
                (HIT, "_cache_apps:exact_hit_gateway", True, "/v1/chat/completions", None),
            ):
                server = stack.enter_context(uvicorn_process(target, factory=factory, env=env))
                servers[name] = (server, path, lua)
            for server, path, _ in servers.values():
                check_answers(f"{server}{path}", BODY, {"x-tenant-id": "bench"})
            for c in args.concurrency:
                for name, (server, path, lua) in servers.items():
                    result = wrk(
                        name,
                        f"{server}{path}",
                        BODY,
                        concurrency=c,
                        seconds=args.seconds,
                        pid=server.pid,
                        lua=lua,
                    )
                    print(
                        f"  {name:26} c={c:<3} {result.requests_per_s:9.0f} req/s  p50 {result.p50_ms:8.3f} ms"
                        f"  p99 {result.p99_ms:8.3f} ms  cpu {result.cpu_us_per_request or 0:6.0f} us/req"
                        f"  errors {result.errors}",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.append(result)
        breakdown = ladder(args.redis, prefix, args.ladder_requests, args.ladder_rounds)
    finally:
        delete_keys(args.redis, prefix)
    table = _table(results, args.concurrency, layers()) + "\n" + _ladder_table(breakdown)
    write_results("fullstack", "Latency against concurrency", table, results)
    # the breakdown has its own file: fullstack.json's results stay the wrk rows the plot reads
    (RESULTS / "fullstack_breakdown.json").write_text(
        json.dumps(breakdown, indent=2) + "\n", encoding="utf-8"
    )
    if args.plot:
        plot(RESULTS / "fullstack.json", args.plot)


if __name__ == "__main__":
    main()
