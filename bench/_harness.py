"""Shared benchmark plumbing: uvicorn processes on loopback, wrk runs, Markdown/JSON results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server(str):
    """A server's base URL that also knows its process (for CPU accounting, or to stop it early)."""

    pid: int
    process: subprocess.Popen[bytes]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def uvicorn_process(
    target: str, *, factory: bool = False, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[Server]:
    """Run ``uvicorn target`` (uvloop + httptools, access log off) on a free port; yield its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        str(workers),
    ]
    if factory:
        command.append("--factory")
    with serve(
        command, port, env=env or {}, what=target, start_timeout=30, poll=0.05, stop_timeout=10
    ) as base:
        yield base


@contextlib.contextmanager
def serve(
    command: list[str],
    port: int,
    *,
    env: dict[str, str],
    what: str,
    start_timeout: float,
    poll: float,
    stop_timeout: float,
) -> Iterator[Server]:
    """Start ``command`` (a server that will listen on ``port``) with the repository and bench/ importable,
    yield its base URL once the port accepts connections, and stop it at the end (killed after
    ``stop_timeout`` seconds)."""
    pythonpath = os.pathsep.join([str(ROOT), str(ROOT / "bench")])
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": pythonpath, **env})
    base = Server(f"http://127.0.0.1:{port}")
    base.pid = process.pid
    base.process = process
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start") from None
                time.sleep(poll)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def delete_keys(url: str, prefix: str) -> None:
    """Delete a run's Redis keys (budget windows, cached answers): everything under ``prefix``."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])


def letters(n: int) -> str:
    """A number spelled in letters (digits would give the PII patterns work), as unique_bodies_lua's."""
    out = ""
    while True:
        out += chr(97 + n % 26)
        n //= 26
        if n == 0:
            return out


def unique_bodies_lua(content: str, tag: str) -> str:
    """A wrk script that sends every request a new chat body: ``content``, then the Lua expression
    ``tag``, then the wrk thread's and the request's counters in letters (letters only, so no PII
    pattern fires)."""
    return r"""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
local function letters(n)
  local s = ""
  repeat
    s = s .. string.char(97 + n % 26)
    n = math.floor(n / 26)
  until n == 0
  return s
end
function request()
  counter = counter + 1
  local body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "CONTENT'
    .. TAG .. letters(tid) .. " " .. letters(counter) .. '"}]}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["x-tenant-id"] = "bench"}, body)
end
""".replace("CONTENT", content, 1).replace("TAG", tag, 1)


@dataclass
class LoadResult:
    name: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    #: CPU time the server process spent per request (robust to other load on the machine).
    cpu_us_per_request: float | None = None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is needed for this benchmark: apt-get install -y wrk")
    return wrk


def wrk(
    name: str,
    url: str,
    body: bytes,
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
    pid: int | None = None,
    lua: str | None = None,
) -> LoadResult:
    """POST ``body`` to ``url`` with ``concurrency`` connections for ``seconds``; throughput and latency.
    ``lua``: a wrk script of your own instead (a body per request, extra headers)."""
    binary = require_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if lua is not None:
            script.write(lua)
        else:
            script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
            script.write("wrk.body = " + json.dumps(body.decode()) + "\n")
    try:
        threads = 1 if concurrency < 8 else 2
        if warmup:
            subprocess.run(
                [binary, "-t1", f"-c{concurrency}", f"-d{max(1, round(warmup))}s", "-s", script.name, url],
                check=True,
                capture_output=True,
            )
        cpu_before = cpu_seconds(pid) if pid else 0.0
        out = subprocess.run(
            [
                binary,
                f"-t{threads}",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        cpu_used = cpu_seconds(pid) - cpu_before if pid else None
    finally:
        os.unlink(script.name)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # anchored: a Stdev column such as "150.50%" must not pass for the 50% line
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    cpu_us = cpu_used / total * 1e6 if cpu_used is not None and total else None
    return LoadResult(name, concurrency, rps, p50, p99, errors, total, cpu_us)


def check_answers(url: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    headers = {"content-type": "application/json", **(headers or {})}
    response = httpx.post(url, content=body, headers=headers, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} ({cpu})"


def write_results(stem: str, title: str, table: str, data: object) -> None:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = f"# {title}\n\n{stamp} — {machine()}\n\n"
    (RESULTS / f"{stem}.md").write_text(header + table + "\n", encoding="utf-8")
    payload = {"date": stamp, "machine": machine(), "results": data}
    (RESULTS / f"{stem}.json").write_text(
        json.dumps(payload, indent=2, default=asdict) + "\n", encoding="utf-8"
    )
    print(header + table)


def load_table(results: list[LoadResult]) -> list[str]:
    """The Markdown table of load results, one row per target and concurrency."""
    return [
        "| target | concurrency | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r.name} | {r.concurrency} | {r.requests_per_s:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | "
            f"{r.cpu_us_per_request or 0:,.0f} | {r.errors} |"
            for r in results
        ),
    ]
