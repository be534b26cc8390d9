"""The request log: one row per request, batched to ClickHouse (or chDB, JSONL, memory) off the request path.

```python
from asgi_aigw.logs import LogConfig, RequestLogMiddleware

app = RequestLogMiddleware(app, config=LogConfig(store="clickhouse://user:pass@clickhouse:8123/logs"))
```

See ``docs/logging.md`` for the columns, the batching, the spool and what a crash can lose, and
``docs/usage.md`` for :func:`read_usage` (spend, tokens and latency per tenant, model and day).
"""

from .clickhouse import ClickHouseSink
from .config import LogConfig, MetricsConfig
from .middleware import RequestLogMiddleware
from .row import LogRow
from .sinks import JSONLSink, LogSink, MemorySink
from .usage import UsageRow, aread_usage, read_usage
from .writer import LogWriter

__all__ = [
    "ClickHouseSink",
    "JSONLSink",
    "LogConfig",
    "LogRow",
    "LogSink",
    "LogWriter",
    "MemorySink",
    "MetricsConfig",
    "RequestLogMiddleware",
    "UsageRow",
    "aread_usage",
    "read_usage",
]
