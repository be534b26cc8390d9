"""``aigw cache purge [--tenant T]``: delete cached answers from the configured stores."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..config import ConfigError, GatewayConfig
from ..kernel.optional import MissingDependency
from ..stores.registry import EXACT_STORES, VECTOR_STORES
from .options import configuration


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cache", help="manage the semantic cache")
    commands = parser.add_subparsers(dest="cache_command", metavar="COMMAND")
    purge = commands.add_parser("purge", help="delete cached answers (all, or one tenant's)")
    source = purge.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="YAML configuration (default: $AIGW_CONFIG)")
    source.add_argument("--demo", action="store_true", help="the demo gateway's cache")
    purge.add_argument("--tenant", help="only this tenant's answers")
    purge.set_defaults(handler=run_purge)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _config(args: argparse.Namespace) -> GatewayConfig:
    if args.demo:
        from .demo import demo_config

        return demo_config()
    return configuration(args) or GatewayConfig()


async def _purge(config: GatewayConfig, tenant: str | None) -> tuple[int, int]:
    from ..cache.exact import ExactStore
    from ..cache.keys import tenant_tag
    from ..cache.vector import VectorStore

    assert config.cache is not None
    section = config.cache
    exact: ExactStore = EXACT_STORES.open(
        section.store, max_entries=section.max_entries, prefix=section.key_prefix
    )
    vector: VectorStore | None = None
    if section.vector_store is not None:
        vector = VECTOR_STORES.open(
            section.vector_store,
            collection=section.collection,
            api_key=section.qdrant_api_key,
            max_entries=section.max_entries,
        )
    tag = tenant_tag(tenant) if tenant is not None else None
    try:
        removed_exact = await exact.purge(tag)
        removed_vectors = await vector.purge(tag) if vector is not None else 0
    finally:
        await exact.aclose()
        if vector is not None:
            await vector.aclose()
    return removed_exact, removed_vectors


def run_purge(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"aigw cache purge: {exc}", file=sys.stderr)
        return 2
    if config.cache is None:
        print("aigw cache purge: the configuration has no 'cache' section.", file=sys.stderr)
        return 2
    for kind, url in (("exact", config.cache.store), ("vector", config.cache.vector_store)):
        if url in ("memory", "memory://"):
            print(f"note: the {kind} layer lives in the server's memory (memory://): restart it to clear.")
    try:
        exact, vectors = asyncio.run(_purge(config, args.tenant))
    except MissingDependency as exc:
        print(f"aigw cache purge: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Qdrant Edge keeps its directory locked while a server uses it.
        print(
            f"aigw cache purge: {type(exc).__name__}: {exc}\n"
            "If a gateway is running on a qdrant-edge:// directory, stop it first (the directory is "
            "locked while open), or use a Qdrant server.",
            file=sys.stderr,
        )
        return 1
    who = f"tenant {args.tenant!r}" if args.tenant is not None else "all tenants"
    print(f"purged {who}: {exact} exact entries, {vectors} vectors")
    return 0
