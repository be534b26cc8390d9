"""A bounded soak of the full stack: steady mixed load for minutes, then what it leaked and lost.

    python bench/soak.py [--seconds 180] [--concurrency 64] [--redis redis://127.0.0.1:6379/0]

FakeProvider and the gateway each run in a uvicorn process of their own on 127.0.0.1 (uvloop,
httptools, one worker), so the gateway's memory, descriptors and threads can be read from /proc. The
gateway is the full stack of bench/fullstack.py (tenant header, budgets and the exact cache in Redis
under a key prefix of this run, regex-only redaction) with the request log in embedded chDB (a
temporary directory) and its spool.

``--concurrency`` clients send, for ``--seconds``, a mix: JSON and streaming answers, four tenants,
prompts repeated from a small pool (exact cache hits) and new ones (misses), and prompts carrying an
e-mail address (redacted on the way up, restored on the way back: the answer must carry the
request's own address). Every answer is checked (status, content, the end of the stream).

Measured: requests, req/s, errors by kind (any is unexpected), log rows in chDB after a graceful
stop against requests sent (rows lost), the gateway's RSS, open descriptors and threads (after
warm-up, at the end of the load, peak), the load average, and the run's Redis keys (deleted at the
end). Writes bench/results/soak.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ROOT, Server, check_answers, letters, uvicorn_process, write_results

CHAT = "/ai/v1/chat/completions"
TENANTS = ("acme", "globex", "initech", "umbrella")
#: Prompts repeated across the run (exact cache hits after their first answer per tenant).
POOL = 24


@dataclass
class ProcStats:
    rss_mb: float
    fds: int
    threads: int
    #: Of ``fds``: sockets (client connections, the upstream and Redis pools), bounded by the pools.
    sockets: int = 0
    #: Of ``threads``: the interpreter's own and the event loop's (``python``, ``libuv-worker``), as
    #: opposed to chDB's engine pools, which start and keep threads on their own schedule.
    own_threads: int = 0
    #: Of ``fds``: handles into ``/proc`` (chDB opens a few per engine thread, as its pools grow and shrink).
    proc_fds: int = 0

    @property
    def other_fds(self) -> int:
        """Descriptors that are neither sockets nor chDB's ``/proc`` handles: files, pipes, eventfds."""
        return self.fds - self.sockets - self.proc_fds


@dataclass
class SoakResult:
    seconds: float
    concurrency: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    #: Unexpected outcomes by kind: ``status 500``, ``wrong answer``, ``ClientError`` ...
    errors: dict[str, int]
    kinds: dict[str, int]
    cache: dict[str, int]
    log_rows: int
    log_rows_distinct: int
    rows_lost: int
    spool_files_left: int
    start: ProcStats
    warm: ProcStats
    end: ProcStats
    peak: ProcStats
    #: ``idle_seconds`` after the load, before the stop (the request log's sink is closed by then).
    idle: ProcStats
    idle_seconds: float
    redis_keys_at_end: int
    redis_keys_left: int
    load_average: dict[str, list[float]] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def proc_stats(pid: int) -> ProcStats:
    """RSS, open descriptors and threads of a process (Linux /proc)."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    rss_kb = int(status["VmRSS"].split()[0])
    fds = sockets = proc_fds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            sockets += target.startswith("socket:")
            proc_fds += target.startswith("/proc/")
    return ProcStats(rss_kb / 1024, fds, int(status["Threads"]), sockets, _own_threads(pid), proc_fds)


#: Thread names (``/proc/<pid>/task/<tid>/comm``) of the interpreter's threads (Python does not name
#: its threads there) and of uvloop's worker pool; every other name is chDB's engine.
_OWN_THREADS = frozenset({"python", "python3", "libuv-worker"})


def _own_threads(pid: int) -> int:
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # ended meanwhile
            count += Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() in _OWN_THREADS
    return count


class Load:
    """The clients: ``concurrency`` loops, each sending its next request as soon as one is answered."""

    def __init__(self, base: str, concurrency: int, seed: int) -> None:
        self.url = base + CHAT
        self.concurrency = concurrency
        self.nonce = letters(seed)
        self.count = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.cache: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def _prompt(self, rng: random.Random, worker: int, n: int) -> tuple[str, str]:
        roll = rng.random()
        if roll < 0.4:
            return "repeated", f"Summarise topic {letters(rng.randrange(POOL))} of run {self.nonce} briefly."
        if roll < 0.75:
            return (
                "new",
                f"Tell me something new, run {self.nonce} client {letters(worker)} ask {letters(n)}.",
            )
        # the redacted text is the same for every address: a hit must still restore this request's own
        email = f"user.{letters(worker)}.{letters(n)}@example.com"
        return "pii", f"Please write to {email} about the invoice of run {self.nonce}."

    async def _one(self, session: Any, rng: random.Random, worker: int, n: int) -> None:
        import aiohttp

        kind, prompt = self._prompt(rng, worker, n)
        stream = rng.random() < 0.3
        tenant = rng.choice(TENANTS)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], "stream": stream}
        self.kinds[f"{kind}, {'stream' if stream else 'json'}"] += 1
        started = time.perf_counter()
        try:
            async with session.post(self.url, json=body, headers={"x-tenant-id": tenant}) as response:
                raw = await response.read()
                status = response.status
                self.cache[response.headers.get("x-aigw-cache", "none")] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._error(type(exc).__name__, repr(exc))
            return
        finally:
            self.count += 1
        self.latencies.append(time.perf_counter() - started)
        if status != 200:
            self._error(f"status {status}", raw[:300].decode(errors="replace"))
            return
        content = _streamed_content(raw) if stream else _json_content(raw)
        if content != f"Echo: {prompt}":
            self._error("wrong answer", f"{prompt!r} -> {content!r}")

    def _error(self, kind: str, example: str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, example)

    async def run(self, seconds: float) -> None:
        import aiohttp

        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker(index: int) -> None:
                rng = random.Random(f"{self.nonce}-{index}")
                n = 0
                while time.monotonic() < deadline:
                    await self._one(session, rng, index, n)
                    n += 1

            await asyncio.gather(*(worker(i) for i in range(self.concurrency)))


def _json_content(raw: bytes) -> str | None:
    try:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _streamed_content(raw: bytes) -> str | None:
    """The deltas of an SSE answer joined; None unless it ends with ``[DONE]``."""
    parts: list[str] = []
    done = False
    for line in raw.decode(errors="replace").splitlines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        try:
            event = json.loads(data)
            parts.append(event["choices"][0]["delta"].get("content") or "")
        except (ValueError, KeyError, IndexError, TypeError):
            return None
    return "".join(parts) if done else None


_COUNT_ROWS = """
import json, sys
from asgi_aigw.logs import ClickHouseSink
sink = ClickHouseSink(f"chdb://{sys.argv[1]}")
[(rows, distinct)] = sink.query("SELECT count(), uniqExact(request_id) FROM {table}")
statuses = dict(sink.query("SELECT toString(status), count() FROM {table} GROUP BY status"))
sink.close()
print(json.dumps({"rows": rows, "distinct": distinct, "statuses": statuses}))
"""


def count_log_rows(chdb_dir: str) -> dict[str, Any]:
    """Rows in the request log table (in a process of its own: chDB hosts one directory per process)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_COUNT_ROWS), chdb_dir],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"counting the log rows failed: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def redis_keys(url: str, prefix: str, *, delete: bool = False) -> int:
    """This run's keys (budget windows, cached answers); deleted with ``delete``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if delete:
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start : start + 500])
        return len(keys)
    finally:
        client.close()


def stop(server: Server, timeout: float = 60.0) -> None:
    """SIGTERM and wait: uvicorn's lifespan shutdown flushes the request log."""
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout)


async def _drive(
    server: Server, seconds: float, warmup: float, concurrency: int, idle: float
) -> tuple[Load, dict[str, Any]]:
    """Run the load while sampling the gateway's /proc every half second, then let it idle."""
    load = Load(server, concurrency, seed=random.randrange(26**6))
    samples: list[ProcStats] = []
    marks: dict[str, Any] = {"start": proc_stats(server.pid)}
    task = asyncio.create_task(load.run(seconds))
    started = time.monotonic()
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if task.done():
            break
        sample = proc_stats(server.pid)
        samples.append(sample)
        if "warm" not in marks and time.monotonic() - started >= warmup:
            marks["warm"] = sample
            marks["warm_requests"] = load.count
    await task
    marks["elapsed"] = time.monotonic() - started
    marks["end"] = samples[-1] if samples else proc_stats(server.pid)
    marks.setdefault("warm", samples[0] if samples else marks["start"])
    every = samples or [marks["end"]]
    marks["peak"] = ProcStats(
        max(s.rss_mb for s in every),
        max(s.fds for s in every),
        max(s.threads for s in every),
        max(s.sockets for s in every),
    )
    await asyncio.sleep(idle)
    marks["idle"] = proc_stats(server.pid)
    return load, marks


def run_soak(
    seconds: float = 180.0,
    concurrency: int = 64,
    redis_url: str = "redis://127.0.0.1:6379/0",
    warmup: float | None = None,
    idle: float = 5.0,
) -> tuple[SoakResult, dict[str, str]]:
    """The whole run; also returns an example of each kind of error."""
    warmup = min(20.0, max(3.0, seconds / 10)) if warmup is None else warmup
    prefix = f"aigw-soak-{uuid.uuid4().hex[:8]}:"
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="aigw-soak-") as tmp:
        chdb_dir, spool_dir = f"{tmp}/chdb", f"{tmp}/spool"
        try:
            with uvicorn_process("_soak_apps:fake_provider", factory=True) as fake:
                env = {
                    "SOAK_UPSTREAM": f"{fake}/v1/chat/completions",
                    "SOAK_REDIS": redis_url,
                    "SOAK_KEY_PREFIX": prefix,
                    "SOAK_CHDB": chdb_dir,
                    "SOAK_SPOOL": spool_dir,
                }
                with uvicorn_process("_soak_apps:gateway", factory=True, env=env) as gateway:
                    first = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
                    check_answers(f"{gateway}{CHAT}", first, {"x-tenant-id": TENANTS[0]})
                    load, marks = asyncio.run(_drive(gateway, seconds, warmup, concurrency, idle))
                    load_after = list(os.getloadavg())
                    stop(gateway)
            log = count_log_rows(chdb_dir)
            spool_left = sum(1 for p in Path(spool_dir).rglob("*.jsonl")) if Path(spool_dir).exists() else 0
        finally:
            keys_at_end = redis_keys(redis_url, prefix, delete=True)
        keys_left = redis_keys(redis_url, prefix)
    requests = load.count + 1  # and the first, checked request
    latencies = sorted(load.latencies) or [0.0]
    result = SoakResult(
        seconds=round(marks["elapsed"], 1),
        concurrency=concurrency,
        requests=requests,
        requests_per_s=load.count / marks["elapsed"],
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors=dict(load.errors),
        kinds=dict(sorted(load.kinds.items())),
        cache=dict(load.cache),
        log_rows=int(log["rows"]),
        log_rows_distinct=int(log["distinct"]),
        rows_lost=requests - int(log["rows"]),
        spool_files_left=spool_left,
        start=marks["start"],
        warm=marks["warm"],
        end=marks["end"],
        peak=marks["peak"],
        idle=marks["idle"],
        idle_seconds=idle,
        redis_keys_at_end=keys_at_end,
        redis_keys_left=keys_left,
        load_average={"before": load_before, "after": load_after},
    )
    return result, load.examples


def table(r: SoakResult, command: str) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "none"
    lines = [
        f"`{command}`",
        "",
        "Full stack (tenant header, budgets and exact cache in Redis, regex-only redaction, request log",
        "in embedded chDB with its spool) in one uvicorn process, FakeProvider in another, loopback.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| duration, concurrency | {r.seconds:.0f} s, {r.concurrency} |",
        f"| requests (req/s) | {r.requests:,} ({r.requests_per_s:,.0f}) |",
        f"| latency p50 / p99 | {r.p50_ms:.1f} / {r.p99_ms:.1f} ms |",
        f"| errors | {r.error_count} ({errors}) |",
        f"| mix | {', '.join(f'{k} {v:,}' for k, v in r.kinds.items())} |",
        f"| x-aigw-cache | {', '.join(f'{k} {v:,}' for k, v in sorted(r.cache.items()))} |",
        f"| log rows in chDB after stop (distinct ids) | {r.log_rows:,} ({r.log_rows_distinct:,}) |",
        f"| rows lost | {r.rows_lost} (spool files left: {r.spool_files_left}) |",
        f"| RSS start / after warm-up / end / peak | {r.start.rss_mb:.0f} / {r.warm.rss_mb:.0f} / "
        f"{r.end.rss_mb:.0f} / {r.peak.rss_mb:.0f} MB |",
        f"| open fds start / after warm-up / end / peak | {r.start.fds} / {r.warm.fds} / {r.end.fds} / {r.peak.fds} |",
        f"| of which sockets | {r.start.sockets} / {r.warm.sockets} / {r.end.sockets} / {r.peak.sockets} |",
        f"| threads start / after warm-up / end / peak | {r.start.threads} / {r.warm.threads} / "
        f"{r.end.threads} / {r.peak.threads} |",
        f"| {r.idle_seconds:g} s idle after the load: RSS, fds (sockets), threads | {r.idle.rss_mb:.0f} MB, "
        f"{r.idle.fds} ({r.idle.sockets}), {r.idle.threads} |",
        f"| Redis keys of the run at end / left after cleanup | {r.redis_keys_at_end} / {r.redis_keys_left} |",
        f"| load average before / after (1, 5, 15 min) | "
        f"{' '.join(f'{x:.2f}' for x in r.load_average['before'])} / "
        f"{' '.join(f'{x:.2f}' for x in r.load_average['after'])} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--warmup", type=float, help="seconds before the after-warm-up sample (default: 10%%)"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    result, examples = run_soak(args.seconds, args.concurrency, args.redis, args.warmup)
    command = f"python bench/soak.py --seconds {args.seconds:g} --concurrency {args.concurrency}"
    write_results(
        "soak", "Soak: the full stack under steady mixed load", table(result, command), asdict(result)
    )
    for kind, example in examples.items():
        print(f"first {kind}: {example}", file=sys.stderr)
    if result.error_count or result.rows_lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
