"""``DashboardApp``: the usage dashboard as an ASGI app, mountable anywhere (``build_app`` mounts it at
``{prefix}/dashboard``).

```python
from asgi_aigw.dashboard import DashboardApp, DashboardConfig

dashboard = DashboardApp(config=DashboardConfig(), log=LogConfig(store="chdb://.aigw/chdb"),
                         authorize=lambda scope: is_staff(scope))
```

It serves a page (``/``, with its script and style: nothing from a CDN) and the JSON the page draws
(``/api/summary?since=7d&until=&tenant=``). Every request passes ``authorize`` first, or gets 403.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..budget.config import BudgetConfig
from ..budget.report import tenant_windows
from ..budget.store import BudgetStore
from ..kernel.errors import ConfigError
from ..kernel.lifespan import serve_lifespan
from ..kernel.types import Message, Receive, Scope, Send
from ..logs.clickhouse import ClickHouseSink
from ..logs.config import DEFAULT_TABLE, LogConfig
from ..logs.sink_url import parse_sink_url
from ..logs.sinks import JSONLSink, MemorySink
from ..logs.usage import parse_since
from .access import Authorize, access_rule, allowed
from .config import DashboardConfig
from .summary import LogSource, Range, read_summary

_STATIC = {
    "/": ("index.html", b"text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
# the page loads its own script and style only, and is never framed
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


# the instants a filter may name (ClickHouse's DateTime64 range)
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(2300, 1, 1, tzinfo=UTC)


class BadQuery(ValueError):
    """A filter the API cannot read (answered 400)."""


class DashboardApp:
    """The usage dashboard over a request log and, optionally, the budget store.

    ``log``: the request log to read (a :class:`LogConfig`, its URL, or an open sink: pass the gateway's
    own :class:`MemorySink` to read rows in memory). ``budget`` and ``budget_store``: the budget section
    and the store the gateway meters in (share the middleware's store: a ``memory://`` store lives in
    its process). ``authorize`` wins over ``config.authorize``; with neither, ``config.allow_anonymous``
    must be true.
    """

    def __init__(
        self,
        *,
        config: DashboardConfig | None = None,
        log: LogConfig | str | os.PathLike[str] | ClickHouseSink | JSONLSink | MemorySink,
        budget: BudgetConfig | None = None,
        budget_store: BudgetStore | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.config = config or DashboardConfig()
        self.authorize = access_rule(self.config, authorize)
        self.source, self._owns_source = _source(log)
        self.budget = budget
        self.budget_store = budget_store
        self._static = {path: (_read_static(name), kind) for path, (name, kind) in _STATIC.items()}
        page, kind = self._static["/"]
        # the range the page opens with (validated as a duration: nothing here needs escaping)
        self._static["/"] = (page.replace(b"{default_range}", self.config.default_range.encode()), kind)
        # one summary at a time: a page reloaded in a loop must not queue up threads on the database
        self._lock = threading.Lock()
        self._schema_ready = False
        # chDB lets one process at a time open its directory: let go of it when the page is idle, so
        # `aigw usage` from a shell can read it too (as the log writer does)
        self._idle_close = self.source.idle_close if isinstance(self.source, ClickHouseSink) else None
        self._last_read = 0.0
        self._closer: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served as the whole app: close the log at shutdown
            await serve_lifespan(receive, send, on_shutdown=self.aclose)
            return
        if scope["type"] != "http":
            return
        root: str = scope.get("root_path", "")
        path: str = scope.get("path", "")
        local = path[len(root) :] if root and path.startswith(root) else path
        if not await allowed(self.authorize, scope):
            await _send(send, 403, b"text/plain; charset=utf-8", b"403 Forbidden: not allowed to see usage.")
            return
        if scope.get("method") == "HEAD":
            send = _headers_only(send)
        elif scope.get("method") != "GET":
            await _send(
                send, 405, b"text/plain; charset=utf-8", b"405 Method Not Allowed", [(b"allow", b"GET")]
            )
            return
        if local == "":
            await _send(send, 307, b"text/plain", b"", [(b"location", (root + "/").encode())])
        elif local in self._static:
            body, kind = self._static[local]
            await _send(send, 200, kind, body)
        elif local == "/api/summary":
            await self._summary(scope, send)
        else:
            await _send(send, 404, b"text/plain; charset=utf-8", b"404 Not Found")

    async def _summary(self, scope: Scope, send: Send) -> None:
        try:
            span = self._range(scope.get("query_string", b"").decode("latin-1"))
        except BadQuery as exc:
            await _send_json(send, 400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            return
        started = time.perf_counter()
        try:
            summary = await asyncio.to_thread(self._read, span)
        except Exception as exc:  # a log that cannot be read is the store's failure, not a 500
            message = f"The request log cannot be read: {type(exc).__name__}: {exc}"
            await _send_json(send, 503, {"error": {"message": message, "type": "log_unavailable"}})
            return
        self._close_when_idle()
        summary["budgets"] = await self._budgets(span, summary)
        summary["range"] = {
            "since": span.start.isoformat() if span.start else None,
            "until": span.end.isoformat() if span.end else None,
            "tenant": span.tenant,
        }
        summary["query_ms"] = round((time.perf_counter() - started) * 1000, 1)
        await _send_json(send, 200, summary)

    def _read(self, span: Range) -> dict[str, Any]:
        with self._lock:
            if isinstance(self.source, ClickHouseSink) and self.source.is_chdb and not self._schema_ready:
                # an embedded log's table exists from here on, empty until requests are logged (a
                # ClickHouse server's is created by the gateway; the dashboard may read with fewer rights)
                self.source.client()
                self._schema_ready = True
            return read_summary(self.source, span, recent=self.config.recent)

    def _range(self, query_string: str) -> Range:
        params = {k: v[-1].strip() for k, v in parse_qs(query_string).items()}
        now = datetime.now(UTC)
        since = params.get("since") or self.config.default_range
        start = _instant(since, now, "since")
        end = _instant(params["until"], now, "until") if params.get("until") else None
        if start is not None and end is not None and end <= start:
            raise BadQuery("until must be later than since")
        tenant = params.get("tenant") or None
        if tenant is not None and len(tenant) > 256:
            raise BadQuery("tenant is too long")
        return Range(start, end, tenant)

    async def _budgets(self, span: Range, summary: dict[str, Any]) -> dict[str, Any]:
        if self.budget is None or self.budget_store is None:
            return {"enabled": False, "tenants": []}
        if span.tenant:
            names = [span.tenant]
        else:  # the tenants that spent most in the range, then those with limits of their own
            names = [row["tenant"] for row in summary["tenants"]]
            names += [name for name in self.budget.tenants if name not in names]
        names = names[: self.config.max_budget_tenants]
        tenants = []
        try:
            for name in names:
                windows = await tenant_windows(self.budget_store, self.budget, name)
                limited = [w for w in windows if w.limit is not None]
                tenants.append(
                    {
                        "tenant": name,
                        "windows": [
                            {
                                "window": w.window.name,
                                "label": w.window.label,
                                "metric": w.window.metric,
                                "limit": w.limit,
                                "used": w.used,
                                "remaining": w.remaining,
                                "source": w.source,
                                "resets_in_seconds": w.resets_in_seconds,
                            }
                            for w in limited
                        ],
                    }
                )
        except Exception as exc:  # the store is down: the page says so and shows the rest
            return {"enabled": True, "tenants": tenants, "error": f"{type(exc).__name__}: {exc}"}
        return {"enabled": True, "tenants": tenants}

    def _close_when_idle(self) -> None:
        if not self._owns_source or self._idle_close is None:
            return
        self._last_read = time.monotonic()
        if self._closer is None or self._closer.done():
            self._closer = asyncio.get_running_loop().create_task(self._idle_closer())

    async def _idle_closer(self) -> None:
        assert self._idle_close is not None
        while True:  # a page load during the wait pushes the close back
            left = self._idle_close - (time.monotonic() - self._last_read)
            if left <= 0:
                break
            await asyncio.sleep(left)
        await asyncio.to_thread(self._close_source)
        # chDB leaks a few threads at each reopen: wait longer each time, up to a minute
        self._idle_close = min(self._idle_close * 2, 60.0)

    def _close_source(self) -> None:
        with self._lock:  # never under a summary being read
            assert isinstance(self.source, ClickHouseSink)
            self.source.close()

    async def aclose(self) -> None:
        """Close the log connection this app opened (an injected sink is left open)."""
        closer, self._closer = self._closer, None
        if closer is not None:
            closer.cancel()
        if self._owns_source and isinstance(self.source, ClickHouseSink):
            await asyncio.to_thread(self.source.close)


def _instant(text: str, now: datetime, name: str) -> datetime | None:
    """A duration back from ``now`` (``7d``), ``all``, or an ISO date or time (naive: UTC), in UTC."""
    try:
        back = parse_since(text)
    except ValueError:
        pass
    else:
        if back is None:
            return None
        if back > now - _EARLIEST:
            raise BadQuery(f"{name}={text!r} reaches back before {_EARLIEST.year}: use {name}=all")
        return now - back
    try:
        moment = datetime.fromisoformat(text)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadQuery(
            f"{name}={text!r} is neither a duration (7d, 12h) nor an ISO date or time (2026-12-01)"
        ) from None
    # the log's timestamps (ClickHouse DateTime64) lie in this span; beyond it, the day arithmetic
    # overflows: a filter out there is a mistake, not a store failure
    if not _EARLIEST <= moment < _LATEST:
        raise BadQuery(f"{name}={text!r} is outside {_EARLIEST.year}-{_LATEST.year - 1}")
    return moment


def _source(
    log: LogConfig | str | os.PathLike[str] | ClickHouseSink | JSONLSink | MemorySink,
) -> tuple[LogSource, bool]:
    """What the summary reads, and whether this app opened it (and closes it)."""
    if isinstance(log, ClickHouseSink | MemorySink):
        return log, False
    if isinstance(log, JSONLSink):
        return log.path, False
    table, ttl_days = DEFAULT_TABLE, None
    if isinstance(log, LogConfig):
        if log.store is None:
            raise ConfigError("The dashboard reads the request log, and log.store is None (metrics only).")
        url, table, ttl_days = log.store, log.table, log.ttl_days
    else:
        url = os.fspath(log)
        if "://" not in url:
            url = f"jsonl://{url}"
    # the TTL too: a chDB table this app creates before the first row is written must be the log's own
    parsed = parse_sink_url(url, table=table, ttl_days=ttl_days)
    if parsed.scheme == "jsonl":
        assert parsed.path is not None
        return Path(parsed.path), False
    if parsed.scheme == "memory":
        raise ConfigError("memory:// is a new, empty log: pass the gateway's MemorySink itself.")
    return ClickHouseSink(parsed), True


def _headers_only(send: Send) -> Send:
    """``send`` for a HEAD request: the headers of the GET, no body."""

    async def wrapper(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return wrapper


def _read_static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


async def _send(
    send: Send, status: int, kind: bytes, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        *_SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, data: Any) -> None:
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    await _send(send, status, b"application/json", body)
