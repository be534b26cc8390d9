"""The aigw command: `aigw serve --demo` answers with no key and no server, as the README promises."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_aigw.cli import main

from .support import aigw_serve

pytestmark = pytest.mark.e2e


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    with aigw_serve("--demo", cwd=tmp_path, env=env) as base:
        yield base


def test_demo_answers_json_and_streams(demo_server: str) -> None:
    url = f"{demo_server}/ai/v1/chat/completions"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello demo"}]}
    answer = httpx.post(url, json=body, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"].endswith("Hello demo")
    with httpx.stream("POST", url, json={**body, "stream": True}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    models = httpx.get(f"{demo_server}/ai/v1/models", timeout=10).json()
    assert "gpt-4o-mini" in [m["id"] for m in models["data"]]


def test_bad_config_is_reported_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("router: {models: [{name: x, deployments: [{provider: acme, model: m}]}]}")
    assert main(["serve", "--config", str(path)]) == 2
    assert "Unknown provider 'acme'" in capsys.readouterr().err


def test_help_without_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out
