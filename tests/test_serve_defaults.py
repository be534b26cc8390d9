"""`aigw serve` refuses what cannot work with one line before its banner, and the demo lists and
answers only the models it has (any other name is a quick 404, not retries)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_aigw.cli.demo import DEMO_MODELS
from asgi_aigw.cli.preflight import serve_refusal
from asgi_aigw.config import GatewayConfig
from asgi_aigw.testing.server import free_port

from .support import aigw_serve

pytestmark = pytest.mark.e2e

BANNER = "OpenAI base URL"


def aigw(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asgi_aigw.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """Exit status 2, one line on stderr saying why and what to do, and no banner."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aigw serve: ")
    for phrase in phrases:
        assert phrase in lines[0]
    assert BANNER not in result.stderr + result.stdout


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_a_port_out_of_range_is_refused(port: str, tmp_path: Path) -> None:
    assert_refused(aigw("serve", "--demo", "--port", port, cwd=tmp_path), "1 to 65535")


def test_a_port_in_use_is_refused_before_the_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = aigw("serve", "--demo", "--port", str(port), cwd=tmp_path)
    assert_refused(result, f"port {port} on 127.0.0.1 is already in use", "another --port")


def test_demo_with_several_workers_is_refused(tmp_path: Path) -> None:
    result = aigw("serve", "--demo", "--workers", "2", "--port", str(free_port()), cwd=tmp_path)
    assert_refused(result, "--demo runs in one process", "drop --workers")


def test_zero_workers_is_refused(tmp_path: Path) -> None:
    result = aigw("serve", "--demo", "--workers", "0", "--port", str(free_port()), cwd=tmp_path)
    assert_refused(result, "--workers 1 or more")


@pytest.mark.parametrize(
    ("yaml", "phrases"),
    [
        ("log: {store: 'chdb://.aigw/chdb'}\n", ("log.store chdb://.aigw/chdb", "clickhouse://")),
        ("log: {}\n", ("log.store chdb://", "clickhouse://")),  # chDB is the default sink
        ("cache: {store: 'memory://'}\n", ("cache.vector_store qdrant-edge://", "qdrant+http://")),
        ("cache: {vector_store: 'qdrant+local://vectors'}\n", ("cache.vector_store qdrant+local://vectors",)),
    ],
    ids=["chdb-sink", "default-sink", "default-vectors", "qdrant-local"],
)
def test_single_process_stores_with_several_workers_are_refused(
    yaml: str, phrases: tuple[str, ...], tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml)
    result = aigw(
        "serve", "--config", str(config), "--workers", "3", "--port", str(free_port()), cwd=tmp_path
    )
    assert_refused(result, "--workers 3 starts 3", *phrases)


def test_server_stores_with_several_workers_pass_the_checks() -> None:
    config = GatewayConfig.model_validate(
        {
            "log": {"store": "clickhouse://ch:8123/db"},
            "cache": {"store": "redis://redis:6379/0", "vector_store": "qdrant+http://qdrant:6333"},
        }
    )
    port = free_port()
    assert serve_refusal(config, host="127.0.0.1", port=port, workers=4, demo=False) is None
    # one worker may use the embedded stores
    assert (
        serve_refusal(
            GatewayConfig.model_validate({"log": {}}), host="127.0.0.1", port=port, workers=1, demo=False
        )
        is None
    )


# -- the demo lists and answers only its own models ----------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # keys and hosts in the environment must not add anything to the demo
    env = {**os.environ, "OPENAI_API_KEY": "test-key-not-real", "OLLAMA_HOST": "127.0.0.1:9"}
    with aigw_serve("--demo", cwd=tmp_path_factory.mktemp("demo"), env=env) as base:
        yield f"{base}/ai/v1"


def test_demo_lists_only_its_own_models(demo: str) -> None:
    models = httpx.get(f"{demo}/models", timeout=10).json()
    assert sorted(m["id"] for m in models["data"]) == sorted(DEMO_MODELS)


@pytest.mark.parametrize("model", ["ollama/llama3.2", "openai/gpt-4o", "no-such-model"])
def test_demo_answers_an_unknown_model_with_a_quick_404(model: str, demo: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    httpx.post(f"{demo}/chat/completions", json={**body, "model": "demo"}, timeout=30)  # warm up
    started = time.monotonic()
    response = httpx.post(f"{demo}/chat/completions", json=body, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-4o-mini" in error["message"]  # names what the demo serves
    # no upstream was tried (that ends in a 503, after 0.65 s of retries); the bound is loose for busy
    # test machines and catches a request that waits for anything
    assert elapsed < 2.0
    assert "x-aigw-attempts" not in response.headers
