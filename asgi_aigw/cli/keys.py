"""``aigw keys create|list|revoke``: gateway API keys in the configuration's key store.

``create`` prints the key once and stores only its digest; ``create --print-config`` stores nothing and
prints the ``tenant.api_keys`` entry to paste into the configuration file instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from ..config import ConfigError
from ..kernel.optional import MissingDependency
from ..stores.registry import KEY_STORES
from ..tenant.config import KeyLimits, TenantConfig
from ..tenant.ids import InvalidTenantId, validate_tenant_id
from ..tenant.key_store import KeyStoreError, RedisKeyStore
from ..tenant.keys import KEY_ID, KeyRecord, hash_key, new_key
from .options import configuration, store_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="create, list or revoke gateway API keys",
        description="Gateway API keys (aigw_...) in the key store of the configuration (tenant.key_store).",
    )
    common = store_options("tenant", "key store URL (overrides tenant.key_store)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", parents=[common], help="make a key; it is printed once")
    create.add_argument("tenant", metavar="TENANT")
    create.add_argument("--user", help="the user the key's requests are recorded as (default: key-<id>)")
    create.add_argument("--name", default="", help="a label for people")
    create.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="WINDOW=VALUE",
        help="the key's own budget limit, such as tokens_per_day=100000 or cost_per_month=20 (repeatable)",
    )
    create.add_argument(
        "--print-config",
        action="store_true",
        help="store nothing: print the tenant.api_keys entry (the digest) to paste into the configuration",
    )
    create.set_defaults(handler=run)

    listing = actions.add_parser("list", parents=[common], help="a tenant's keys (never the keys themselves)")
    listing.add_argument("tenant", metavar="TENANT")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run)

    revoke = actions.add_parser("revoke", parents=[common], help="refuse a key from the next request on")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(handler=run)


def _tenant_config(args: argparse.Namespace) -> TenantConfig:
    config = configuration(args)
    return (config.tenant if config else None) or TenantConfig()


def _store(args: argparse.Namespace, config: TenantConfig) -> RedisKeyStore:
    url = args.store or config.key_store
    if url is None:
        raise ConfigError(
            "No key store: set tenant.key_store in the configuration (--config) or give --store "
            "redis://HOST:PORT/DB; for keys kept in the configuration file use 'create --print-config'."
        )
    store: RedisKeyStore = KEY_STORES.open(
        url, prefix=config.key_store_prefix, timeout=max(config.key_store_timeout, 2.0)
    )
    return store


def parse_limits(values: list[str]) -> dict[str, float]:
    """``["tokens_per_day=1000", ...]`` checked against the budget windows."""
    raw: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--limit takes WINDOW=VALUE (tokens_per_day=100000), not {item!r}")
        raw[name.strip().replace("-", "_")] = value.strip().lstrip("$")
    try:
        return KeyLimits.model_validate(raw).as_dict()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg'].lower()}" for error in exc.errors()
        )
        windows = ", ".join(KeyLimits.model_fields)
        raise ConfigError(f"--limit: {problems} (windows: {windows})") from None


def _created(record: KeyRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_entry(record: KeyRecord) -> dict[str, Any]:
    """The ``tenant.api_keys`` entry of ``record`` (its digest, never the key)."""
    entry: dict[str, Any] = {"id": record.id, "hash": record.hash, "tenant": record.tenant}
    if record.user:
        entry["user"] = record.user
    if record.name:
        entry["name"] = record.name
    entry["created"] = _created(record)
    if record.limits:
        entry["limits"] = dict(record.limits)
    return entry


async def _create(args: argparse.Namespace, config: TenantConfig) -> int:
    tenant = validate_tenant_id(args.tenant)
    user = validate_tenant_id(args.user) if args.user else None
    limits = parse_limits(args.limit)
    key_id, key = new_key()
    record = KeyRecord(key_id, hash_key(key), tenant, user, args.name, time.time(), False, limits)
    if args.print_config:
        print(key)
        print("# the key above is shown once; add this entry under tenant.api_keys:")
        print(yaml.safe_dump([config_entry(record)], sort_keys=False).rstrip())
        return 0
    store = _store(args, config)
    try:
        await store.add(record)
    finally:
        await store.aclose()
    print(f"Created key {key_id} for tenant {tenant}; it is shown once, store it now:", file=sys.stderr)
    print(key)
    return 0


async def _list(args: argparse.Namespace, config: TenantConfig) -> int:
    tenant = validate_tenant_id(args.tenant)
    store = _store(args, config)
    try:
        records = await store.list_keys(tenant)
    finally:
        await store.aclose()
    if args.json:
        print(orjson.dumps([r.public() for r in records], option=orjson.OPT_INDENT_2).decode())
        return 0
    rows = [("id", "name", "user", "created", "revoked", "limits")]
    for r in records:
        limits = ",".join(f"{k}={v:g}" for k, v in r.limits.items()) or "-"
        rows.append((r.id, r.name or "-", r.user or "-", _created(r), "yes" if r.revoked else "no", limits))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _revoke(args: argparse.Namespace, config: TenantConfig) -> int:
    if not KEY_ID.fullmatch(args.key_id):
        raise ConfigError("a key id is the 12 hex digits after 'aigw_' (see 'aigw keys list TENANT')")
    store = _store(args, config)
    try:
        record = await store.revoke(args.key_id)
    finally:
        await store.aclose()
    if record is None:
        print(f"aigw keys: no key {args.key_id} in the key store", file=sys.stderr)
        return 1
    print(f"Revoked key {record.id} of tenant {record.tenant}: refused from the next request on.")
    return 0


_ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}


def run(args: argparse.Namespace) -> int:
    try:
        config = _tenant_config(args)
        return asyncio.run(_ACTIONS[args.action](args, config))
    except (ConfigError, InvalidTenantId, MissingDependency, ValueError) as exc:
        print(f"aigw keys: {exc}", file=sys.stderr)
    except (KeyStoreError, OSError) as exc:
        print(f"aigw keys: the key store cannot be reached ({exc})", file=sys.stderr)
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            print(f"aigw keys: the key store cannot be reached ({exc})", file=sys.stderr)
        else:
            raise
    return 2
