"""``LogConfig``: the ``log:`` section of the gateway configuration (request log and metrics).

```yaml
log:
  store: clickhouse://aigw:${CLICKHOUSE_PASSWORD}@clickhouse:8123/observability
  ttl_days: 90
  metrics: {tenant_label: true}
```

"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..kernel.config import ConfigSection
from ..stores.registry import LOG_STORES

#: Where the embedded default keeps its data (relative to the working directory).
DEFAULT_DATA_DIR = ".aigw"
DEFAULT_SINK = f"chdb://{DEFAULT_DATA_DIR}/chdb"
DEFAULT_SPOOL_DIR = f"{DEFAULT_DATA_DIR}/spool"
DEFAULT_TABLE = "aigw_requests"


class MetricsConfig(ConfigSection):
    """Prometheus metrics recorded by the request log layer (needs ``asgi-aigw[metrics]``)."""

    #: Serve the metrics at ``{prefix}/metrics`` from the router.
    serve: bool = True
    #: Add a ``tenant`` label to request, token, cost and budget metrics (one series per tenant).
    tenant_label: bool = False
    #: Tenants beyond this many distinct values are counted as ``other``.
    max_tenants: int = Field(default=100, ge=1)
    #: Model names used as label values; others count as ``other``. ``None``: the gateway's configured
    #: model names (``build_app``), or the first ``max_models`` names seen.
    models: list[str] | None = None
    max_models: int = Field(default=50, ge=1)
    #: Histogram buckets in seconds for latency and time to first byte.
    buckets: list[float] | None = None


class LogConfig(ConfigSection):
    """One row per request, written in batches to a sink, away from the request path."""

    #: ``clickhouse://user:pass@host:8123/db``, ``clickhouses://...`` (TLS), ``chdb:///abs/path`` or
    #: ``chdb://relative/path`` (in-process ClickHouse), ``jsonl://path/file.jsonl``, ``memory://``.
    #: ``None`` records metrics only.
    store: str | None = DEFAULT_SINK
    table: str = Field(default=DEFAULT_TABLE, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    #: Rows older than this many days are deleted by ClickHouse (a TTL on a new table).
    ttl_days: int | None = Field(default=None, ge=1)
    #: ``gateway``: only OpenAI-format routes (chat, embeddings, models); ``all``: every HTTP request.
    routes: Literal["gateway", "all"] = "gateway"
    #: Log the request body once RedactMiddleware (inside this layer) has redacted it; a body it did
    #: not finish with (a request refused before or by it, or no RedactMiddleware) is never logged.
    #: Answers are never logged: at this layer they carry the restored, unredacted text.
    log_bodies: bool = False
    max_body_chars: int = Field(default=65536, ge=0)
    #: Response header carrying the request id; a valid incoming one is reused when trusted.
    request_id_header: str = "x-request-id"
    trust_request_id: bool = True

    #: Rows per insert, and the longest a row waits in memory before its batch is sealed. Every insert
    #: makes a part of the MergeTree table, and costs chDB about 10 ms of CPU whatever its size
    #: (1,000 rows 14 µs a row, 10,000 rows 4): under load a batch a second, not several.
    batch_size: int = Field(default=5000, ge=1)
    flush_interval: float = Field(default=1.0, gt=0)
    #: Rows held in memory (not yet in the spool or the sink) beyond which new rows are dropped.
    max_queue: int = Field(default=10000, ge=1)
    #: Sealed batches are written here before they are inserted and replayed after a failure or
    #: a restart. ``None``: keep them in memory only (lost if the process dies).
    spool_dir: str | None = DEFAULT_SPOOL_DIR
    #: fsync spool files (survive a machine crash, not only a process kill).
    spool_fsync: bool = False
    #: Backoff between insert attempts while the sink fails, in seconds (doubling up to the maximum).
    retry_initial: float = Field(default=0.5, gt=0)
    retry_max: float = Field(default=30.0, gt=0)
    #: How long shutdown waits for the sink before leaving the rest in the spool.
    shutdown_timeout: float = Field(default=10.0, ge=0)

    #: Prometheus metrics; ``None`` turns them off.
    metrics: MetricsConfig | None = None

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        return None if value is None else LOG_STORES.check(value)
