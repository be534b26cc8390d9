"""Memory of one gateway worker, layer by layer, and of four workers on one host.

    python bench/memory.py [--requests 20] [--later 400] [--redis redis://127.0.0.1:6379/0] [--only NAME...]

Each stack is one uvicorn process (uvloop, httptools) in front of FakeProvider on loopback; after
``--requests`` new questions (each a cache miss that is forwarded, stored and logged) and a pause for
the work left after the answers (stores, log inserts), it reads the worker's ``/proc/PID/smaps_rollup``:
RSS (every page the process maps, shared ones in full) and PSS (each shared page divided among the
processes sharing it: what a worker costs when several run on one host), and its thread count. Then
it sends more questions, up to ``--later`` in all per worker, and reads RSS again: what a worker
settles at once every code path has run a few times (the request log's inserts and merges read more
of chDB's library than the first insert).

Baselines in the same run: a bare ASGI app returning fixed JSON and a bare aiohttp proxy.

Writes bench/results/memory.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _harness import Server, delete_keys, free_port, serve, uvicorn_process, write_results

#: (name, layers or a baseline's ``module:app``, workers, server); server "uvicorn" (its workers are
#: spawned: each imports and loads everything itself) or "gunicorn --preload" (uvicorn's worker class;
#: the app is built and its models loaded once, then the workers are forked and share those pages).
STACKS: list[tuple[str, str, int, str]] = [
    ("bare ASGI app, fixed JSON", "_baselines:fixed_json", 1, "uvicorn"),
    ("bare proxy, aiohttp", "_baselines:aiohttp_proxy", 1, "uvicorn"),
    ("router alone", "", 1, "uvicorn"),
    ("router + tenant", "tenant", 1, "uvicorn"),
    ("router + budget (Redis)", "budget", 1, "uvicorn"),
    ("router + redaction (regex-only)", "redact", 1, "uvicorn"),
    ("router + exact cache (Redis)", "exact", 1, "uvicorn"),
    ("router + cache with semantic layer (Qdrant Edge)", "semantic", 1, "uvicorn"),
    ("router + request log (chDB)", "chdb", 1, "uvicorn"),
    ("router + request log (JSONL)", "jsonl", 1, "uvicorn"),
    ("full stack, embedded defaults (chDB log)", "tenant,budget,redact,exact,semantic,chdb", 1, "uvicorn"),
    ("full stack, JSONL log, semantic layer off", "tenant,budget,redact,exact,jsonl", 1, "uvicorn"),
    ("full stack, JSONL log", "tenant,budget,redact,exact,semantic,jsonl", 1, "uvicorn"),
    ("full stack, JSONL log, 4 workers", "tenant,budget,redact,exact,semantic-memory,jsonl", 4, "uvicorn"),
    (
        "full stack, JSONL log, 4 workers, preloaded",
        "tenant,budget,redact,exact,semantic-memory,jsonl",
        4,
        "gunicorn --preload",
    ),
]


@contextlib.contextmanager
def gunicorn_preload(env: dict[str, str], workers: int) -> Iterator[Server]:
    """``gunicorn --preload`` with uvicorn's worker class serving ``_stack_apps:preloaded()``."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "_stack_apps:preloaded()",
        "--preload",
        "--workers",
        str(workers),
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    with serve(command, port, env=env, what="gunicorn", start_timeout=120, poll=0.1, stop_timeout=15) as base:
        yield base


@dataclass
class Memory:
    name: str
    workers: int
    rss_mb: float
    pss_mb: float
    threads: int
    #: Per worker, for several workers.
    rss_each: list[float]
    pss_each: list[float]
    #: The largest worker's RSS after ``--later`` questions per worker.
    rss_later_mb: float = 0.0


def rollup(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process in MB (``/proc/PID/smaps_rollup``)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1]) / 1024
    return values["Rss:"], values["Pss:"]


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _drive(url: str, requests: int, workers: int) -> None:
    """``requests`` new questions per worker (more connections than workers, so every worker gets some)."""
    nonce = "".join(chr(97 + int(c, 16)) for c in uuid.uuid4().hex[:10])
    with httpx.Client(timeout=60) as client:
        for i in range(requests * workers):
            response = client.post(
                url,
                headers={"x-tenant-id": "bench", "connection": "close"}
                if workers > 1
                else {"x-tenant-id": "bench"},
                json={
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"What is the capital of country {nonce} {i}?"}],
                },
            )
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")


def measure(
    name: str,
    target: str,
    layers: str | None,
    workers: int,
    server_kind: str,
    env: dict[str, str],
    requests: int,
    later: int,
) -> Memory:
    factory = layers is not None
    app = "_stack_apps:stack" if factory else target
    path = "/ai/v1/chat/completions" if factory else "/v1/chat/completions"
    env = {**env, "BENCH_STACK": layers or ""}
    if server_kind == "uvicorn":
        serving = uvicorn_process(app, factory=factory, env=env, workers=workers)
    else:
        serving = gunicorn_preload(env, workers)
    with serving as server:
        pids = [server.pid]
        if workers > 1:
            deadline = time.monotonic() + 60
            while len(pids := children(server.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3)  # every worker has imported and built its app
        _drive(f"{server}{path}", requests, workers)
        time.sleep(2.5)  # stores, log batches (flush_interval 1 s)
        figures = [rollup(pid) for pid in pids]
        thread_count = max(threads(pid) for pid in pids)
        rss_later = max(r for r, _ in figures)
        if later > requests:
            _drive(f"{server}{path}", later - requests, workers)
            time.sleep(2.5)
            rss_later = max(rollup(pid)[0] for pid in pids)
    rss = [r for r, _ in figures]
    pss = [p for _, p in figures]
    return Memory(name, workers, max(rss), max(pss), thread_count, rss, pss, rss_later)


def table(rows: list[Memory], requests: int, later: int) -> str:
    lines = [
        f"One uvicorn worker (uvloop, httptools) after {requests} new questions per worker (each forwarded,",
        "stored and logged); RSS and PSS from `/proc/PID/smaps_rollup`, the largest worker's for several;",
        f"then RSS again after {later} questions per worker in all.",
        "",
        f"| stack | workers | RSS MB | PSS MB (per worker) | threads | RSS MB after {later} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.workers} | {r.rss_mb:,.0f} | {r.pss_mb:,.0f} | {r.threads} | {r.rss_later_mb:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--later", type=int, default=400, help="questions per worker in all for the later RSS"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--only", nargs="+", help="stacks whose name contains one of these words")
    args = parser.parse_args()
    prefix = f"aigw-bench-{uuid.uuid4().hex[:8]}:"
    data_dir = Path(tempfile.mkdtemp(prefix="aigw-bench-memory-"))
    rows: list[Memory] = []
    try:
        with contextlib.ExitStack() as stack:
            fake = stack.enter_context(uvicorn_process("asgi_aigw.testing.fake_provider:app"))
            env = {
                "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
                "BENCH_REDIS": args.redis,
                "BENCH_KEY_PREFIX": prefix,
                "BENCH_DATA_DIR": str(data_dir),
            }
            for name, spec, workers, server_kind in STACKS:
                if args.only and not any(word in name for word in args.only):
                    continue
                baseline = spec.startswith("_")
                row = measure(
                    name,
                    spec,
                    None if baseline else spec,
                    workers,
                    server_kind,
                    env,
                    args.requests,
                    args.later,
                )
                print(
                    f"  {name:52} RSS {row.rss_mb:6.0f} MB  PSS {row.pss_mb:6.0f} MB  threads {row.threads}"
                    f"  later RSS {row.rss_later_mb:6.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
                rows.append(row)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        delete_keys(args.redis, prefix)
    write_results("memory", "Memory per worker", table(rows, args.requests, args.later), rows)


if __name__ == "__main__":
    main()
