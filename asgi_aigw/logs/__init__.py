"""The request log: one row per request, batched to ClickHouse (or chDB, JSONL, memory) off the request path.

```python
from asgi_aigw.logs import LogConfig, RequestLogMiddleware

app = RequestLogMiddleware(app, config=LogConfig(sink="clickhouse://user:pass@clickhouse:8123/logs"))
```

See ``docs/logging.md`` for the columns, the batching, the spool and what a crash can lose.
"""

from .clickhouse import ClickHouseSink, create_table_sql
from .config import LogConfig, MetricsConfig
from .middleware import RequestLogMiddleware
from .row import COLUMN_NAMES, COLUMNS, LogRow, build_row
from .sinks import JSONLSink, LogSink, MemorySink, SinkURL, parse_sink_url, sink_from_url
from .writer import LogWriter

__all__ = [
    "COLUMNS",
    "COLUMN_NAMES",
    "ClickHouseSink",
    "JSONLSink",
    "LogConfig",
    "LogRow",
    "LogSink",
    "LogWriter",
    "MemorySink",
    "MetricsConfig",
    "RequestLogMiddleware",
    "SinkURL",
    "build_row",
    "create_table_sql",
    "parse_sink_url",
    "sink_from_url",
]
