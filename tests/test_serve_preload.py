"""``aigw serve --preload``: the app and its models are loaded once, then the workers are forked and
share that memory (copy-on-write), where spawned workers each load their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from asgi_aigw.testing import FakeProvider, ServerThread
from asgi_aigw.testing.server import free_port

from .support import aigw_serve

pytest.importorskip("gunicorn")


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    server = ServerThread(FakeProvider())
    server.start()
    try:
        yield f"{server.base_url}/v1"
    finally:
        server.stop()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def shared_mb(pid: int) -> float:
    """Pages this process shares with others (``Shared_Clean`` + ``Shared_Dirty``), in MB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Shared_Clean:", "Shared_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux /proc needed")
@pytest.mark.parametrize(
    ("backend", "loaded_by_parent", "least_shared_mb"),
    [("fastembed", "onnxruntime", 85), ("static", "/static/all-MiniLM-L6-v2-", 60)],
)
def test_preloaded_workers_share_the_models_loaded_before_the_fork(
    tmp_path: Path, fake_url: str, backend: str, loaded_by_parent: str, least_shared_mb: int
) -> None:
    config = {
        "router": {
            "models": [
                {
                    "name": "gpt-4o-mini",
                    "deployments": [
                        {"model": "gpt-4o-mini", "base_url": fake_url, "api_key": "sk-test-not-a-real-key"}
                    ],
                }
            ]
        },
        "redact": {"regex_only": True},
        "cache": {"store": "memory://", "vector_store": "memory://"},
        "runtime": {"embedder": {"backend": backend}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("--config", str(path), "--workers", "2", "--preload")
    with aigw_serve(*args, cwd=tmp_path, env=os.environ) as base:
        url = f"{base}/ai/v1/chat/completions"
        with httpx.Client(timeout=60) as client:
            for question in ("How do I undo the last git commit?", "How can I undo my last commit in git?"):
                body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
                # a new connection each time: both workers serve some
                response = client.post(url, json=body, headers={"connection": "close"})
                assert response.status_code == 200, response.text
        master = next(p for p in children(os.getpid()) if "asgi_aigw.cli" in _cmdline(p))
        # gunicorn forks its workers one after the other: the requests may all have been served by
        # the first before the second exists
        deadline = time.monotonic() + 15
        while len(workers := children(master)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2
        # the embedding model (or its static table) and the PII engine were loaded by the parent
        assert loaded_by_parent in maps(master)
        assert "/regex/_regex" in maps(master)  # the regex-only PII engine's compiled patterns
        assert "/spacy/" not in maps(master)  # regex-only: neither Presidio nor spaCy
        for worker in workers:
            # the model's weights (or the table) and the tokenizers' tables are among the pages each
            # worker shares: about 107 MB in all with the model's int8 products (135 with float ones,
            # whose weights are float32), where spawned workers share about 55 MB (the libraries' files)
            assert loaded_by_parent in maps(worker)
            assert shared_mb(worker) > least_shared_mb


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_preload_refuses_a_chdb_log(tmp_path: Path) -> None:
    # chDB's engine, imported by the parent, hangs on its first query in a forked worker
    done = subprocess.run(
        [sys.executable, "-m", "asgi_aigw.cli", "serve", "--demo", "--preload", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--preload" in done.stderr
    assert "chDB" in done.stderr
