"""Benchmark of the offline runtime: token counting, embeddings, PII analysis. Prints a Markdown table.

    python bench/runtime.py [--quick]

Each figure comes with a baseline measured in the same run (the raw library call), so the ratio says
what the runtime's own layer costs whatever the machine. Uses the installed offline assets only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asgi_aigw.runtime import RuntimeConfig, count_chat_tokens, count_text_tokens
from asgi_aigw.runtime.config import AnalyzerSettings
from asgi_aigw.runtime.embedder import FastEmbedEmbedder, OpenAIEmbedder
from asgi_aigw.runtime.pii import create_analyzer
from asgi_aigw.runtime.tokens import get_encoding
from asgi_aigw.testing import FakeProvider, serve

PARAGRAPH = (
    "Our support team received a message from a customer who could not log in after changing the "
    "e-mail address on the account. They tried the reset link twice, waited ten minutes, and then "
    "wrote again asking whether the account had been locked for security reasons. "
)
TEXT_4K = (PARAGRAPH * 20)[:4096]
PROMPT_300 = (
    "Hello, my name is Maria Garcia and I need help with order 4471. You can reach me at "
    "maria.garcia@example.com or on (415) 555-0132. I moved to 12 Baker Street, Springfield last month, "
    "so please update the delivery address before the parcel leaves the warehouse. Thanks a lot!"
)[:300]
PROMPT_3K = ((PROMPT_300 + " ") + (PARAGRAPH * 12))[:3072]
CHAT = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a helpful support assistant."},
        *[{"role": "user" if i % 2 == 0 else "assistant", "content": PARAGRAPH} for i in range(9)],
    ],
}


def timeit(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench_tokens(rows: list[tuple[str, str, str, str]], repeat: int) -> None:
    encoding = get_encoding("o200k_base")
    n_tokens = len(encoding.encode_ordinary(TEXT_4K))
    raw = timeit(lambda: encoding.encode_ordinary(TEXT_4K), repeat)
    ours = timeit(lambda: count_text_tokens(TEXT_4K, "gpt-4o"), repeat)
    rows.append(
        (
            "count_text_tokens, 4 KB English (gpt-4o)",
            f"{n_tokens / statistics.median(ours):,.0f} tokens/s, p50 {p50_ms(ours):.3f} ms",
            f"tiktoken encode: {n_tokens / statistics.median(raw):,.0f} tokens/s",
            f"{statistics.median(ours) / statistics.median(raw):.2f}x",
        )
    )
    chat_tokens = count_chat_tokens(CHAT)
    chat = timeit(lambda: count_chat_tokens(CHAT), repeat)
    raw_chat = timeit(lambda: [encoding.encode_ordinary(m["content"]) for m in CHAT["messages"]], repeat)
    rows.append(
        (
            f"count_chat_tokens, 10 messages ({chat_tokens} tokens)",
            f"{chat_tokens / statistics.median(chat):,.0f} tokens/s, p50 {p50_ms(chat):.3f} ms",
            f"encode contents only: p50 {p50_ms(raw_chat):.3f} ms",
            f"{statistics.median(chat) / statistics.median(raw_chat):.2f}x",
        )
    )
    claude = {**CHAT, "model": "claude-sonnet-4-5"}
    approx = timeit(lambda: count_chat_tokens(claude), repeat)
    rows.append(
        (
            "count_chat_tokens, same, claude (approximated)",
            f"p50 {p50_ms(approx):.3f} ms",
            "",
            f"{statistics.median(approx) / statistics.median(chat):.2f}x of gpt-4o",
        )
    )


async def _sequential(embed: Callable[[list[str]], object], texts: list[str]) -> list[float]:
    out = []
    for text in texts:
        started = time.perf_counter()
        await embed([text])  # type: ignore[misc]
        out.append(time.perf_counter() - started)
    return out


async def _concurrent(embed: Callable[[list[str]], object], texts: list[str], width: int) -> float:
    started = time.perf_counter()
    sem = asyncio.Semaphore(width)

    async def one(text: str) -> None:
        async with sem:
            await embed([text])  # type: ignore[misc]

    await asyncio.gather(*(one(t) for t in texts))
    return len(texts) / (time.perf_counter() - started)


def bench_embeddings(rows: list[tuple[str, str, str, str]], count: int) -> None:
    sentence = "How do I reset my password if I no longer have access to my e-mail, question {}?"
    seq_texts = [sentence.format(i) for i in range(count)]
    conc_texts = [sentence.format(f"c{i}") for i in range(count * 4)]

    local = FastEmbedEmbedder(threads=1, max_batch=32, cache_size=0)
    local.load()
    # baseline: fastembed called directly in this thread, one text per call, the same texts
    raw_model = local._model
    raw = []
    for text in [sentence.format(f"r{i}") for i in range(count)]:
        started = time.perf_counter()
        list(raw_model.embed([text]))
        raw.append(time.perf_counter() - started)

    seq = asyncio.run(_sequential(local.embed, seq_texts))
    rate = asyncio.run(_concurrent(local.embed, conc_texts, 64))
    steady_calls = local.model_calls

    async def bursts() -> float:
        # bursts of 32 simultaneous misses (the semantic cache under a spike): one model call each
        started = time.perf_counter()
        for burst in range(count // 8):
            await asyncio.gather(*(local.embed([sentence.format(f"b{burst}-{i}")]) for i in range(32)))
        return (count // 8) * 32 / (time.perf_counter() - started)

    calls_before = local.model_calls
    burst_rate = asyncio.run(bursts())
    burst_calls = local.model_calls - calls_before
    rows.append(
        (
            "FastEmbedEmbedder (MiniLM int8, threads=1), 1 text per call",
            f"p50 {p50_ms(seq):.1f} ms",
            f"fastembed direct: p50 {p50_ms(raw):.1f} ms",
            f"{statistics.median(seq) / statistics.median(raw):.2f}x",
        )
    )
    rows.append(
        (
            "FastEmbedEmbedder, 64 concurrent callers (batched)",
            f"{rate:,.0f} embeddings/s ({len(conc_texts)} texts, {steady_calls - count} model calls)",
            f"sequential: {1 / statistics.median(seq):,.0f} embeddings/s",
            f"{rate * statistics.median(seq):.1f}x",
        )
    )
    rows.append(
        (
            "FastEmbedEmbedder, bursts of 32 simultaneous calls",
            f"{burst_rate:,.0f} embeddings/s ({(count // 8) * 32} texts, {burst_calls} model calls)",
            f"sequential: {1 / statistics.median(seq):,.0f} embeddings/s",
            f"{burst_rate * statistics.median(seq):.1f}x",
        )
    )
    local.close()

    with serve(FakeProvider()) as base_url:

        async def remote_run() -> tuple[list[float], float]:
            remote = OpenAIEmbedder(
                base_url=f"{base_url}/v1", model="text-embedding-3-small", cache_size=0, dimension=64
            )
            try:
                await remote.embed(["warm"])
                seq_remote = await _sequential(remote.embed, seq_texts)
                rate_remote = await _concurrent(remote.embed, conc_texts, 64)
            finally:
                await remote.aclose()
            return seq_remote, rate_remote

        seq_remote, rate_remote = asyncio.run(remote_run())
    rows.append(
        (
            "OpenAIEmbedder -> FakeProvider /v1/embeddings (uvicorn, same host)",
            f"p50 {p50_ms(seq_remote):.1f} ms; {rate_remote:,.0f} embeddings/s at 64 concurrent",
            f"FastEmbedEmbedder: p50 {p50_ms(seq):.1f} ms; {rate:,.0f}/s",
            f"{statistics.median(seq_remote) / statistics.median(seq):.2f}x latency",
        )
    )


def bench_analyzer(rows: list[tuple[str, str, str, str]], repeat: int) -> None:
    ner = create_analyzer(RuntimeConfig())
    regex = create_analyzer(RuntimeConfig(analyzer=AnalyzerSettings(regex_only=True)))
    for label, text in (("300 chars", PROMPT_300), ("3 KB", PROMPT_3K)):
        with_ner = timeit(lambda t=text: ner.analyze(text=t, language="en"), repeat)
        without = timeit(lambda t=text: regex.analyze(text=t, language="en"), repeat)
        rows.append(
            (
                f"analyzer, {label} prompt",
                f"NER (spaCy sm): p50 {p50_ms(with_ner):.1f} ms",
                f"regex-only: p50 {p50_ms(without):.1f} ms",
                f"{statistics.median(with_ner) / statistics.median(without):.1f}x",
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    repeat = 20 if args.quick else 200
    count = 20 if args.quick else 100
    rows: list[tuple[str, str, str, str]] = []
    bench_tokens(rows, repeat * 5)
    bench_embeddings(rows, count)
    bench_analyzer(rows, max(repeat // 4, 10))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Machine: {os.cpu_count()} cores, load average {load:.2f} at the end, "
        f"Python {platform.python_version()}, {platform.machine()}\n"
    )
    print("| what | measured | baseline (same run) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
