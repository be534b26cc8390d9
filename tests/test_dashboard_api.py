"""The dashboard's JSON API over plain HTTP: the same figures from chDB (aggregated in ClickHouse SQL) and
from a JSONL log (aggregated in Python), filters, bad input, access, mounting by ``build_app``, and what
happens when the log or the budget store fails."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cli.demo import demo_config
from asgi_aigw.dashboard import DashboardApp, DashboardConfig, localhost_only
from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.kernel.types import Scope
from asgi_aigw.logs import ClickHouseSink, JSONLSink, LogConfig, LogRow, RequestLogMiddleware
from asgi_aigw.logs.row import COLUMNS
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.trace import TraceConfig

from .support import FAKE_URL, fake_config, layer

DAY = datetime(2026, 3, 1, tzinfo=UTC)
ANONYMOUS = DashboardConfig(allow_anonymous=True)


def _empty(kind: str) -> Any:
    if kind.startswith("Nullable"):
        return None
    if kind.startswith("Map"):
        return {}
    if kind == "Bool":
        return False
    return "" if "String" in kind else 0


def row(when: datetime, **values: Any) -> LogRow:
    out: LogRow = {name: _empty(kind) for name, kind in COLUMNS}
    out.update(timestamp=int(when.timestamp() * 1000), request_id=uuid.uuid4().hex, status=200)
    out.update(request_body="SECRET BODY TEXT")  # logged bodies must never reach the dashboard
    out.update(values)
    return out


def traffic() -> list[LogRow]:
    """Three days, two tenants, two models: misses, hits, a bypass and one failure of each kind."""
    hour = timedelta(hours=1)
    rows = [
        # acme, day 1: two priced misses on mini (10 tokens for $0.001 each), two hits, a slow gpt-4o
        row(DAY + hour, request_id="acme-miss-1", tenant="acme", model="mini", total_tokens=10,
            prompt_tokens=8, completion_tokens=2, cost=0.001, cache_status="miss", latency_ms=100.0),
        row(DAY + 2 * hour, tenant="acme", model="mini", total_tokens=10, prompt_tokens=8,
            completion_tokens=2, cost=0.001, cache_status="miss", latency_ms=120.0),
        row(DAY + 3 * hour, tenant="acme", model="mini", total_tokens=10, cache_status="hit-exact",
            latency_ms=2.0),
        row(DAY + 4 * hour, tenant="acme", model="mini", total_tokens=10, cache_status="hit-semantic",
            latency_ms=3.0),
        row(DAY + 5 * hour, request_id="acme-slowest", tenant="acme", model="gpt-4o", total_tokens=100,
            cost=0.05, cache_status="bypass", latency_ms=9000.0),
        # beta, day 2: a dear request, then one failure of every kind
        row(DAY + 25 * hour, request_id="beta-dearest", tenant="beta", model="gpt-4o", total_tokens=400,
            cost=0.2, cache_status="miss", latency_ms=800.0),
        row(DAY + 26 * hour, tenant="beta", model="gpt-4o", status=429, error_code="rate_limit_exceeded",
            latency_ms=1.0),
        row(DAY + 27 * hour, tenant="beta", model="gpt-4o", status=422, error_code="pii_blocked",
            latency_ms=1.5),
        row(DAY + 28 * hour, tenant="beta", model="gpt-4o", status=502, error_code="upstream_error",
            latency_ms=30.0),
        row(DAY + 29 * hour, tenant="beta", model="gpt-4o", status=499, error_code="client_disconnected",
            latency_ms=40.0),
        row(DAY + 30 * hour, tenant="beta", model="", status=400, error_code="invalid_json", latency_ms=0.5),
        # day 3, then a day outside every range asked below
        row(DAY + 50 * hour, tenant="acme", model="mini", total_tokens=10, cost=0.001, cache_status="miss",
            latency_ms=110.0),
        row(DAY + 80 * hour, tenant="acme", model="mini", total_tokens=999, cost=9.0, latency_ms=1.0),
    ]  # fmt: skip
    return rows


@pytest.fixture(params=["chdb", "jsonl"])
def log_url(request: pytest.FixtureRequest, chdb_url: str, tmp_path: Path) -> str:
    """The traffic in chDB (a fresh table) or in a JSONL file: the URL to read it."""
    if request.param == "chdb":
        table = f"dash_api_{uuid.uuid4().hex[:10]}"
        sink = ClickHouseSink(chdb_url, table=table)
        sink.write(traffic(), "batch-1")
        sink.close()
        return f"{chdb_url}?table={table}"
    path = tmp_path / "requests.jsonl"
    JSONLSink(path).write(traffic(), "batch-1")
    return f"jsonl://{path}"


def log_config(url: str) -> LogConfig:
    base, _, table = url.partition("?table=")
    return LogConfig(store=base, table=table or "aigw_requests")


async def get(
    app: Any, path: str, client: tuple[str, int] = ("127.0.0.1", 50000), **kw: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get(path, **kw)


async def summary(app: Any, query: str) -> dict[str, Any]:
    response = await get(app, f"/api/summary?{query}")
    assert response.status_code == 200, response.text
    assert b"SECRET BODY" not in response.content
    data: dict[str, Any] = response.json()
    return data


RANGE = "since=2026-03-01&until=2026-03-04"


async def test_figures(log_url: str) -> None:
    app = DashboardApp(config=ANONYMOUS, log=log_config(log_url))
    data = await summary(app, RANGE)
    totals = data["totals"]
    assert totals["requests"] == 12  # the fourth day's row is outside the range
    assert totals["total_tokens"] == 10 * 5 + 100 + 400
    assert totals["cost"] == pytest.approx(0.003 + 0.05 + 0.2)
    # four misses and two hits: the bypass and the failures never looked the cache up
    assert (totals["cache_hits"], totals["cache_lookups"]) == (2, 6)
    assert totals["cache_hit_ratio"] == pytest.approx(1 / 3)
    assert totals["p99_ms"] >= totals["p95_ms"] >= totals["p50_ms"] > 0
    # the hits' 20 tokens at what mini's other answers paid per token ($0.003 for 30 tokens)
    assert totals["saved"] == pytest.approx(20 * 0.003 / 30)
    assert data["savings"] == [
        {"model": "mini", "cache_hits": 2, "hit_tokens": 20, "saved": pytest.approx(0.002)}
    ]
    assert data["errors"] == {"budget": 1, "pii": 1, "upstream": 1, "disconnected": 1, "client": 1}
    assert {(o["status"], o["error_code"], o["kind"]) for o in data["outcomes"]} == {
        (429, "rate_limit_exceeded", "budget"),
        (422, "pii_blocked", "pii"),
        (502, "upstream_error", "upstream"),
        (499, "client_disconnected", "disconnected"),
        (400, "invalid_json", "client"),
    }
    # over time: every day of the range, per tenant and per model
    assert data["days"] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert data["series"]["tenant"]["acme"]["requests"] == [5, 0, 1]
    assert data["series"]["tenant"]["beta"]["cost"] == [0, pytest.approx(0.2), 0]
    assert data["series"]["model"]["mini"]["total_tokens"] == [40, 0, 10]
    assert [t["tenant"] for t in data["tenants"]] == ["beta", "acme"]  # most spend first
    assert data["tenant_names"] == ["acme", "beta"]
    assert [m["model"] for m in data["models"]][:2] == ["gpt-4o", "mini"]
    # the slowest and the dearest, by id, with no body
    assert data["slowest"][0]["request_id"] == "acme-slowest"
    assert [r["latency_ms"] for r in data["slowest"]] == sorted(
        (r["latency_ms"] for r in data["slowest"]), reverse=True
    )
    assert [r["request_id"] for r in data["dearest"]][:2] == ["beta-dearest", "acme-slowest"]
    assert all(r["cost"] > 0 for r in data["dearest"])  # free requests are not listed as expensive
    assert set(data["slowest"][0]) == {
        "timestamp", "request_id", "tenant", "model", "status", "cache_status", "latency_ms", "cost", "total_tokens",
    }  # fmt: skip
    assert data["budgets"] == {"enabled": False, "tenants": []}


async def test_filters_change_the_figures(log_url: str) -> None:
    app = DashboardApp(config=ANONYMOUS, log=log_config(log_url))
    beta = await summary(app, RANGE + "&tenant=beta")
    assert beta["totals"]["requests"] == 6
    assert beta["errors"]["budget"] == 1
    assert beta["totals"]["cache_hits"] == 0
    assert [t["tenant"] for t in beta["tenants"]] == ["beta"]
    assert beta["tenant_names"] == ["acme", "beta"]  # to switch to another tenant
    assert beta["range"]["tenant"] == "beta"
    first_day = await summary(app, "since=2026-03-01&until=2026-03-02")
    assert first_day["totals"]["requests"] == 5
    assert first_day["days"] == ["2026-03-01"]
    assert first_day["errors"]["budget"] == 0
    # ISO times, with an offset or naive (UTC)
    hours = await summary(app, "since=2026-03-01T02:30:00&until=2026-03-01T04:30:00%2B00:00")
    assert hours["totals"]["requests"] == 2
    # a duration back from now: the traffic is in the past
    recent = await summary(app, "since=7d")
    assert recent["totals"]["requests"] == 0
    assert recent["slowest"] == []
    assert recent["tenants"] == []
    everything = await summary(app, "since=all")
    assert everything["totals"]["requests"] == 13


async def test_backends_agree(chdb_url: str, tmp_path: Path) -> None:
    """ClickHouse SQL and the Python aggregation of a JSONL log give the same page."""
    table = f"dash_api_{uuid.uuid4().hex[:10]}"
    rows = traffic()
    sink = ClickHouseSink(chdb_url, table=table)
    sink.write(rows, "batch-1")
    JSONLSink(tmp_path / "log.jsonl").write(rows, "batch-1")
    try:
        answers = []
        for log in (sink, JSONLSink(tmp_path / "log.jsonl")):
            data = await summary(DashboardApp(config=ANONYMOUS, log=log), RANGE)
            data.pop("query_ms")
            data["outcomes"].sort(key=lambda o: o["status"])
            answers.append(orjson.loads(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)))
    finally:
        sink.close()
    chdb, jsonl = answers
    assert chdb["totals"] == pytest.approx(jsonl["totals"])
    for key in ("errors", "outcomes", "days", "tenant_names", "slowest", "dearest"):
        assert chdb[key] == jsonl[key], key

    def rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: round(v, 9) if isinstance(v, float) else v for k, v in row.items()} for row in rows]

    # per tenant and per model (one GROUPING SETS scan in ClickHouse), percentiles included
    for key in ("tenants", "models"):
        assert rounded(chdb[key]) == rounded(jsonl[key]), key
    assert len(chdb["tenants"]) == 2
    assert len(chdb["models"]) == 3


async def test_lets_go_of_chdb_when_idle(chdb_url: str) -> None:
    """chDB serves one process per directory: the page must not keep `aigw usage` out while idle."""
    table = f"dash_api_{uuid.uuid4().hex[:10]}"
    app = DashboardApp(config=ANONYMOUS, log=LogConfig(store=chdb_url, table=table))
    try:
        await summary(app, "since=24h")
        assert app.source._client is not None
        for _ in range(60):
            if app.source._client is None:
                break
            await asyncio.sleep(0.05)
        assert app.source._client is None  # closed after CHDB_IDLE_CLOSE (1 s) without a page load
        assert (await summary(app, "since=24h"))["totals"]["requests"] == 0  # and opened again
    finally:
        await app.aclose()


async def test_served_alone_it_answers_lifespan_and_closes_the_log(chdb_url: str) -> None:
    from asgi_lifespan import LifespanManager

    app = DashboardApp(config=ANONYMOUS, log=LogConfig(store=chdb_url, table=f"dash_{uuid.uuid4().hex[:8]}"))
    async with LifespanManager(app):
        await summary(app, "since=24h")
        assert app.source._client is not None
    assert app.source._client is None


async def test_empty_logs(chdb_url: str, tmp_path: Path) -> None:
    missing = DashboardApp(config=ANONYMOUS, log=tmp_path / "not-yet.jsonl")
    assert (await summary(missing, "since=24h"))["totals"]["requests"] == 0
    # a chDB table no request was logged to yet is created, not an error
    table = f"dash_api_{uuid.uuid4().hex[:10]}"
    fresh = DashboardApp(config=ANONYMOUS, log=LogConfig(store=chdb_url, table=table))
    try:
        data = await summary(fresh, "since=24h")
    finally:
        await fresh.aclose()
    assert data["totals"]["requests"] == 0
    assert data["totals"]["cache_hit_ratio"] is None
    # with the log's TTL: the table this created is the one the log would have created
    ttl = DashboardApp(config=ANONYMOUS, log=LogConfig(store=chdb_url, table=f"{table}_ttl", ttl_days=30))
    try:
        await summary(ttl, "since=24h")
        assert ttl.source.ttl_days == 30
        (create,) = ttl.source.query(f"SHOW CREATE TABLE {ttl.source.qualified_table}")
    finally:
        await ttl.aclose()
    assert "TTL" in create[0]
    assert len(data["days"]) in (1, 2)  # the last 24 hours span today and maybe yesterday


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "neither a duration"),
        ("since=2026-03-02&until=2026-03-01", "until must be later than since"),
        ("until=soon", "neither a duration"),
        ("tenant=" + "x" * 300, "tenant is too long"),
        # beyond what a datetime or timedelta holds: was a 500 (a traceback) or a 503 "log unavailable"
        ("since=99999999999d", "neither a duration"),
        ("since=" + "9" * 400 + "d", "neither a duration"),
        ("since=99999d", "reaches back before 1900"),
        ("since=0001-01-01T00:00:00%2B14:00", "neither a duration"),
        ("since=all&until=9999-12-31T23:59:59-14:00", "neither a duration"),
        ("since=1d&until=9999-12-31", "outside 1900-2299"),
        ("since=1850-01-01", "outside 1900-2299"),
    ],
)
async def test_bad_filters_are_400(tmp_path: Path, query: str, message: str) -> None:
    app = DashboardApp(config=ANONYMOUS, log=tmp_path / "log.jsonl")
    response = await get(app, f"/api/summary?{query}")
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_filter_values_are_bound_not_spliced(chdb_url: str) -> None:
    """A tenant filter that is SQL selects the tenant of that exact name (none, or the one so named)."""
    table = f"dash_inject_{uuid.uuid4().hex[:10]}"
    odd = "x' OR '1'='1\\' --}{table}"
    sink = ClickHouseSink(chdb_url, table=table)
    sink.write([row(DAY, tenant="acme", cost=1.0), row(DAY, tenant=odd, cost=2.0)], "batch-1")
    sink.close()
    app = DashboardApp(config=ANONYMOUS, log=f"{chdb_url}?table={table}")
    try:
        for tenant, spend in [("acme' OR '1'='1", 0.0), (odd, 2.0), ("acme", 1.0)]:
            query = httpx.QueryParams({"since": "all", "tenant": tenant})
            data = await summary(app, str(query))
            assert data["totals"]["cost"] == spend, tenant
            assert data["range"]["tenant"] == tenant
        assert sorted(data["tenant_names"]) == sorted(["acme", odd])
    finally:
        await app.aclose()


async def test_routes(tmp_path: Path) -> None:
    app = DashboardApp(
        config=DashboardConfig(allow_anonymous=True, default_range="30d"), log=tmp_path / "l.jsonl"
    )
    page = await get(app, "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-default-range="30d"' in page.text
    # nothing from elsewhere: the script and style are served here, and the policy says so
    assert "http" not in page.text.replace("http-equiv", "")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = await get(app, "/dashboard.js")
    assert script.status_code == 200
    assert "api/summary" in script.text
    assert "innerHTML" not in script.text
    assert (await get(app, "/dashboard.css")).status_code == 200
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        head = await http.head("/dashboard.js")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == script.headers["content-length"]
    assert (await get(app, "/elsewhere")).status_code == 404
    # mounted under a root path, the bare mount point redirects to the page (its relative URLs need the /)
    transport = httpx.ASGITransport(app, root_path="/tools/usage")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        moved = await http.get("/tools/usage")
        posted = await http.post("/tools/usage/api/summary")
    assert moved.status_code == 307
    assert moved.headers["location"] == "/tools/usage/"
    assert posted.status_code == 405


def deny(scope: Scope) -> bool:
    return False


def test_refuses_to_start_without_access_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allow_anonymous"):
        DashboardApp(log=tmp_path / "log.jsonl")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        DashboardApp(config=DashboardConfig(authorize="tests.no_such_module:check"), log=tmp_path / "l.jsonl")
    with pytest.raises(ConfigError, match=r"log\.store is None"):
        DashboardApp(config=ANONYMOUS, log=LogConfig(store=None))


async def test_authorize(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "log.jsonl"
    by_path = DashboardApp(config=DashboardConfig(authorize=f"{__name__}:deny"), log=log)
    for path in ("/", "/api/summary", "/dashboard.js"):
        response = await get(by_path, path)
        assert response.status_code == 403, path
        assert "usage" not in response.text.lower().replace("see usage", "")  # no figure leaks

    async def staff_only(scope: Scope) -> bool:
        return dict(scope["headers"]).get(b"x-staff") == b"yes"

    app = DashboardApp(log=log, authorize=staff_only)
    assert (await get(app, "/api/summary")).status_code == 403
    assert (await get(app, "/api/summary", headers={"x-staff": "yes"})).status_code == 200

    def broken(scope: Scope) -> bool:
        raise RuntimeError("the session store is down")

    with caplog.at_level(logging.ERROR, logger="asgi_aigw.dashboard"):
        assert (await get(DashboardApp(log=log, authorize=broken), "/")).status_code == 403
    assert "authorize check failed" in caplog.text

    def truthy(scope: Scope) -> Any:
        return "yes"  # only True lets a caller in

    assert (await get(DashboardApp(log=log, authorize=truthy), "/")).status_code == 403


def test_localhost_only() -> None:
    assert localhost_only({"client": ("127.0.0.1", 5000)})
    assert localhost_only({"client": ("::1", 5000)})
    assert not localhost_only({"client": ("10.0.0.7", 5000)})
    assert not localhost_only({"client": ("localhost.evil.example", 5000)})
    assert not localhost_only({"client": None})
    assert not localhost_only({})


async def test_demo_serves_it_to_localhost_only(tmp_path: Path) -> None:
    config = demo_config()
    assert config.dashboard is not None
    app = DashboardApp(config=config.dashboard, log=tmp_path / "log.jsonl")
    assert (await get(app, "/", client=("127.0.0.1", 4000))).status_code == 200
    assert (await get(app, "/", client=("192.168.1.20", 4000))).status_code == 403


async def test_log_failure_is_503(tmp_path: Path) -> None:
    unreachable = "clickhouse://default:@127.0.0.1:9/db?connect_timeout=0.5&send_receive_timeout=0.5"
    app = DashboardApp(config=ANONYMOUS, log=LogConfig(store=unreachable))
    response = await get(app, "/api/summary")
    assert response.status_code == 503
    assert "request log cannot be read" in response.json()["error"]["message"]
    await app.aclose()


# -- mounted by build_app ---------------------------------------------------------------------------------


def gateway(tmp_path: Path, **sections: Any) -> Any:
    config = fake_config("gpt-4o-mini").model_copy(
        update={"log": LogConfig(store="memory://", spool_dir=None), "dashboard": ANONYMOUS, **sections}
    )
    return build_app(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})


async def test_build_app_mounts_it_outside_the_layers(tmp_path: Path) -> None:
    # the tenant is required for gateway requests, not for the dashboard (the app's authorize decides)
    app = gateway(
        tmp_path,
        tenant=TenantConfig(header="x-tenant-id"),
        budget=BudgetConfig(limits=Limits(requests_per_minute=10)),
    )
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
        answer = await http.post("/ai/v1/chat/completions", json=body, headers={"x-tenant-id": "acme"})
        assert answer.status_code == 200
        assert (await http.post("/ai/v1/chat/completions", json=body)).status_code == 401
        assert (await http.get("/ai/dashboard")).status_code == 307
        assert (await http.get("/ai/dashboard/")).status_code == 200
        log = layer(app.app, RequestLogMiddleware)
        assert await log.writer.flush()
        data = (await http.get("/ai/dashboard/api/summary?since=1h")).json()
    # the dashboard's own requests are not gateway requests: not logged
    assert len(log.writer.sink.rows) == 2
    assert data["totals"]["requests"] == 2
    assert data["errors"]["client"] == 1
    # the budget windows come from the middleware's own (in-process) store
    (acme,) = [t for t in data["budgets"]["tenants"] if t["tenant"] == "acme"]
    assert acme["windows"] == [
        {
            "window": "requests_per_minute",
            "label": "requests per minute (RPM)",
            "metric": "requests",
            "limit": 10,
            "used": 1,
            "remaining": 9,
            "source": "default",
            "resets_in_seconds": pytest.approx(30, abs=30),
        }
    ]


async def test_budget_store_failure_shows_the_rest(tmp_path: Path) -> None:
    app = gateway(tmp_path, budget=BudgetConfig(limits=Limits(requests_per_minute=10)))
    dashboard = app.router

    class Down:
        async def get_overrides(self, tenant: str) -> dict[str, int]:
            raise ConnectionError("budget store unreachable")

    dashboard.budget_store = Down()
    log = layer(app.app, RequestLogMiddleware)
    log.writer.sink.rows.append(row(datetime.now(UTC), tenant="acme"))
    data = (await get(app, "/ai/dashboard/api/summary?since=1h")).json()
    assert data["totals"]["requests"] == 1
    assert "budget store unreachable" in data["budgets"]["error"]


async def test_tenant_filters_leave_no_state_in_the_memory_budget_store(tmp_path: Path) -> None:
    """The tenant filter names any string: reading its budget windows from the in-process store kept a
    record per name for good, so a client looping over names grew the gateway's memory without end."""
    from asgi_aigw.budget.memory import MemoryBudgetStore

    app = gateway(tmp_path, budget=BudgetConfig(limits=Limits(requests_per_minute=10)))
    store = app.router.budget_store
    assert isinstance(store, MemoryBudgetStore)
    for i in range(50):
        data = (await get(app, f"/ai/dashboard/api/summary?since=1h&tenant=probe-{i}")).json()
        [report] = data["budgets"]["tenants"]
        assert report["tenant"] == f"probe-{i}"
        assert report["windows"][0]["used"] == 0
    assert not any(name.startswith("probe-") for name in store._tenants)


def test_build_app_needs_a_log(tmp_path: Path) -> None:
    config = fake_config("gpt-4o-mini").model_copy(update={"dashboard": ANONYMOUS})
    with pytest.raises(ConfigError, match="reads the request log"):
        build_app(config, env={})


async def test_mounted_with_traces_in_front_of_the_log(tmp_path: Path) -> None:
    # traces wrap the request log: the dashboard still finds the log's sink behind them
    app = gateway(tmp_path, trace=TraceConfig())
    log = layer(app.app, RequestLogMiddleware)
    log.writer.sink.rows.append(row(datetime.now(UTC), tenant="acme"))
    data = (await get(app, "/ai/dashboard/api/summary?since=1h")).json()
    assert data["totals"]["requests"] == 1
