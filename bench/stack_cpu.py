"""CPU per request of the whole gateway, in process: the router alone, the full stack's exact hit, and the
full stack forwarding and storing an answer (semantic layer off).

    python bench/stack_cpu.py [--requests 2000] [--rounds 5] [--concurrency 16] [--redis URL] [--profile]

Each app is built as an ``aigw serve`` worker builds it (``_stack_apps.build``) and runs in this
process on one uvloop event loop, driven by a raw ASGI driver (no HTTP server, no client),
``--concurrency`` requests in flight; the upstream is a FakeProvider process on loopback answering at
once, so its CPU is not counted. The figure is this process's CPU time
(``time.process_time``: every thread, so the request log's writer and the stores' clients too) over the
requests served, median of ``--rounds`` interleaved rounds. Less noisy than requests per second on a
shared machine: other processes slow the run down but do not add to its CPU time.

``--profile`` runs the first target (or ``--only NAME``) under cProfile instead, timed by this thread's
CPU, and prints the top functions; ``--layers`` adds one layer at a time in front of the router, and
one at a time in front of the cache's exact hit.
Writes bench/results/stack_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import letters, uvicorn_process, write_results

from asgi_aigw.testing.raw_asgi import post

BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, how are you today?"}]}'
#: (name, layers, extra headers)
TARGETS: list[tuple[str, str, list[tuple[bytes, bytes]]]] = [
    ("ProviderRouter alone", "", []),
    ("full stack, exact hit", "tenant,budget,redact,exact,semantic,chdb", []),
    (
        "full stack, forwarded and stored (semantic off)",
        "tenant,budget,redact,exact,chdb",
        [(b"cache-control", b"no-cache")],
    ),
    ("full stack, unique questions", "tenant,budget,redact,exact,semantic,chdb", []),
]
#: Targets sent a new question every request (embedding, search, forward, store), as bench/stack.py's.
UNIQUE = frozenset({"full stack, unique questions"})
#: ``--layers``: one layer at a time in front of the router (each layer's own share of the full stack).
LAYER_TARGETS: list[tuple[str, str, list[tuple[bytes, bytes]]]] = [
    ("router + tenant (header)", "tenant", []),
    ("router + budget (memory)", "budget-memory", []),
    ("router + budget (Redis)", "budget", []),
    ("router + redaction (regex-only)", "redact", []),
    ("router + request log (chDB)", "chdb", []),
    ("router + cache, exact hit (Redis)", "exact", []),
    ("router + cache, storing every answer (Redis)", "exact", [(b"cache-control", b"no-cache")]),
    # an exact hit with one more layer in front of the cache: what each layer adds to a hit
    ("exact hit + tenant (header)", "tenant,exact", []),
    ("exact hit + budget (Redis, one lookup script)", "budget,exact", []),
    ("exact hit + redaction (regex-only)", "redact,exact", []),
    ("exact hit + request log (chDB)", "chdb,exact", []),
]


async def request(app: Any, headers: list[tuple[bytes, bytes]], body: bytes = BODY) -> int:
    """One POST of ``body`` through ``app`` with a raw ASGI scope; returns the status."""
    status, _ = await post(app, "/ai/v1/chat/completions", body, [(b"x-tenant-id", b"bench"), *headers])
    return status


def unique_body(n: int) -> bytes:
    """A question never asked before, in letters (no PII pattern fires), as bench/stack.py's wrk script."""
    content = f"Tell me about {_RUN} {letters(n)}"
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).encode()


_RUN = uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
_asked = itertools.count()


async def drive(
    app: Any, headers: list[tuple[bytes, bytes]], count: int, concurrency: int, unique: bool = False
) -> int:
    """``count`` requests, ``concurrency`` at a time (each a new question when ``unique``); returns how
    many did not answer 200."""
    left = count
    errors = 0

    async def worker() -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            body = unique_body(next(_asked)) if unique else BODY
            if await request(app, headers, body) != 200:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


class Lifespan:
    """The app's lifespan startup now, shutdown on :meth:`stop`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"startup failed: {message}")

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        if self.task is not None:
            await self.task


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    from _stack_apps import build

    apps: list[tuple[str, Any, list[tuple[bytes, bytes]], Lifespan]] = []
    data_dir = os.environ["BENCH_DATA_DIR"]
    for name, layers, headers in TARGETS + (LAYER_TARGETS if args.layers else []):
        if args.only and name != args.only:
            continue
        # Qdrant Edge and chDB lock their directories: each app of this process gets its own
        os.environ["BENCH_DATA_DIR"] = os.path.join(data_dir, str(len(apps)))
        app = build({layer for layer in layers.split(",") if layer})
        life = Lifespan(app)
        await life.start()
        # warm-up, and stores the answer
        errors = await drive(app, headers, args.warmup, args.concurrency, name in UNIQUE)
        if errors:
            raise RuntimeError(f"{name}: {errors} warm-up requests did not answer 200")
        apps.append((name, app, headers, life))
    samples: dict[str, list[float]] = {name: [] for name, *_ in apps}
    errors_by: dict[str, int] = dict.fromkeys(samples, 0)
    if args.profile:
        name, app, headers, _ = apps[0]
        profiler = cProfile.Profile(time.thread_time)  # this thread's CPU, not wall time
        profiler.enable()
        await drive(app, headers, args.requests, args.concurrency, name in UNIQUE)
        profiler.disable()
        stats = pstats.Stats(profiler)
        if args.profile_out:
            stats.dump_stats(args.profile_out)
        stats.sort_stats(args.sort).print_stats(args.top)
    else:
        for _ in range(args.rounds):
            for name, app, headers, _life in apps:
                start = time.process_time()
                errors_by[name] += await drive(app, headers, args.requests, args.concurrency, name in UNIQUE)
                samples[name].append((time.process_time() - start) / args.requests * 1e6)
    for *_, life in apps:
        await life.stop()
    return [
        {
            "name": name,
            "cpu_us_per_request": statistics.median(values),
            "rounds": [round(v, 1) for v in values],
            "errors": errors_by[name],
        }
        for name, values in samples.items()
        if values
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per target and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--only", help="one target, by name")
    parser.add_argument("--layers", action="store_true", help="also one layer at a time")
    parser.add_argument("--profile", action="store_true", help="cProfile the first (or --only) target")
    parser.add_argument("--profile-out", help="also write the profile's stats to this file (pstats)")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-write", action="store_true", help="print only, keep bench/results as it is")
    args = parser.parse_args()

    import uvloop

    with (
        tempfile.TemporaryDirectory() as data_dir,
        uvicorn_process("asgi_aigw.testing.fake_provider:app") as fake,
    ):
        os.environ.update(
            {
                "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
                "BENCH_REDIS": args.redis,
                "BENCH_KEY_PREFIX": f"aigw-bench-cpu-{uuid.uuid4().hex[:8]}:",
                "BENCH_DATA_DIR": data_dir,
            }
        )
        results = uvloop.run(measure(args))
    if args.profile:
        return
    lines = [
        f"In process, one uvloop event loop, a raw ASGI driver with {args.concurrency} requests in flight,",
        f"{args.requests} requests per target and round, medians of {args.rounds} interleaved rounds; the",
        "upstream is a FakeProvider process answering at once. Full stack: tenant (header) + budget (Redis)",
        "+ regex-only redaction + cache (Redis exact, + Qdrant Edge semantic for the hit) + request log (chDB).",
        "",
        "| target | CPU µs/request | rounds | errors |",
        "|---|---:|---|---:|",
        *(
            f"| {r['name']} | {r['cpu_us_per_request']:,.0f} | {', '.join(f'{v:.0f}' for v in r['rounds'])} "
            f"| {r['errors']} |"
            for r in results
        ),
    ]
    if args.no_write:
        print("\n".join(lines))
    else:
        write_results(
            "stack_cpu", "bench/stack_cpu.py: CPU per request, in process", "\n".join(lines), results
        )


if __name__ == "__main__":
    main()
