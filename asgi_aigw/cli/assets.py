"""``aigw assets prepare --dir DIR`` and ``aigw assets check``: the offline model files.

``prepare`` copies every asset this machine has (from the ``offline`` extra's packages) into one
self-contained directory with a sha256 manifest, for machines that cannot install those packages.
``check`` verifies what the runtime would load (or a given directory) and prints the fix for anything
missing or corrupt. Neither touches the network.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_config
from ..runtime.assets import (
    AssetError,
    AssetStatus,
    check_asset_dir,
    check_runtime_assets,
    config_for_asset_dir,
    prepare_asset_dir,
)
from ..runtime.config import RuntimeConfig


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("assets", help="prepare or check the offline model files")
    commands = parser.add_subparsers(dest="assets_command", metavar="ACTION")

    prepare = commands.add_parser("prepare", help="write a self-contained, verified asset directory")
    prepare.add_argument("--dir", required=True, type=Path, help="directory to write (created)")
    prepare.add_argument("--config", metavar="FILE", help="gateway YAML whose runtime section to use")
    prepare.set_defaults(handler=run_prepare)

    check = commands.add_parser("check", help="say which assets are present, missing or corrupt")
    check.add_argument("--dir", type=Path, help="check this asset directory instead of the runtime's sources")
    check.add_argument("--config", metavar="FILE", help="gateway YAML whose runtime section to use")
    check.add_argument("--load", action="store_true", help="also load each model and run it once")
    check.set_defaults(handler=run_check)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _runtime_config(path: str | None) -> RuntimeConfig:
    return load_config(path).runtime if path else RuntimeConfig()


def _print(statuses: list[AssetStatus]) -> bool:
    width = max(len(status.asset) for status in statuses)
    for status in statuses:
        state = "ok" if status.ok else (status.problem or "missing")
        print(f"{status.asset:<{width}}  {'ok' if status.ok else 'FAIL':<4}  {status.source or state}")
        if not status.ok:
            if status.source:
                print(f"{'':<{width}}        {state}")
            if status.fix:
                print(f"{'':<{width}}        fix: {status.fix}")
    return all(status.ok for status in statuses)


def run_prepare(args: argparse.Namespace) -> int:
    try:
        config = _runtime_config(args.config)
        statuses = prepare_asset_dir(args.dir, config)
    except (ConfigError, AssetError) as exc:
        print(f"aigw assets prepare: {exc}", file=sys.stderr)
        return 1
    _print(statuses)
    files = sum(len(status.files) for status in statuses)
    print(f"wrote {files} files to {args.dir} (sha256 of each in {args.dir / 'manifest.json'})")
    # read back what was written: the directory must pass its own check
    ok = _print_failures(check_asset_dir(args.dir))
    if ok:
        where = args.dir.resolve()
        print(f"use it: set runtime.asset_dir: {where} (or AIGW_ASSET_DIR={where})")
    return 0 if ok else 1


def _print_failures(statuses: list[AssetStatus]) -> bool:
    bad = [status for status in statuses if not status.ok]
    if bad:
        _print(bad)
    return not bad


def run_check(args: argparse.Namespace) -> int:
    try:
        config = _runtime_config(args.config)
    except ConfigError as exc:
        print(f"aigw assets check: {exc}", file=sys.stderr)
        return 2
    if args.dir is not None:
        statuses = check_asset_dir(args.dir)
        config = config_for_asset_dir(args.dir, config)
    else:
        statuses = check_runtime_assets(config)
    ok = _print(statuses)
    if ok and args.load:
        ok = _load_all(config)
    return 0 if ok else 1


def _load_all(config: RuntimeConfig) -> bool:
    """Load every model as the gateway would and run it once (still no network)."""
    from ..runtime.embedder import create_embedder
    from ..runtime.pii import get_analyzer
    from ..runtime.tokens import get_encoding

    checks: list[tuple[str, Any]] = [
        ("tiktoken cl100k_base", lambda: len(get_encoding("cl100k_base", config).encode("hello world"))),
        ("tiktoken o200k_base", lambda: len(get_encoding("o200k_base", config).encode("hello world"))),
    ]
    if config.embedder.backend != "openai":  # the local ones: the model, or the table derived from it
        embedder: Any = create_embedder(config)
        checks.append(("embedder", lambda: len(embedder.embed_sync(["hello world"])[0])))
    checks.append(
        ("analyzer", lambda: len(get_analyzer(config).analyze(text="Mail jane@example.com", language="en")))
    )
    ok = True
    for name, check in checks:
        started = time.perf_counter()
        try:
            result = check()
        except Exception as exc:  # report every failure, not just the first
            print(f"load {name}: FAIL {exc}")
            ok = False
            continue
        print(f"load {name}: ok ({result}) in {time.perf_counter() - started:.2f}s")
    return ok
