"""The ClickHouse sink: a ClickHouse server over HTTP, or chDB in process, both through clickhouse-connect.

clickhouse-connect's chDB backend (``interface="chdb"``) gives the same ``insert``/``query`` API as a
server, synchronously; chDB hosts one data directory per process, and takes a lock on it, so another
process (``aigw usage``) can open it only while this one has no client open. The sink therefore closes
its chDB client after a short idle time (see ``idle_close``; the writer doubles it after each close,
as chDB leaks threads on every reopen) and opens it again on the next batch.

Each batch is inserted with its batch id as ``insert_deduplication_token``; the table is created with
``non_replicated_deduplication_window`` so a batch retried after a lost acknowledgement is not stored
twice (replicated tables deduplicate by default).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from ..kernel.errors import ConfigError
from ..kernel.optional import require
from ..kernel.url_text import url_flag
from ..runtime.pages import release_package_pages
from .chdb_import import import_chdb_connection
from .config import DEFAULT_TABLE
from .encoded import EncodedRows
from .row import COLUMN_NAMES, COLUMNS, LogRow
from .rowbinary import row_encoder
from .sink_url import SinkURL, parse_sink_url

logger = logging.getLogger("asgi_aigw.logs")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Inserts remembered per table for deduplication of retried batches.
DEDUP_WINDOW = 1000
#: Seconds without a batch after which a chDB client is closed (releasing the data directory).
CHDB_IDLE_CLOSE = 1.0


def _default(kind: str) -> Any:
    if kind.startswith("Nullable"):
        return None
    if kind.startswith("Map"):
        return {}
    if kind == "Bool":
        return False
    if "String" in kind:
        return ""
    if kind.startswith("Float"):
        return 0.0
    return 0


#: Rows in RowBinary; a column a row lacks (spooled by an older version of the package) gets its default.
_encode = row_encoder([(name, kind, _default(kind)) for name, kind in COLUMNS])


def quote_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid ClickHouse table or database name (letters, digits, _).")
    return f"`{name}`"


def create_table_sql(database: str, table: str, ttl_days: int | None = None) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the request log: MergeTree, monthly partitions, one sort
    order for per-tenant queries, an optional TTL, and deduplication of retried inserts."""
    columns = ",\n  ".join(f"`{name}` {kind}" for name, kind in COLUMNS)
    ttl = f"\nTTL toDateTime(timestamp) + INTERVAL {int(ttl_days)} DAY" if ttl_days else ""
    name = f"{quote_identifier(database)}.{quote_identifier(table)}"
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (\n  {columns}\n)\n"
        "ENGINE = MergeTree\nPARTITION BY toYYYYMM(timestamp)\nORDER BY (tenant, timestamp)"
        f"{ttl}\nSETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
    )


class ClickHouseSink:
    """Inserts batches into a ClickHouse table, creating it (and its database) if absent.

    ``ClickHouseSink("clickhouse://user:pass@host:8123/db")``, ``ClickHouseSink("chdb:///var/lib/aigw")``,
    or ``ClickHouseSink(client=existing_client, database=..., table=...)`` (the sink never closes a client
    it did not open).
    """

    def __init__(
        self,
        target: SinkURL | str | None = None,
        *,
        client: Any = None,
        database: str = "default",
        table: str = DEFAULT_TABLE,
        ttl_days: int | None = None,
        idle_close: float | None = None,
    ) -> None:
        if target is None and client is None:
            raise ValueError("ClickHouseSink needs a URL (clickhouse://..., chdb://...) or a client")
        url = parse_sink_url(target, table=table, ttl_days=ttl_days) if isinstance(target, str) else target
        if url is not None and url.scheme not in ("clickhouse", "clickhouses", "chdb"):
            raise ValueError(f"ClickHouseSink cannot write to {url.scheme}:// (open it through LOG_STORES)")
        self.url = url
        self.database = url.database if url else database
        self.table = url.table if url else table
        self.ttl_days = url.ttl_days if url else ttl_days
        quote_identifier(self.database)
        quote_identifier(self.table)
        self.qualified_table = f"{quote_identifier(self.database)}.{quote_identifier(self.table)}"
        self.is_chdb = url is not None and url.scheme == "chdb"
        #: Seconds of idleness after which the writer closes the sink (chDB: release the directory).
        self.idle_close = (
            idle_close if idle_close is not None else (CHDB_IDLE_CLOSE if self.is_chdb else None)
        )
        self._client = client
        self._owns_client = client is None
        # Imported now, not at the first insert: that may come from the exit hook, when the libraries
        # can no longer register their own exit hooks (and a missing extra is better known early).
        self._driver: Any = None
        if client is None:
            if self.is_chdb:
                require("chdb", "chdb")
                import_chdb_connection()
            self._driver = require("clickhouse_connect", "chdb" if self.is_chdb else "clickhouse")
        self._schema_ready = False
        #: chDB: the engine's start-up pages were given back since it was opened
        self._pages_released = False
        self._lock = threading.Lock()
        if url is None:
            self.name = f"clickhouse-client/{self.database}.{self.table}"
        elif self.is_chdb:
            self.name = f"chdb://{url.path or ':memory:'}/{self.database}.{self.table}"
        else:
            self.name = f"{url.scheme}://{url.host}:{url.port or ''}/{self.database}.{self.table}"

    # -- connection ---------------------------------------------------------------------------------

    def _connect(self) -> Any:
        url = self.url
        assert url is not None
        if self.is_chdb:
            return self._driver.get_client(interface="chdb", path=url.path)
        options: dict[str, Any] = {}
        for key in ("connect_timeout", "send_receive_timeout"):
            if key in url.options:
                options[key] = float(url.options[key])
        options.setdefault("send_receive_timeout", 30.0)
        # clickhouses:// only (checked with the URL): a private authority, a client certificate
        for key in ("ca_cert", "client_cert", "client_cert_key", "server_host_name"):
            if key in url.options:
                options[key] = url.options[key]
        if "verify" in url.options:
            options["verify"] = url_flag(url.options["verify"])
        return self._driver.get_client(
            host=url.host,
            port=url.port,
            username=url.username,
            password=url.password or "",
            secure=url.scheme == "clickhouses",
            # one insert at a time, possibly through a load balancer: no server-side session
            autogenerate_session_id=False,
            **options,
        )

    def client(self, *, ensure_schema: bool = True) -> Any:
        """The clickhouse-connect client, connected (and the table created) on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            if ensure_schema and not self._schema_ready:
                self._ensure_schema(self._client)
                self._schema_ready = True
            return self._client

    def _ensure_schema(self, client: Any) -> None:
        if self.database != "default":
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}")
        client.command(create_table_sql(self.database, self.table, self.ttl_days))
        # a table created by an older version: add the columns it lacks
        result = client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {table:String}",
            parameters={"db": self.database, "table": self.table},
        )
        existing = {row[0] for row in result.result_rows}
        for name, kind in COLUMNS:
            if name not in existing:
                client.command(f"ALTER TABLE {self.qualified_table} ADD COLUMN IF NOT EXISTS `{name}` {kind}")

    def open_early(self) -> None:
        """Connect now (chDB only; a server connects fast enough on the first insert, and may be down)."""
        if self.is_chdb:
            self.client()

    # -- LogSink ------------------------------------------------------------------------------------

    def encode(self, rows: Sequence[LogRow]) -> bytes:
        """``rows`` as :meth:`write` stores them (RowBinary: slices encoded apart join up), so that the
        writer can encode on its event loop, a few rows at a time, and pass :class:`EncodedRows`."""
        return _encode(rows)

    def write(self, rows: Sequence[LogRow], batch_id: str) -> None:
        # encoded before connecting: rows it cannot write fail without touching the table
        data = rows.encoded if isinstance(rows, EncodedRows) else _encode(rows)
        client = self.client()
        # RowBinary through raw_insert, not clickhouse-connect's insert: that imports pandas (see rowbinary)
        client.raw_insert(
            self.qualified_table,
            COLUMN_NAMES,
            data,
            settings={"insert_deduplication_token": batch_id},
            fmt="RowBinary",
        )
        if self.is_chdb and not self._pages_released:
            self._pages_released = True
            self._release_engine_pages()

    def _release_engine_pages(self) -> None:
        """After the engine's first insert: the pages of its library that starting it read and inserts
        do not (about 120 MB of the worker's RSS, see :mod:`asgi_aigw.runtime.pages`)."""
        release_package_pages("chdb")

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._pages_released = False  # a new engine starts on the next connection
            if client is not None and self._owns_client:
                client.close()
            elif client is not None:
                self._client = client

    # -- reading (aigw usage, tests) ----------------------------------------------------------------

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a query; ``{table}`` in ``sql`` is replaced by the qualified table name (the table is
        not created: reading a missing table is an error)."""
        client = self.client(ensure_schema=False)
        result = client.query(sql.replace("{table}", self.qualified_table), parameters=parameters or {})
        return [tuple(row) for row in result.result_rows]
