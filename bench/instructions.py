"""Instructions per request of the gateway's layers, counted by valgrind: the same on a busy host as on
an idle one (two runs agree to within half a per cent, the budget's to within about 5%: how its Redis
calls share writes depends on timing).

    python bench/instructions.py [--requests 2000] [--layers tenant,budget,exact ...] [--no-cache | --unique]

Each stack of ``--layers`` (``_stack_apps`` names; by default the exact hit alone, each layer in front of
it, and the whole stack with a JSONL log) runs in process under ``valgrind --tool=callgrind`` twice, once
with ``--requests`` requests after a warm-up and once with the warm-up only; the difference over the
requests is what one request costs (``--unique``: each request a question never asked before, as
bench/stack.py's unique questions), every thread of the process counted (the event loop, the stores'
clients, the log's writer), the Redis server and the upstream not. chDB is not run: valgrind cannot
start its engine in time. Needs valgrind (``apt-get install -y valgrind``), a Redis server (``--redis``)
and takes about a minute per stack (its two runs in parallel). The driver is bench/stack_cpu.py's: a
raw ASGI scope per request, 16 in flight, the upstream a FakeProvider process.
Writes bench/results/instructions.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import uvicorn_process, write_results

#: What an exact hit costs alone, each layer in front of it, and the whole stack (the log in JSONL).
DEFAULT_STACKS = [
    "exact",
    "tenant,exact",
    "budget,exact",
    "redact,exact",
    "jsonl,exact",
    "exact,semantic",
    "tenant,budget,redact,exact,semantic,jsonl",
]
_REFS = re.compile(rb"refs:\s+([\d,]+)")


def run_child(layers: str, requests: int, no_cache: bool, unique: bool) -> None:
    """In the child under valgrind: build the stack, warm it up, serve ``requests`` requests."""
    import stack_cpu
    import uvloop
    from _stack_apps import build

    headers = [(b"cache-control", b"no-cache")] if no_cache else []

    async def main() -> None:
        app = build({layer for layer in layers.split(",") if layer})
        life = stack_cpu.Lifespan(app)
        await life.start()
        if await stack_cpu.drive(app, headers, 200, 16, unique):
            raise RuntimeError("warm-up requests failed")
        if requests and await stack_cpu.drive(app, headers, requests, 16, unique):
            raise RuntimeError("requests failed")
        await life.stop()

    uvloop.run(main())


def count(layers: str, requests: int, no_cache: bool, unique: bool, env: dict[str, str]) -> int:
    """Instructions of one child run under callgrind."""
    with tempfile.TemporaryDirectory() as data:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={data}/callgrind.out",
            sys.executable,
            __file__,
            "--child",
            layers,
            "--requests",
            str(requests),
            *(["--no-cache"] if no_cache else []),
            *(["--unique"] if unique else []),
        ]
        child_env = {**os.environ, **env, "BENCH_DATA_DIR": data, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, env=child_env, check=False)
        found = _REFS.search(done.stderr)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"{layers}: the run failed\n{done.stderr.decode(errors='replace')[-2000:]}")
        return int(found.group(1).replace(b",", b""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--layers", nargs="+", default=DEFAULT_STACKS, help="stacks, each comma-separated")
    parser.add_argument("--no-cache", action="store_true", help="send Cache-Control: no-cache (forwarded)")
    parser.add_argument("--unique", action="store_true", help="a new question every request")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only, keep bench/results as it is")
    args = parser.parse_args()
    if args.child is not None:  # "" is the router alone
        run_child(args.child, args.requests, args.no_cache, args.unique)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install -y valgrind")
    results = []
    with uvicorn_process("asgi_aigw.testing.fake_provider:app") as fake:
        env = {
            "BENCH_UPSTREAM": f"{fake}/v1/chat/completions",
            "BENCH_REDIS": args.redis,
            "BENCH_KEY_PREFIX": f"aigw-bench-instr-{uuid.uuid4().hex[:8]}:",
        }
        for layers in args.layers:
            with ThreadPoolExecutor(2) as pool:
                runs = [
                    pool.submit(count, layers, n, args.no_cache, args.unique, env) for n in (args.requests, 0)
                ]
                served, idle = (run.result() for run in runs)
            per_request = (served - idle) / args.requests
            print(f"{layers:50} {per_request:12,.0f} instructions/request", file=sys.stderr, flush=True)
            results.append({"layers": layers, "instructions_per_request": round(per_request)})
    what = "answers forwarded and stored (Cache-Control: no-cache)" if args.no_cache else "exact hits"
    if args.unique:
        what = "unique questions (embedded, searched, verified, forwarded and stored)"
    lines = [
        f"Instructions per request (valgrind's callgrind, every thread of the process), {what},",
        f"{args.requests} requests after a warm-up of 200, 16 in flight, in process (bench/stack_cpu.py's driver).",
        "",
        "| layers | instructions per request |",
        "|---|---:|",
        *(f"| {r['layers']} | {r['instructions_per_request']:,} |" for r in results),
    ]
    if args.no_write:
        print("\n".join(lines))
    else:
        write_results(
            "instructions", "bench/instructions.py: instructions per request", "\n".join(lines), results
        )


if __name__ == "__main__":
    main()
