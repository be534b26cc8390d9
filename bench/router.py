"""Router pass-through overhead: the gateway in front of FakeProvider vs calling it directly, vs bare
proxies (httpx and aiohttp clients) and a bare ASGI app returning fixed JSON, all in the same run.

    python bench/router.py [--seconds 8]

Every server is a uvicorn process (uvloop, httptools, one worker) on 127.0.0.1; the load comes from wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import LoadResult, check_answers, require_wrk, uvicorn_process, write_results, wrk

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}'


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
        targets = {
            "FakeProvider direct": f"{fake}/v1/chat/completions",
            "bare ASGI app, fixed JSON": stack.enter_context(
                uvicorn_process("_baselines:fixed_json", env=upstream)
            ),
            "bare proxy, httpx": stack.enter_context(uvicorn_process("_baselines:httpx_proxy", env=upstream)),
            "bare proxy, aiohttp": stack.enter_context(
                uvicorn_process("_baselines:aiohttp_proxy", env=upstream)
            ),
            "router, httpx transport": stack.enter_context(
                uvicorn_process("_baselines:gateway_httpx", factory=True, env=upstream)
            ),
            "router, aiohttp transport": stack.enter_context(
                uvicorn_process("_baselines:gateway_aiohttp", factory=True, env=upstream)
            ),
        }
        urls = {
            name: url
            if name == "FakeProvider direct" or not name.startswith("router")
            else f"{url}/ai/v1/chat/completions"
            for name, url in targets.items()
        }
        urls = {
            name: (url if url.endswith("/completions") else f"{url}/v1/chat/completions")
            for name, url in urls.items()
        }
        for url in urls.values():
            check_answers(url, BODY)
        for concurrency in args.concurrency:
            for name, url in urls.items():
                result = wrk(name, url, BODY, concurrency=concurrency, seconds=args.seconds)
                print(
                    f"  {name:28} c={concurrency:<3} {result.requests_per_s:9.0f} req/s  p50 {result.p50_ms:7.3f} ms"
                    f"  p99 {result.p99_ms:7.3f} ms  errors {result.errors}",
                    file=sys.stderr,
                )
                results.append(result)

    lines = ["| target | concurrency | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r.name} | {r.concurrency} | {r.requests_per_s:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.errors} |"
        for r in results
    ]
    by = {(r.name, r.concurrency): r for r in results}
    ratios = ["", "| ratio | value |", "|---|---|"]
    for concurrency in args.concurrency:
        direct = by[("FakeProvider direct", concurrency)]
        for transport in ("aiohttp", "httpx"):
            router = by[(f"router, {transport} transport", concurrency)]
            ratios.append(
                f"| c={concurrency} router ({transport}) p50 overhead vs direct | "
                f"{router.p50_ms - direct.p50_ms:+.3f} ms |"
            )
            ratios.append(
                f"| c={concurrency} router ({transport}) throughput / bare aiohttp proxy | "
                f"{router.requests_per_s / by[('bare proxy, aiohttp', concurrency)].requests_per_s:.0%} |"
            )
        ratios.append(
            f"| c={concurrency} bare httpx proxy throughput / bare aiohttp proxy | "
            f"{by[('bare proxy, httpx', concurrency)].requests_per_s / by[('bare proxy, aiohttp', concurrency)].requests_per_s:.0%} |"
        )
    write_results("router", "Router pass-through", "\n".join(lines + ratios), results)


if __name__ == "__main__":
    main()
