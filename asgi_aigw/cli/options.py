"""What the store commands (``aigw keys``, ``aigw budget``, ``aigw cache``) share: the configuration
file option and its reading."""

from __future__ import annotations

import argparse
import os

from ..config import GatewayConfig, load_config

#: The configuration file read when ``--config`` is not given.
CONFIG_ENV = "AIGW_CONFIG"


def store_options(section: str, store_help: str) -> argparse.ArgumentParser:
    """A parent parser: ``--config`` (a configuration with a ``section`` section) and ``--store``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help=f"gateway configuration with a {section} section (default: ${CONFIG_ENV})",
    )
    common.add_argument("--store", metavar="URL", help=store_help)
    return common


def configuration(args: argparse.Namespace) -> GatewayConfig | None:
    """The configuration ``--config`` names, else ``$AIGW_CONFIG``; ``None`` when neither is given."""
    path = args.config or os.environ.get(CONFIG_ENV)
    return load_config(path) if path else None
