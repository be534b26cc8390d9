"""Run every benchmark, each with the baselines it measures in the same run, and summarise them.

    python bench/run_all.py [--quick] [--only fullstack router ...] [--skip cache ...]

Each benchmark is a script of its own under bench/ (its docstring says what it measures and against
what); they run one after another, never in parallel, so they do not load the machine for each other.
Results:

- ``bench/results/<name>.md`` and ``.json`` for each benchmark (scripts that only print get their
  output saved as ``<name>.md``);
- ``bench/results/summary.md`` and ``summary.json``: the machine, the date, every benchmark's status
  and duration, and DESIGN.md's performance budget checked against this run's figures;
- ``docs/img/latency-vs-concurrency.png``: p50 latency against concurrency for the main paths.

Needs wrk for the HTTP benchmarks (``apt-get install -y wrk``) and a Redis server (``--redis``).
``bench/token_approx.py`` compares token counts with Meta's tokenizers, shipped in a wheel that has to be
downloaded first; it runs only when ``--llama-wheel PATH`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS, ROOT, machine

PLOT = ROOT / "docs" / "img" / "latency-vs-concurrency.png"


@dataclass
class Bench:
    name: str
    args: list[str]
    quick: list[str]
    #: Whether the script writes its own results/<name>.md (else its output is saved there).
    writes_results: bool = True
    #: The script prints plain text, not Markdown: saved inside a code fence.
    plain: bool = False
    needs: list[str] = field(default_factory=list)


def benchmarks(redis: str, plot_path: Path) -> list[Bench]:
    plot = os.path.relpath(plot_path, ROOT)  # scripts run from the repository root
    items = [
        Bench(
            "fullstack",
            ["--seconds", "4", "--concurrency", "1", "4", "16", "64", "--redis", redis, "--plot", plot],
            ["--seconds", "2", "--concurrency", "1", "4", "16", "64", "--redis", redis, "--plot", plot],
            needs=["wrk"],
        ),
        Bench(
            "stack",
            ["--seconds", "3", "--rounds", "3", "--redis", redis],
            ["--seconds", "2", "--rounds", "1", "--redis", redis],
            needs=["wrk"],
        ),
        Bench(
            "stack_cpu",
            ["--requests", "2000", "--rounds", "5", "--layers", "--redis", redis],
            ["--requests", "500", "--rounds", "2", "--redis", redis],
        ),
        Bench("memory", ["--redis", redis], ["--redis", redis]),
        Bench("first_request", ["--redis", redis], ["--starts", "2", "--redis", redis]),
        Bench("redis_latency", ["--redis", redis], ["--pairs", "50", "--redis", redis]),
        Bench("router", ["--seconds", "8"], ["--seconds", "2"], needs=["wrk"]),
        Bench("dialects", ["--seconds", "6"], ["--seconds", "2"], needs=["wrk"]),
        Bench(
            "cache", ["--seconds", "4", "--rounds", "3"], ["--seconds", "2", "--rounds", "1"], needs=["wrk"]
        ),
        Bench("vector_index", [], ["--points", "5000"]),
        Bench("translation", ["--rounds", "3000"], ["--rounds", "500"]),
        Bench("redact", ["--rounds", "200"], ["--rounds", "40"]),
        Bench("request_log", [], ["--rows", "50000", "--requests", "5000"], writes_results=False, plain=True),
        Bench("dashboard", [], ["--rows", "100000", "--runs", "3"], writes_results=False, plain=True),
        Bench("runtime", [], ["--quick"], writes_results=False),
        Bench("semantic_eval", [], [], writes_results=False, plain=True),
    ]
    if (Path(__file__).parent / "budget.py").exists():
        items.insert(1, Bench("budget", ["--redis", redis], ["--redis", redis, "--requests", "1000"]))
    return items


def run(bench: Bench, quick: bool, extra: list[str]) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).parent / f"{bench.name}.py"),
        *(bench.quick if quick else bench.args),
    ]
    command += extra
    print(f"\n== {bench.name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    start = time.monotonic()
    process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - start
    sys.stderr.write(process.stderr[-4000:])
    status = "ok" if process.returncode == 0 else f"failed (exit {process.returncode})"
    if process.returncode == 0 and not bench.writes_results:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        output = f"```text\n{process.stdout.strip()}\n```\n" if bench.plain else process.stdout
        text = f"# bench/{bench.name}.py\n\n{stamp} — {machine()}\n\n{output}"
        (RESULTS / f"{bench.name}.md").write_text(text, encoding="utf-8")
    if process.returncode != 0:
        print(process.stdout[-2000:], file=sys.stderr)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "name": bench.name,
        "command": " ".join(["python", f"bench/{bench.name}.py", *command[2:]]),
        "status": status,
        "seconds": round(seconds, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def budget_checks() -> list[dict[str, Any]]:
    """DESIGN.md's performance budget against this run's figures (fullstack.json)."""
    data = _load("fullstack")
    if data is None:
        return []
    by = {(r["name"], r["concurrency"]): r for r in data["results"]}
    levels = sorted({r["concurrency"] for r in data["results"]})
    low, high = levels[0], max(c for c in levels if c <= 32) if any(c <= 32 for c in levels) else levels[-1]

    def rps(name: str, c: int) -> float:
        return float(by[(name, c)]["requests_per_s"])

    def p50(name: str, c: int) -> float:
        return float(by[(name, c)]["p50_ms"])

    direct, bare, proxy = "FakeProvider direct", "bare ASGI app, fixed JSON", "bare proxy, aiohttp"
    router, full, hit = "router pass-through", "full stack pass-through", "exact cache hit"
    checks = [
        (
            "router p50 over calling the provider directly",
            f"c={low}",
            "< 1 ms",
            p50(router, low) - p50(direct, low),
            "ms",
            lambda v: v < 1,
        ),
        (
            "router throughput / bare aiohttp proxy",
            f"c={high}",
            ">= 60%",
            rps(router, high) / rps(proxy, high),
            "%",
            lambda v: v >= 0.6,
        ),
        (
            "full stack p50 over calling the provider directly",
            f"c={low}",
            "< 2 ms",
            p50(full, low) - p50(direct, low),
            "ms",
            lambda v: v < 2,
        ),
        (
            "full stack throughput / LiteLLM proxy (37 req/s, an earlier measurement)",
            f"c={high}",
            ">= 30x",
            rps(full, high) / 37.0,
            "x",
            lambda v: v >= 30,
        ),
        (
            "exact cache hit throughput / bare ASGI app",
            f"c={high}",
            ">= 50%",
            rps(hit, high) / rps(bare, high),
            "%",
            lambda v: v >= 0.5,
        ),
    ]
    cache = _load("cache")
    stack = _load("stack")
    if stack is not None and isinstance(stack["results"], dict):
        where = f"c={stack['results']['concurrency']}"
        for ratio in stack["results"]["ratios"]:
            unit = "x" if ratio["target"].endswith("x") else "%"
            target, value, met = ratio["target"], ratio["measured"], ratio["met"]
            checks.append((ratio["what"], where, target, value, unit, lambda _v, met=met: met))
    rows = [
        {
            "budget": what,
            "where": where,
            "target": target,
            "measured": value,
            "unit": unit,
            "met": bool(ok(value)),
        }
        for what, where, target, value, unit, ok in checks
    ]
    if cache is not None:
        inproc = cache["results"].get("exact_in_process") if isinstance(cache["results"], dict) else None
        in_process = inproc.get("hit_p50_ms") if isinstance(inproc, dict) else None
        if in_process is not None:
            rows.append(
                {
                    "budget": "exact cache hit p50, in process",
                    "where": "ASGI call",
                    "target": "< 1 ms",
                    "measured": in_process,
                    "unit": "ms",
                    "met": in_process < 1,
                }
            )
    return rows


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0%}"
    if unit == "x":  # one decimal below 10: a p99 of 4.5 times the p50 is not "5x" against a 5x target
        return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"
    if unit == "ms abs":
        return f"{value:.3f} ms"
    return f"{value:+.3f} ms" if unit == "ms" else f"{value}"


def merged_runs(runs: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """This invocation's runs, plus the latest earlier run of every benchmark not run now (``--only``)."""
    previous = _load("summary") or {}
    by_name = {r["name"]: {"date": previous.get("date", "?"), **r} for r in previous.get("runs", [])}
    by_name.update({r["name"]: r for r in runs})
    return [by_name[n] for n in order if n in by_name] + [r for n, r in by_name.items() if n not in order]


def summary(runs: list[dict[str, Any]], quick: bool) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    checks = budget_checks()
    lines = [
        f"{stamp} — {machine()}" + (" (quick run: shorter measurements)" if quick else ""),
        "",
        "| benchmark | command | status | seconds | run at | load average after | results |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | `{r['command']}` | {r['status']} | {r['seconds']:.0f} | {r['date']} "
        f"| {r.get('load_average', '?')} | `bench/results/{r['name']}.md` |"
        for r in runs
    ]
    if checks:
        lines += [
            "",
            "| performance budget (DESIGN.md, issue 21) | where | target | measured | met |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['budget']} | {c['where']} | {c['target']} | {_fmt(c['measured'], c['unit'])} | {'yes' if c['met'] else 'no'} |"
            for c in checks
        ]
    for stem, title in (
        ("stack", "The whole gateway against the bare limits (`bench/stack.py`)"),
        ("memory", "Memory per worker (`bench/memory.py`)"),
        ("fullstack", "Latency against concurrency (`bench/fullstack.py`)"),
    ):
        path = RESULTS / f"{stem}.md"
        if path.exists():
            table = path.read_text(encoding="utf-8").split("\n", 3)[-1]
            lines += ["", f"### {title}", "", table.strip()]
    (RESULTS / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    payload = {
        "date": stamp,
        "machine": machine(),
        "load_average": load,
        "quick": quick,
        "runs": runs,
        "budget": checks,
    }
    (RESULTS / "summary.json").write_text(
        json.dumps(payload, indent=2, default=asdict) + "\n", encoding="utf-8"
    )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter measurements (minutes, not tens of minutes)"
    )
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    parser.add_argument("--skip", nargs="+", default=[], help="leave these benchmarks out")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--plot", type=Path, default=PLOT, help="where to draw the latency plot")
    parser.add_argument("--llama-wheel", type=Path, help="llama-models wheel for bench/token_approx.py")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    todo = [
        b
        for b in benchmarks(args.redis, args.plot)
        if (not args.only or b.name in args.only) and b.name not in args.skip
    ]
    if args.llama_wheel:
        todo.append(
            Bench("token_approx", [str(args.llama_wheel)], [str(args.llama_wheel)], writes_results=False)
        )
    runs = [run(bench, args.quick, []) for bench in todo]
    order = [b.name for b in benchmarks(args.redis, args.plot)] + ["token_approx"]
    summary(merged_runs(runs, order), args.quick)
    if any(r["status"] != "ok" for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
