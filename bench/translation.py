"""Translation overhead per request: each provider adapter against the OpenAI pass-through, in process.

    python bench/translation.py [--rounds 3000]

For every adapter one request costs: building the native request from the (already validated) OpenAI
request, then translating the native answer back, either a JSON answer or a stream of ~60 pieces fed
chunk by chunk. The router's own work (validation, I/O) is the same for every provider and is left out,
so the difference to the OpenAI adapter is exactly what translation adds. Target: under 0.2 ms p50.

Each sample is timed by the wall clock and by the CPU time of this thread: the second leaves out the time
the machine spends on other work, so it is the figure to compare on a shared machine. The requests and
native streams are built with the golden tests' helpers (``tests/golden.py``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import write_results

from asgi_aigw.kernel.models import ChatCompletionRequest
from asgi_aigw.providers import ADAPTERS, Deployment, ProviderAdapter
from tests.golden import TOOL_ROUND_TRIP, anthropic_sse, gemini_sse, ndjson, openai_sse

WORDS = ("The quick brown fox jumps over the lazy dog while the gateway translates every piece " * 4).split()
ANSWER = " ".join(WORDS)
PIECES = [w if i == 0 else " " + w for i, w in enumerate(WORDS)]

#: A typical request: a system prompt, a tool offered, called and its result sent back.
REQUEST: dict[str, Any] = {**TOOL_ROUND_TRIP, "max_tokens": 512, "temperature": 0.3}

USAGE = {"prompt_tokens": 58, "completion_tokens": len(PIECES), "total_tokens": 58 + len(PIECES)}


def openai_native() -> tuple[bytes, bytes]:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip

    stream = openai_sse(
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": p}) for p in PIECES),
        chunk({}, "stop"),
        {"id": "chatcmpl-1", "choices": [], "usage": USAGE},
    )
    return orjson.dumps(answer), stream


def anthropic_native() -> tuple[bytes, bytes]:
    usage = {"input_tokens": 58, "output_tokens": len(PIECES)}
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": ANSWER}],
              "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}  # fmt: skip
    stream = anthropic_sse(
        {"type": "message_start", "message": {**answer, "content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in PIECES
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": len(PIECES)},
        },
        {"type": "message_stop"},
    )
    return orjson.dumps(answer), stream


def gemini_native() -> tuple[bytes, bytes]:
    usage = {"promptTokenCount": 58, "candidatesTokenCount": len(PIECES), "totalTokenCount": 58 + len(PIECES)}

    def response(text: str, finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini",
            "responseId": "r1",
        }

    last = len(PIECES) - 1
    stream = gemini_sse(*(response(p, "STOP" if i == last else None) for i, p in enumerate(PIECES)))
    return orjson.dumps(response(ANSWER, "STOP")), stream


def ollama_native() -> tuple[bytes, bytes]:
    final = {"model": "llama", "created_at": "2024-01-01T00:00:00Z", "message": {"role": "assistant", "content": ANSWER},
             "done_reason": "stop", "done": True, "prompt_eval_count": 58, "eval_count": len(PIECES)}  # fmt: skip
    stream = ndjson(
        *(
            {
                "model": "llama",
                "created_at": "2024-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": p},
                "done": False,
            }
            for p in PIECES
        ),
        {**final, "message": {"role": "assistant", "content": ""}},
    )
    return orjson.dumps(final), stream


NATIVE: dict[str, Callable[[], tuple[bytes, bytes]]] = {
    "openai": openai_native,
    "anthropic": anthropic_native,
    "gemini": gemini_native,
    "ollama": ollama_native,
}


def split_chunks(stream: bytes, size: int = 256) -> list[bytes]:
    """Network-like chunks: events straddle chunk boundaries, as they do on a real socket."""
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@dataclass
class Row:
    provider: str
    case: str
    p50_us: float
    p99_us: float
    #: CPU time of this thread: what the work itself costs, whatever else runs on the machine.
    cpu_p50_us: float
    over_openai_p50_us: float = 0.0
    over_openai_cpu_p50_us: float = 0.0


def measure(rounds: int) -> list[Row]:
    """Every case once per round, in turn, so load from elsewhere on the machine hits them all alike."""
    request = ChatCompletionRequest.model_validate(REQUEST)
    cases: list[tuple[str, str, Callable[[], None]]] = []
    for provider, native in NATIVE.items():
        adapter: ProviderAdapter = ADAPTERS[provider]
        deployment = Deployment(
            id=provider,
            provider=provider,
            model="bench-model",
            base_url="http://upstream.test/v1",
            api_key="sk-bench-key",
        )
        answer, stream = native()
        chunks = split_chunks(stream)

        def json_request(
            adapter: ProviderAdapter = adapter, deployment: Deployment = deployment, answer: bytes = answer
        ) -> None:
            adapter.chat_request(deployment, request, REQUEST, stream=False)
            adapter.chat_response(deployment, request, answer)

        def stream_request(
            adapter: ProviderAdapter = adapter,
            deployment: Deployment = deployment,
            chunks: list[bytes] = chunks,
        ) -> None:
            adapter.chat_request(deployment, request, REQUEST, stream=True)
            translator = adapter.chat_stream(deployment, request, include_usage=True)
            for piece in chunks:
                translator.feed(piece)
            translator.close()
            assert translator.done

        cases.append((provider, "JSON answer", json_request))
        cases.append((provider, f"stream, {len(PIECES)} pieces", stream_request))

    for _, _, run in cases:  # warm-up
        for _ in range(100):
            run()
    wall: dict[tuple[str, str], list[int]] = {(p, c): [] for p, c, _ in cases}
    cpu: dict[tuple[str, str], list[int]] = {(p, c): [] for p, c, _ in cases}
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    gc.disable()
    try:
        for _ in range(rounds):
            for provider, case, run in cases:
                start, cpu_start = clock(), cpu_clock()
                run()
                cpu_end, end = cpu_clock(), clock()
                wall[(provider, case)].append(end - start)
                cpu[(provider, case)].append(cpu_end - cpu_start)
    finally:
        gc.enable()
    rows = []
    for key, values in wall.items():
        values.sort()
        rows.append(
            Row(
                *key,
                p50_us=statistics.median(values) / 1000,
                p99_us=values[int(len(values) * 0.99)] / 1000,
                cpu_p50_us=statistics.median(cpu[key]) / 1000,
            )
        )
    baseline = {row.case: row for row in rows if row.provider == "openai"}
    for row in rows:
        row.over_openai_p50_us = row.p50_us - baseline[row.case].p50_us
        row.over_openai_cpu_p50_us = row.cpu_p50_us - baseline[row.case].cpu_p50_us
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    rows = measure(args.rounds)
    lines = [
        "| provider | request | p50 µs | p99 µs | over OpenAI, p50 µs | CPU p50 µs | over OpenAI, CPU p50 µs |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.provider} | {r.case} | {r.p50_us:.1f} | {r.p99_us:.1f} | {r.over_openai_p50_us:+.1f} "
        f"| {r.cpu_p50_us:.1f} | {r.over_openai_cpu_p50_us:+.1f} |"
        for r in rows
    ]
    worst = max(r.over_openai_p50_us for r in rows)
    worst_cpu = max(r.over_openai_cpu_p50_us for r in rows)
    per_event = max(r.over_openai_cpu_p50_us for r in rows if r.case.startswith("stream")) / len(PIECES)
    load = os.getloadavg()[0]
    lines += [
        "",
        f"Largest translation overhead over the OpenAI pass-through, p50 per request: {worst_cpu:.1f} µs "
        f"of CPU time, {worst:.1f} µs wall-clock (target: under 200 µs); streams: {per_event:.2f} µs "
        "of CPU time per streamed piece.",
        f"{args.rounds} rounds, cases interleaved; load average at the end: {load:.2f}. CPU time "
        "(this thread's) is what the translation itself costs; wall-clock also holds time the "
        "machine spent elsewhere.",
    ]
    write_results("translation", "Translation overhead per request", "\n".join(lines), rows)


if __name__ == "__main__":
    main()
