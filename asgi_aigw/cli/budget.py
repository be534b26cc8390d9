"""``aigw budget set|show|reset TENANT``: live per-tenant limits and usage in the shared budget store."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from ..budget.config import BudgetConfig
from ..budget.report import tenant_windows
from ..budget.store import BudgetStore, StoreError
from ..budget.windows import WINDOWS, SlotClock, format_amount, format_duration, to_units
from ..config import ConfigError
from ..kernel.optional import MissingDependency
from ..stores.registry import BUDGET_STORES
from ..tenant.ids import InvalidTenantId, validate_tenant_id
from .options import configuration, store_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "budget",
        help="show or change a tenant's budget in the shared store",
        description="Live per-tenant limits (read by the gateway on the next request) and current usage.",
    )
    common = store_options("budget", "budget store URL (overrides the configuration)")
    common.add_argument("--key-prefix", help="store key prefix (overrides the configuration)")
    common.add_argument("tenant", metavar="TENANT")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    set_parser = actions.add_parser(
        "set",
        parents=[common],
        help="set live limits (a number, 'unlimited', or 'default' to drop the override)",
    )
    for window in WINDOWS:
        unit = "USD" if window.metric == "cost" else window.metric
        set_parser.add_argument(
            "--" + window.name.replace("_", "-"), dest=window.name, metavar=unit.upper(), help=window.label
        )
    set_parser.set_defaults(handler=run)

    show_parser = actions.add_parser("show", parents=[common], help="limits, usage and resets of a tenant")
    show_parser.add_argument("--json", action="store_true", help="print JSON")
    show_parser.set_defaults(handler=run)

    reset_parser = actions.add_parser("reset", parents=[common], help="zero the current windows' usage")
    reset_parser.add_argument("--limits", action="store_true", help="also drop the tenant's live overrides")
    reset_parser.set_defaults(handler=run)


def _budget_config(args: argparse.Namespace) -> BudgetConfig:
    loaded = configuration(args)
    config = (loaded.budget if loaded else None) or BudgetConfig()
    updates: dict[str, Any] = {}
    if args.store:
        updates["store"] = args.store
    if args.key_prefix is not None:
        updates["key_prefix"] = args.key_prefix
    if updates:
        config = config.model_copy(update=updates)
    if config.store.startswith("memory:"):
        raise ConfigError(
            "The budget store is memory://, which lives inside each gateway process: give a shared "
            "store with --store redis://HOST:PORT/DB (or a configuration whose budget.store is one)."
        )
    return config


def _parse_values(args: argparse.Namespace) -> dict[str, int | None]:
    values: dict[str, int | None] = {}
    for window in WINDOWS:
        raw = getattr(args, window.name)
        if raw is None:
            continue
        text = raw.strip().lower()
        if text == "default":
            values[window.name] = None
        elif text in ("unlimited", "none", "-1"):
            values[window.name] = -1
        else:
            try:
                number = float(text.lstrip("$")) if window.metric == "cost" else int(text)
            except ValueError:
                raise ConfigError(
                    f"--{window.name.replace('_', '-')} takes a number, 'unlimited' or 'default', not {raw!r}"
                ) from None
            if number < 0:
                raise ConfigError(f"--{window.name.replace('_', '-')} cannot be negative")
            try:
                values[window.name] = to_units(window, number)
            except ValueError as exc:  # not finite, or past what the store counts exactly
                raise ConfigError(f"--{window.name.replace('_', '-')}: {exc}") from None
    if not values:
        raise ConfigError("Nothing to set: give at least one limit, such as --tokens-per-minute 10000.")
    return values


async def _show(store: BudgetStore, config: BudgetConfig, tenant: str) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    for report in await tenant_windows(store, config, tenant):
        window, limit, left = report.window, report.limit_units, report.remaining_units
        windows.append(
            {
                "window": window.name,
                "limit": report.limit,
                "source": report.source,
                "used": report.used,
                "remaining": report.remaining,
                "resets_in_seconds": report.resets_in_seconds,
                "_text": (
                    "unlimited" if limit < 0 else format_amount(window, limit),
                    format_amount(window, report.used_units),
                    "-" if left is None else format_amount(window, left),
                    format_duration(report.resets_in_seconds),
                ),
            }
        )
    return {"tenant": tenant, "windows": windows}


def _print_table(report: dict[str, Any]) -> None:
    print(f"tenant {report['tenant']}")
    rows = [("window", "limit", "source", "used", "remaining", "resets in")]
    for entry in report["windows"]:
        limit, used, remaining, reset = entry["_text"]
        rows.append((entry["window"], limit, entry["source"], used, remaining, reset))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _act(args: argparse.Namespace, config: BudgetConfig, tenant: str) -> int:
    store: BudgetStore = BUDGET_STORES.open(
        config.store, key_prefix=config.key_prefix, timeout=max(config.store_timeout, 2.0)
    )
    try:
        if args.action == "set":
            await store.set_overrides(tenant, _parse_values(args))
        elif args.action == "reset":
            await store.reset_usage(tenant, SlotClock().slots(time.time()))
            if args.limits:
                await store.clear_overrides(tenant)
        report = await _show(store, config, tenant)
    finally:
        await store.aclose()
    if getattr(args, "json", False):
        for entry in report["windows"]:
            entry.pop("_text")
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        _print_table(report)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        tenant = validate_tenant_id(args.tenant)
        config = _budget_config(args)
        return asyncio.run(_act(args, config, tenant))
    except InvalidTenantId as exc:
        print(f"aigw budget: {exc}", file=sys.stderr)
    except (ConfigError, MissingDependency, ValueError) as exc:
        print(f"aigw budget: {exc}", file=sys.stderr)
    except StoreError as exc:
        print(f"aigw budget: the budget store cannot be reached ({exc})", file=sys.stderr)
    return 2
