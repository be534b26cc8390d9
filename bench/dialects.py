"""What each dialect costs through the router: chat, Anthropic Messages and OpenAI Responses, each
passed through to the provider that speaks it and translated to one that does not, against FakeProvider
answering the same format directly, all in the same run.

    python bench/dialects.py [--seconds 6] [--concurrency 32]

Every server is a uvicorn process (uvloop, httptools, one worker) on 127.0.0.1; the load comes from wrk.
The router's own CPU time per request is read from /proc (the figure least disturbed by other load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import LoadResult, check_answers, load_table, require_wrk, uvicorn_process, write_results, wrk

PROMPT = "Hello, how are you today?"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


def _chat(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}]}).encode()


def _messages(model: str) -> bytes:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
    return json.dumps(body).encode()


def _responses(model: str) -> bytes:
    return json.dumps({"model": model, "input": PROMPT, "max_output_tokens": 64}).encode()


#: name: (path, body, headers, the FakeProvider-direct reference it is compared with)
CASES: dict[str, tuple[str, bytes, dict[str, str], str]] = {
    "chat -> openai": ("/v1/chat/completions", _chat("gpt-4o-mini"), {}, "direct chat"),
    "chat -> anthropic (translated)": ("/v1/chat/completions", _chat("claude-sonnet-4-5"), {}, "direct chat"),
    "messages -> anthropic (passthrough)": (
        "/v1/messages",
        _messages("claude-sonnet-4-5"),
        ANTHROPIC_HEADERS,
        "direct messages",
    ),
    "messages -> openai (translated)": (
        "/v1/messages",
        _messages("gpt-4o-mini"),
        ANTHROPIC_HEADERS,
        "direct messages",
    ),
    "responses -> openai (passthrough)": ("/v1/responses", _responses("gpt-4o-mini"), {}, "direct responses"),
    "responses -> anthropic (translated)": (
        "/v1/responses",
        _responses("claude-sonnet-4-5"),
        {},
        "direct responses",
    ),
}
DIRECT: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "direct chat": ("/v1/chat/completions", _chat("gpt-4o-mini"), {}),
    "direct messages": ("/v1/messages", _messages("claude-sonnet-4-5"), ANTHROPIC_HEADERS),
    "direct responses": ("/v1/responses", _responses("gpt-4o-mini"), {}),
}


def _lua(body: bytes, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    lines.append("wrk.body = " + json.dumps(body.decode()))
    return "\n".join(lines) + "\n"


def _table(results: list[LoadResult], concurrency: list[int]) -> str:
    lines = load_table(results)
    by = {(r.name, r.concurrency): r for r in results}
    lines += ["", "| ratio | value |", "|---|---|"]
    chat = {c: by[("chat -> openai", c)] for c in concurrency}
    for c in concurrency:
        for name, (*_, reference) in CASES.items():
            result = by[(name, c)]
            lines.append(
                f"| c={c} {name}: throughput / {reference} | "
                f"{result.requests_per_s / by[(reference, c)].requests_per_s:.0%} |"
            )
            lines.append(
                f"| c={c} {name}: router CPU per request / chat -> openai | "
                f"{(result.cpu_us_per_request or 0) / (chat[c].cpu_us_per_request or 1):.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32])
    args = parser.parse_args()
    require_wrk()

    results: list[LoadResult] = []
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(uvicorn_process("asgi_aigw.testing.fake_provider:app"))
        router = stack.enter_context(
            uvicorn_process(
                "_baselines:gateway_dialects",
                factory=True,
                env={"BENCH_UPSTREAM": f"{fake}/v1/chat/completions"},
            )
        )
        runs = {
            name: (f"{fake}{path}", body, headers, fake.pid) for name, (path, body, headers) in DIRECT.items()
        }
        runs |= {
            name: (f"{router}/ai{path}", body, headers, router.pid)
            for name, (path, body, headers, _) in CASES.items()
        }
        for url, body, headers, _ in runs.values():
            check_answers(url, body, headers)
        for c in args.concurrency:
            for name, (url, body, headers, pid) in runs.items():
                result = wrk(
                    name, url, body, concurrency=c, seconds=args.seconds, pid=pid, lua=_lua(body, headers)
                )
                print(
                    f"  {name:38} c={c:<3} {result.requests_per_s:8.0f} req/s  p50 {result.p50_ms:7.3f} ms"
                    f"  p99 {result.p99_ms:8.3f} ms  cpu {result.cpu_us_per_request or 0:6.0f} us/req"
                    f"  errors {result.errors}",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(result)
    write_results("dialects", "Dialects through the router", _table(results, args.concurrency), results)


if __name__ == "__main__":
    main()
