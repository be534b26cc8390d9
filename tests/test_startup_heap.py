"""An ``aigw serve`` worker freezes the heap it built, so full collections no longer walk it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_aigw.cli.serve import app_factory


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual


def test_a_serve_worker_freezes_what_it_built(
    unfrozen: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "router:\n  models:\n    - name: gpt-4o-mini\n      deployments:\n"
        "        - {provider: openai, model: gpt-4o-mini, api_key: sk-test-not-a-real-key}\n"
    )
    monkeypatch.setenv("AIGW_CONFIG", str(config))
    monkeypatch.delenv("AIGW_DEMO", raising=False)
    assert gc.get_freeze_count() == 0
    app = app_factory()
    frozen = gc.get_freeze_count()
    # the app and everything imported to build it are out of the collector's reach
    assert frozen > 10_000
    assert app is not None
