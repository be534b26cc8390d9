"""PII redaction cost: where Presidio spends its time, the latency RedactMiddleware adds, and the
time to first byte of a redacted stream, all measured in one run, in process.

    python bench/redact.py [--rounds 200]

1. Analysis alone on a 1 KB prompt: Presidio as configured by default (all recognizers, spaCy's whole
   pipeline) step by step to the tuned engine RedactMiddleware builds, with and without NER.
2. Added latency: a small OpenAI-format app called directly vs behind RedactMiddleware (p50 of the
   whole request, answer restored), for a 1 KB prompt (a new text each time: no cache hit) and for a
   20-turn conversation with one new message.
3. Time to first byte of a stream through the router and FakeProvider, with and without redaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import write_results

PII_PROMPT = (
    "Hi team, I need help drafting a reply to a customer who wrote in yesterday about a billing problem. "
    "Her name is Maria Gonzalez and she says she was charged twice for the annual plan. She can be reached "
    "at maria.gonzalez@example.com or on (425) 882-8080 during business hours. She paid with the card "
    "4111 1111 1111 1111 and asked that the refund go to her bank account, IBAN GB82 WEST 1234 5698 7654 "
    "32, instead. For identity verification she also sent her SSN 536-22-1234, which we should not have "
    "received at all. Please write a polite, concise answer that apologises for the double charge, "
    "explains that the refund will take five to seven working days, and reminds her that we never need "
    "a social security number for billing questions. Keep the tone warm but professional, avoid legal "
    "language, and end with an offer to call her back if anything is still unclear. Also suggest two "
    "internal follow-ups so this does not happen again, for example a check in the payment pipeline."
)[:1024]
CLEAN_PROMPT = (
    "Please summarise the attached quarterly report in five bullet points, then suggest three concrete "
    "improvements to our onboarding flow. Keep each bullet under twenty words and avoid jargon. The "
    "report covers revenue, churn, support volume and the results of the spring pricing experiment, "
    "which raised conversion on the annual plan but lowered it on the monthly one. The onboarding flow "
    "currently has seven steps; most drop-offs happen at the third step, where new users are asked to "
    "connect a data source before they have seen any value. Our support team says the most common "
    "question in the first week is how to invite colleagues. Finish with one sentence on what we should "
    "measure next quarter to know whether the changes worked, and one risk we should watch for while "
    "rolling them out gradually to new accounts only, region by region, over six weeks or so."
)[:1024]
DEFAULT_ENTITIES = [
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN_CODE",
    "IP_ADDRESS",
]


# Other jobs share this machine's two cores, so wall-clock figures swing with their load. Each figure
# is also taken in CPU time of this process (all its threads): what the work costs on a core of its
# own, which is steady from run to run. Both are reported.


class Figure(NamedTuple):
    cpu: float
    wall: float

    def __str__(self) -> str:
        return f"{self.cpu:.3f} ({self.wall:.3f})"


def p50(fn: Callable[[], Any], rounds: int) -> Figure:
    """p50 milliseconds, CPU and wall clock."""
    fn()
    cpu, wall = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return Figure(statistics.median(cpu) * 1000, statistics.median(wall) * 1000)


async def ap50(fn: Callable[[int], Any], rounds: int) -> Figure:
    await fn(-1)
    cpu, wall = [], []
    for i in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        await fn(i)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return Figure(statistics.median(cpu) * 1000, statistics.median(wall) * 1000)


def base_engines() -> tuple[Any, Any]:
    """Presidio as the runtime builds it by default: regex-only (blank tokenizer) and with spaCy sm."""
    from asgi_aigw.runtime.config import RuntimeConfig
    from asgi_aigw.runtime.pii import get_analyzer

    return get_analyzer(RuntimeConfig(analyzer={"regex_only": True})), get_analyzer(RuntimeConfig())  # type: ignore[arg-type]


# -- 1. where Presidio spends its time ------------------------------------------------------------------


def analysis(rounds: int) -> tuple[list[tuple[str, Figure, Figure]], list[tuple[str, Figure]]]:
    from asgi_aigw.redact import RedactConfig
    from asgi_aigw.redact.engine import build_analyzer, name_segments
    from asgi_aigw.redact.scanner import Scanner

    regex_base, ner_base = base_engines()
    regex_entities = [e for e in DEFAULT_ENTITIES if e != "PERSON"]
    rows: list[tuple[str, Figure, Figure]] = []

    def both(name: str, fn: Callable[[str], Any], n: int = rounds) -> None:
        rows.append((name, p50(lambda: fn(PII_PROMPT), n), p50(lambda: fn(CLEAN_PROMPT), n)))

    slow = max(10, rounds // 10)
    both(
        "regex: Presidio default (17 recognizers, all entities)", lambda t: regex_base.analyze(t, "en"), slow
    )
    both(
        "regex: Presidio default, default entities only",
        lambda t: regex_base.analyze(t, "en", entities=regex_entities),
        slow,
    )
    regex_scanner = Scanner(RedactConfig(regex_only=True), regex_base)
    both("regex: tuned engine (RedactMiddleware)", regex_scanner.analyze_sync)
    both("NER: Presidio default (spaCy sm, whole pipeline)", lambda t: ner_base.analyze(t, "en"), slow)
    both(
        "NER: Presidio default, default entities only",
        lambda t: ner_base.analyze(t, "en", entities=DEFAULT_ENTITIES),
        slow,
    )
    ungated = Scanner(RedactConfig(ner_gate=False), ner_base)
    both("NER: tuned engine, NER on the whole text", ungated.analyze_sync, slow)
    ner_scanner = Scanner(RedactConfig(), ner_base)
    both("NER: tuned engine (RedactMiddleware)", ner_scanner.analyze_sync)

    # the parts
    nlp = ner_base.nlp_engine.nlp["en"]
    ner = nlp.get_pipe("ner")
    stop = nlp.Defaults.stop_words
    phone = next(r for r in regex_base.registry.recognizers if r.name == "PhoneRecognizer")
    tuned_phone = next(
        r
        for r in build_analyzer(regex_base, RedactConfig(regex_only=True)).registry.recognizers
        if r.supported_entities == ["PHONE_NUMBER"]
    )
    parts = [
        ("spaCy whole pipeline (what Presidio runs)", p50(lambda: nlp(PII_PROMPT), slow)),
        ("spaCy ner component alone, whole text", p50(lambda: ner(nlp.make_doc(PII_PROMPT)), slow)),
        (
            "spaCy ner component on the name sentences only",
            p50(
                lambda: [ner(nlp.make_doc(PII_PROMPT[a:b])) for a, b in name_segments(PII_PROMPT, stop)],
                rounds,
            ),
        ),
        ("name gate (finding those sentences)", p50(lambda: name_segments(PII_PROMPT, stop), rounds)),
        (
            "Presidio PhoneRecognizer, 8 regions",
            p50(lambda: phone.analyze(PII_PROMPT, ["PHONE_NUMBER"]), slow),
        ),
        (
            "windowed PhoneRecognizer, configured regions",
            p50(lambda: tuned_phone.analyze(PII_PROMPT, ["PHONE_NUMBER"]), rounds),
        ),
    ]
    for recognizer in regex_base.registry.recognizers:
        if recognizer.name != "PhoneRecognizer":
            parts.append(
                (
                    f"Presidio {recognizer.name}",
                    p50(lambda r=recognizer: r.analyze(PII_PROMPT, r.supported_entities, None), slow),
                )
            )
    return rows, parts


# -- 2. added latency of the middleware -----------------------------------------------------------------


class EchoApp:
    """The smallest OpenAI-format chat app: answers the last user message, as JSON."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        body = orjson.loads(message["body"])
        content = body["messages"][-1]["content"]
        answer = orjson.dumps(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def http_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }


async def call(app: Any, body: bytes) -> bytes:
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await app(http_scope(), receive, send)
    return b"".join(sent)


def turns(count: int, salt: int) -> list[dict[str, str]]:
    messages = []
    for i in range(count):
        messages.append({"role": "user", "content": f"Turn {i}: {PII_PROMPT[: 400 + i * 7]}"})
        messages.append({"role": "assistant", "content": f"Noted, turn {i}: {CLEAN_PROMPT[:300]}"})
    # the new message: the same 1 KB as the one-message case, made new by a suffix
    messages.append({"role": "user", "content": f"{PII_PROMPT} (turn {salt})"})
    return messages


async def interleaved(cases: dict[str, Callable[[int], Any]], rounds: int) -> dict[str, Figure]:
    """p50 of each case, the cases taking turns each round so load from other jobs hits all alike."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    for fn in cases.values():
        await fn(-1)
    for i in range(rounds):
        for name, fn in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            await fn(i)
            samples[name][0].append(time.process_time() - start_cpu)
            samples[name][1].append(time.perf_counter() - start)
    return {
        name: Figure(statistics.median(cpu) * 1000, statistics.median(wall) * 1000)
        for name, (cpu, wall) in samples.items()
    }


def one_message(prompt: str, i: int) -> bytes:
    # a new text each time: the analysis cache never answers
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": f"{prompt} #{i}"}]})


async def added_latency(rounds: int) -> list[tuple[str, Figure, Figure]]:
    from asgi_aigw.redact import RedactConfig, RedactMiddleware

    regex_base, ner_base = base_engines()
    bare = EchoApp()
    same = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": PII_PROMPT}]})
    bodies: dict[str, Callable[[int], bytes]] = {
        "1 KB, six PII": lambda i: one_message(PII_PROMPT, i),
        "1 KB, no PII": lambda i: one_message(CLEAN_PROMPT, i),
        "1 KB, six PII, analysis cached (the plumbing alone)": lambda i: same,
        "20-turn conversation, one new 1 KB message": lambda i: orjson.dumps(
            {"model": "m", "messages": turns(20, i)}
        ),
    }
    rows = []
    for mode, config, base in (
        ("regex-only", RedactConfig(regex_only=True), regex_base),
        ("NER", RedactConfig(), ner_base),
    ):
        redacted = RedactMiddleware(EchoApp(), config=config, analyzer=base)
        await redacted.scanner.warm_up()
        cases: dict[str, Callable[[int], Any]] = {}
        for label, body in bodies.items():
            cases[f"direct {label}"] = lambda i, body=body: call(bare, body(i))
            cases[label] = lambda i, body=body, app=redacted: call(app, body(i))
        figures = await interleaved(cases, rounds)
        rows.extend((f"{mode}: {label}", figures[f"direct {label}"], figures[label]) for label in bodies)
    return rows


# -- 3. time to first byte of a stream ------------------------------------------------------------------


async def ttfb(rounds: int) -> list[tuple[str, Figure]]:
    import httpx

    from asgi_aigw.redact import RedactConfig, RedactMiddleware
    from asgi_aigw.router import ProviderRouter
    from asgi_aigw.testing import FakeProvider, StreamingASGITransport
    from tests.support import FAKE_URL, fake_config

    regex_base, ner_base = base_engines()
    fake = FakeProvider()
    router = ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    apps = {
        "router alone": router,
        "router + redaction, regex-only": RedactMiddleware(
            router, config=RedactConfig(regex_only=True), analyzer=regex_base
        ),
        "router + redaction, NER": RedactMiddleware(router, config=RedactConfig(), analyzer=ner_base),
    }
    rows = []
    for name, app in apps.items():
        if isinstance(app, RedactMiddleware):
            await app.scanner.warm_up()
        async with httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://t") as client:

            async def first_byte(i: int, client: httpx.AsyncClient = client) -> None:
                body = {
                    "model": "gpt-4o-mini",
                    "stream": True,
                    "messages": [
                        {
                            "role": "user",
                            "content": f"Please write to maria.gonzalez@example.com about order {i}.",
                        }
                    ],
                }
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    async for _ in response.aiter_bytes():
                        break

            rows.append((name, await ap50(first_byte, rounds)))
    await router.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rounds = args.rounds

    rows, parts = analysis(rounds)
    added = asyncio.run(added_latency(rounds))
    first = asyncio.run(ttfb(max(20, rounds // 2)))

    lines = [
        "Each figure: p50 CPU ms of this process (p50 wall-clock ms in brackets). The machine's two cores are",
        f"shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end of the run), so wall clock",
        "runs above CPU time by their load; CPU time is what the work costs on a free core.",
        "",
        "## 1. Analysis of a 1 KB prompt",
        "",
        "| engine | six PII | no PII |",
        "|---|---|---|",
        *(f"| {name} | {a} | {b} |" for name, a, b in rows),
        "",
        "Where the time goes (1 KB prompt with six PII):",
        "",
        "| part | p50 ms |",
        "|---|---|",
        *(f"| {name} | {ms} |" for name, ms in parts),
        "",
        "## 2. Latency added by RedactMiddleware (whole request, answer restored)",
        "",
        "| case | direct | redacted | added (CPU) |",
        "|---|---|---|---|",
        *(f"| {name} | {a} | {b} | +{b.cpu - a.cpu:.3f} |" for name, a, b in added),
        "",
        "## 3. Stream time to first byte through the router and FakeProvider",
        "",
        "| stack | TTFB |",
        "|---|---|",
        *(f"| {name} | {ms} |" for name, ms in first),
    ]
    base_ttfb = first[0][1]
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [
        f"| {name}: TTFB added | +{ms.cpu - base_ttfb.cpu:.3f} ms CPU (+{ms.wall - base_ttfb.wall:.3f} ms wall) |"
        for name, ms in first[1:]
    ]
    by_name = {name: a for name, a, _ in rows}
    default_regex = by_name["regex: Presidio default (17 recognizers, all entities)"].cpu
    tuned_regex = by_name["regex: tuned engine (RedactMiddleware)"].cpu
    default_ner = by_name["NER: Presidio default (spaCy sm, whole pipeline)"].cpu
    tuned_ner = by_name["NER: tuned engine (RedactMiddleware)"].cpu
    lines.append(f"| regex-only, six PII: tuned / Presidio default | {tuned_regex / default_regex:.1%} |")
    lines.append(f"| NER, six PII: tuned / Presidio default | {tuned_ner / default_ner:.1%} |")
    added_by = {name: b.cpu - a.cpu for name, a, b in added}
    for mode in ("regex-only", "NER"):
        one = added_by[f"{mode}: 1 KB, six PII"]
        convo = added_by[f"{mode}: 20-turn conversation, one new 1 KB message"]
        lines.append(f"| {mode}: 20-turn conversation / one message | {convo / one:.2f}x |")
    write_results(
        "redact",
        "PII redaction",
        "\n".join(lines),
        {
            "analysis": [(n, a._asdict(), b._asdict()) for n, a, b in rows],
            "parts": [(n, f._asdict()) for n, f in parts],
            "added_latency": [(n, a._asdict(), b._asdict()) for n, a, b in added],
            "ttfb": [(n, f._asdict()) for n, f in first],
            "load_average": os.getloadavg(),
        },
    )
    print(f"load average during the run: {os.getloadavg()}")


if __name__ == "__main__":
    main()
