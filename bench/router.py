"""Router pass-through overhead: the gateway in front of FakeProvider vs calling it directly, vs bare
proxies (httpx and aiohttp clients) and a bare ASGI app returning fixed JSON, all in the same run.

    python bench/router.py [--seconds 8] [--concurrency 1 32]

Every server is a uvicorn process (uvloop, httptools, one worker) on 127.0.0.1; the load comes from wrk.
Besides throughput and latency, each server's own CPU time per request is read from /proc: it is the
figure least disturbed by other load on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    LoadResult,
    Server,
    check_answers,
    load_table,
    require_wrk,
    uvicorn_process,
    write_results,
    wrk,
)

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}'
BASELINES = {
    "bare ASGI app, fixed JSON": ("_baselines:fixed_json", False),
    "bare proxy, httpx": ("_baselines:httpx_proxy", False),
    "bare proxy, aiohttp": ("_baselines:aiohttp_proxy", False),
    "router, httpx transport": ("_baselines:gateway_httpx", True),
    "router, aiohttp transport": ("_baselines:gateway_aiohttp", True),
    "router, lean transport": ("_baselines:gateway_lean", True),
}


def _table(results: list[LoadResult], concurrency_levels: list[int]) -> str:
    lines = load_table(results)
    by = {(r.name, r.concurrency): r for r in results}
    lines += ["", "| ratio | value |", "|---|---|"]
    for c in concurrency_levels:
        direct, proxy = by[("FakeProvider direct", c)], by[("bare proxy, aiohttp", c)]
        for transport in ("lean", "aiohttp", "httpx"):
            router = by[(f"router, {transport} transport", c)]
            lines.append(
                f"| c={c} router ({transport}) p50 overhead vs direct | {router.p50_ms - direct.p50_ms:+.3f} ms |"
            )
            lines.append(
                f"| c={c} router ({transport}) throughput / bare aiohttp proxy | "
                f"{router.requests_per_s / proxy.requests_per_s:.0%} |"
            )
            lines.append(
                f"| c={c} router ({transport}) CPU per request / bare aiohttp proxy | "
                f"{(router.cpu_us_per_request or 0) / (proxy.cpu_us_per_request or 1):.2f}x |"
            )
        httpx_proxy = by[("bare proxy, httpx", c)]
        lines.append(
            f"| c={c} bare httpx proxy throughput / bare aiohttp proxy | "
            f"{httpx_proxy.requests_per_s / proxy.requests_per_s:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    require_wrk()

    results: list[LoadResult] = []
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(uvicorn_process("asgi_aigw.testing.fake_provider:app"))
        upstream = {"BENCH_UPSTREAM": f"{fake}/v1/chat/completions"}
        servers: dict[str, Server] = {"FakeProvider direct": fake}
        for name, (target, factory) in BASELINES.items():
            servers[name] = stack.enter_context(uvicorn_process(target, factory=factory, env=upstream))
        urls = {
            name: f"{server}/ai/v1/chat/completions"
            if name.startswith("router")
            else f"{server}/v1/chat/completions"
            for name, server in servers.items()
        }
        for url in urls.values():
            check_answers(url, BODY)
        for c in args.concurrency:
            for name, url in urls.items():
                result = wrk(name, url, BODY, concurrency=c, seconds=args.seconds, pid=servers[name].pid)
                print(
                    f"  {name:28} c={c:<3} {result.requests_per_s:9.0f} req/s  p50 {result.p50_ms:7.3f} ms"
                    f"  p99 {result.p99_ms:8.3f} ms  cpu {result.cpu_us_per_request or 0:6.0f} us/req"
                    f"  errors {result.errors}",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(result)
    write_results("router", "Router pass-through", _table(results, args.concurrency), results)


if __name__ == "__main__":
    main()
