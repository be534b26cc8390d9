"""``aigw usage``: spend, tokens, requests, cache hit ratio and latency per tenant and model (and user,
API key, dialect, day), through :func:`asgi_aigw.logs.read_usage`.

Reads the request log in ClickHouse, chDB or a JSONL file: ``--url``, else the ``log.store`` of
``--config``, else ``$AIGW_LOG_URL``, else the embedded default (the demo's ``chdb://.aigw/chdb``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from ..config import ConfigError, load_config
from ..kernel.optional import MissingDependency
from ..logs.config import DEFAULT_SINK, DEFAULT_TABLE

_URL_ENV = "AIGW_LOG_URL"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "usage", help="spend, tokens, cache hits and latency per tenant and model, from the request log"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--url",
        help="ClickHouse, chDB or JSONL URL of the log, or a JSONL file "
        f"(default: ${_URL_ENV} or {DEFAULT_SINK})",
    )
    source.add_argument("--config", metavar="FILE", help="read the log sink from this gateway configuration")
    parser.add_argument("--table", help=f"table name (default: the configuration's, or {DEFAULT_TABLE})")
    parser.add_argument("--tenant", help="only this tenant")
    parser.add_argument("--by-user", action="store_true", help="one row per tenant, user and model")
    parser.add_argument(
        "--by-key", action="store_true", help="one row per tenant, gateway API key (its id) and model"
    )
    parser.add_argument(
        "--by-dialect",
        action="store_true",
        help="one row per tenant, dialect (chat, messages, responses) and model",
    )
    parser.add_argument("--by-day", action="store_true", help="one row per UTC day, tenant and model")
    parser.add_argument(
        "--since", default="all", help="only requests this recent: 90m, 24h, 7d, 2w (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds to wait for a chDB directory a running gateway holds (it lets go when idle)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..logs.clickhouse import ClickHouseSink
    from ..logs.sink_url import parse_sink_url
    from ..logs.usage import GROUP_KEYS, GroupKey, UsageRow, parse_since, read_usage
    from ..logs.usage_table import format_table

    try:
        since = parse_since(args.since)
        url, table = _source(args)
        parsed = parse_sink_url(url if "://" in url else f"jsonl://{url}", table=table)
        if parsed.scheme == "memory":
            raise ConfigError("aigw usage reads ClickHouse, chDB or JSONL; the log sink is memory://.")
        missing = parsed.scheme in ("chdb", "jsonl") and parsed.path and not os.path.exists(parsed.path)
        if missing:
            print(
                f"aigw usage: no request log at {parsed.path} yet. Run the gateway with logging "
                "(aigw serve --demo), send it requests, then try again.",
                file=sys.stderr,
            )
            return 1
        source: Any = parsed.path if parsed.scheme == "jsonl" else ClickHouseSink(parsed)
    except (ConfigError, ValueError) as exc:
        print(f"aigw usage: {exc}", file=sys.stderr)
        return 2
    wanted = {
        "day": args.by_day,
        "tenant": True,
        "user": args.by_user,
        "key": args.by_key,
        "dialect": args.by_dialect,
    }
    keys: list[GroupKey] = [key for key in GROUP_KEYS if wanted.get(key, True)]
    name = source.name if isinstance(source, ClickHouseSink) else f"jsonl://{source}"
    try:
        if isinstance(source, ClickHouseSink):
            _connect(source, args.wait)
        rows = read_usage(source, since=since, tenant=args.tenant, group_by=keys)
        totals: UsageRow | None = None
        if len(rows) > 1:
            [totals] = read_usage(source, since=since, tenant=args.tenant, group_by=())
    except MissingDependency as exc:
        print(f"aigw usage: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"aigw usage: cannot read {name}: {_reason(exc, source)}", file=sys.stderr)
        return 1
    finally:
        if isinstance(source, ClickHouseSink):
            source.close()
    if args.json:
        for row in rows:
            # the keys of this report only, the day as ISO text
            record = {k: v for k, v in asdict(row).items() if v is not None or k not in GROUP_KEYS}
            if row.day is not None:
                record["day"] = row.day.isoformat()
            print(json.dumps({**record, "cache_hit_ratio": row.cache_hit_ratio}))
        return 0
    if not rows:
        print(
            "no requests logged" + (f" for tenant {args.tenant}" if args.tenant else "") + " in this window"
        )
        return 0
    window = "all time" if since is None else f"the last {args.since}"
    print(f"usage over {window} from {name}\n")
    print(format_table(rows, totals))
    return 0


def _source(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.url:
        return args.url, args.table
    if args.config:
        config = load_config(args.config)
        if config.log is None or config.log.store is None:
            raise ConfigError(f"{args.config} configures no request log (log.store).")
        return config.log.store, args.table or config.log.table
    return os.environ.get(_URL_ENV) or DEFAULT_SINK, args.table


def _connect(sink: Any, wait: float) -> None:
    """Open the client; a chDB directory held by a running gateway is retried until ``wait`` runs out."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with _quiet_stderr(sink.is_chdb):
                sink.client(ensure_schema=False)
            return
        except MissingDependency:
            raise
        except Exception:
            if not sink.is_chdb or time.monotonic() >= deadline:
                raise
            time.sleep(0.25)


@contextlib.contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[None]:
    """chDB prints its own lock errors on the process's stderr; the retry loop reports once instead."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _reason(exc: Exception, sink: Any) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if getattr(sink, "is_chdb", False) and ("EmbeddedServer" in text or "lock" in text.lower()):
        return (
            "another process holds this chDB directory (chDB allows one process per directory). "
            "A running gateway lets go after a pause in traffic (1 s, doubling each time it lets go); "
            "retry, or raise --wait."
        )
    if "UNKNOWN_TABLE" in text or "doesn't exist" in text or "does not exist" in text:
        return "the request log table does not exist yet (no request was logged)."
    return text
