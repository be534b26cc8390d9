"""Log sink URLs: ``chdb://``, ``clickhouse(s)://``, ``jsonl://``, ``memory://``, parsed once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ..kernel.errors import ConfigError
from ..kernel.url_text import hide_password, url_flag
from ..stores.registry import LOG_STORES, scheme_of
from .config import DEFAULT_TABLE


@dataclass(frozen=True)
class SinkURL:
    """A parsed sink URL (see :func:`parse_sink_url`)."""

    scheme: str
    #: chDB / JSONL: a filesystem path (absolute), or ``None`` for chDB in memory.
    path: str | None = None
    host: str = "localhost"
    port: int | None = None
    username: str | None = None
    password: str | None = None
    database: str = "default"
    table: str = DEFAULT_TABLE
    ttl_days: int | None = None
    options: dict[str, str] = field(default_factory=dict)


#: The query options each scheme takes besides ``table`` and ``ttl_days``: any other is refused rather
#: than ignored (a CA file that is never read would fail only at the first insert, in a worker thread).
_SERVER_OPTIONS = ("database", "connect_timeout", "send_receive_timeout")
#: clickhouse-connect's TLS options, for ``clickhouses://``.
TLS_OPTIONS = ("ca_cert", "verify", "client_cert", "client_cert_key", "server_host_name")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "memory": (),
    "chdb": ("database",),
    "jsonl": ("fsync",),
    "clickhouse": _SERVER_OPTIONS,
    "clickhouses": _SERVER_OPTIONS + TLS_OPTIONS,
}


def _check_options(scheme: str, query: dict[str, str], url: str) -> None:
    """Refuse an option the scheme does not take, and a value no client would."""
    known = _OPTIONS.get(scheme, ())
    shown = hide_password(url)
    for name in query:
        if name in known:
            continue
        if scheme == "clickhouse" and name in TLS_OPTIONS:
            raise ConfigError(f"{name} in the log sink URL {shown!r} needs clickhouses:// (TLS).")
        takes = ", ".join(("table", "ttl_days", *known))
        raise ConfigError(
            f"The log sink URL {shown!r} has an unknown option {name!r}: {scheme}:// takes {takes}."
        )
    for name in ("connect_timeout", "send_receive_timeout"):
        if name in query:
            try:
                if float(query[name]) <= 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    f"{name} in the log sink URL {shown!r} must be a number of seconds."
                ) from None
    for name in ("verify", "fsync"):
        if name in query and url_flag(query[name]) is None:
            raise ConfigError(f"{name} in the log sink URL {shown!r} must be true or false.")


def parse_sink_url(url: str, *, table: str | None = None, ttl_days: int | None = None) -> SinkURL:
    """Parse a sink URL; ``table`` and ``ttl_days`` are defaults that ``?table=``/``?ttl_days=`` override.

    ``chdb:///abs/path`` and ``jsonl:///abs/file`` take an absolute path, ``chdb://rel/path`` one
    relative to the working directory (resolved now); ``chdb://:memory:`` is chDB in memory.
    """
    LOG_STORES.check(url)  # the scheme is known, and its options are ones it takes (check_sink_url)
    return _parse(url, table, ttl_days)


def check_sink_url(url: str) -> None:
    """A :class:`ConfigError` for a sink URL that cannot work (an option its scheme does not take, a
    value no client would), found when the configuration is read (``LOG_STORES.check``)."""
    _parse(url, None, None)


def _parse(url: str, table: str | None, ttl_days: int | None) -> SinkURL:
    scheme = scheme_of(url)
    rest = url.partition("://")[2]
    rest, _, query_string = rest.partition("?")
    query = {key: values[-1] for key, values in parse_qs(query_string).items()}
    table = query.pop("table", None) or table or DEFAULT_TABLE
    if "ttl_days" in query:
        try:
            ttl_days = int(query.pop("ttl_days"))
        except ValueError:
            raise ConfigError(
                f"ttl_days in the log sink URL {hide_password(url)!r} must be a whole number."
            ) from None
    _check_options(scheme, query, url)
    if scheme == "memory":
        return SinkURL(scheme, table=table)
    if scheme in ("chdb", "jsonl"):
        location = unquote(rest)
        path: str | None
        if scheme == "chdb" and location in ("", ":memory:", "memory"):
            path = None
        elif not location:
            raise ConfigError(
                f"The log sink {hide_password(url)!r} names no file: write jsonl://path/to/requests.jsonl."
            )
        else:
            path = os.path.abspath(location)
        database = query.pop("database", "default")
        return SinkURL(scheme, path=path, database=database, table=table, ttl_days=ttl_days, options=query)
    parts = urlsplit(f"http://{rest}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"The port in the log sink URL {hide_password(url)!r} is not a number.") from None
    database = unquote(parts.path.strip("/")) or query.pop("database", "default")
    return SinkURL(
        scheme,
        host=parts.hostname or "localhost",
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        database=database,
        table=table,
        ttl_days=ttl_days,
        options=query,
    )
