"""The dashboard page in headless Chromium, over a real gateway (uvicorn, FakeProvider upstream, chDB log)
that served a mix of requests through the official OpenAI SDK: cache misses and hits, a budget 429 and a
PII 422. The page's numbers are read as a user sees them and checked against the log and the traffic;
filters change them; a caller the app's ``authorize`` refuses gets 403."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.dashboard import DashboardConfig
from asgi_aigw.kernel.types import Scope
from asgi_aigw.logs import ClickHouseSink, LogConfig, read_usage
from asgi_aigw.redact.config import RedactConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport, serve

from .browser import chromium, missing
from .support import FAKE_URL, fake_config

pytestmark = pytest.mark.e2e

COOKIE = "aigw_dashboard_test"


def staff_cookie(scope: Scope) -> bool:
    """The app's own check, as an app would write it: a session cookie (here, a fixed test value)."""
    for name, value in scope.get("headers", []):
        if name == b"cookie" and f"{COOKIE}=staff".encode() in value:
            return True
    return False


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, chdb_url: str) -> Iterator[tuple[str, str]]:
    """A served gateway that has answered the traffic below; yields its URL and its log table."""
    if missing():
        pytest.skip(missing() or "")
    table = f"dash_{uuid.uuid4().hex[:10]}"
    spool = tmp_path_factory.mktemp("spool")
    config = fake_config("gpt-4o-mini", "gpt-4o").model_copy(
        update={
            "tenant": TenantConfig(header="x-tenant-id", required=False, default_tenant="demo"),
            # beta may send two requests a minute: its third is refused (a cache hit still counts one)
            "budget": BudgetConfig(tenants={"beta": Limits(requests_per_minute=2)}),
            "redact": RedactConfig(regex_only=True, actions={"EMAIL_ADDRESS": "block"}),
            "cache": CacheConfig(store="memory://", vector_store=None),
            "log": LogConfig(store=chdb_url, table=table, spool_dir=str(spool), flush_interval=0.05),
            "dashboard": DashboardConfig(authorize=f"{__name__}:staff_cookie"),
        }
    )
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(FakeProvider())}, env={})
    with serve(app) as base:
        # beta's window is a minute: start early in one, so the page still shows it used up
        second = time.time() % 60
        if second > 25:
            time.sleep(61 - second)
        traffic(base)
        # the log writes in batches: wait until every request is in the table
        sink = ClickHouseSink(chdb_url, table=table)
        try:
            sink.client()  # the table, should the first batch not be in yet
            deadline = time.monotonic() + 20
            while sum(r.requests for r in read_usage(sink, group_by=())) < 8:
                assert time.monotonic() < deadline, "the request log did not receive every request"
                time.sleep(0.1)
        finally:
            sink.close()
        yield base, table


def traffic(base: str) -> None:
    """acme: a miss, two hits, another model's miss, a 422 (an e-mail address is blocked); beta: a
    miss, a hit, and a 429 (over its two requests a minute). 8 requests, 3 hits of 6 cache lookups."""

    def client(tenant: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{base}/ai/v1",
            api_key="sk-test-not-a-real-key",
            default_headers={"x-tenant-id": tenant},
            max_retries=0,
        )

    def ask(sdk: openai.OpenAI, model: str, text: str) -> Any:
        return sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )

    acme, beta = client("acme"), client("beta")
    caches = [ask(acme, "gpt-4o-mini", "What is two plus two?").headers["x-aigw-cache"] for _ in range(3)]
    assert caches == ["miss", "hit-exact", "hit-exact"]
    assert ask(acme, "gpt-4o", "Name a colour.").headers["x-aigw-cache"] == "miss"
    with pytest.raises(openai.UnprocessableEntityError):
        ask(acme, "gpt-4o-mini", "Write to bob@example.com please")
    assert [ask(beta, "gpt-4o-mini", "Hello").headers["x-aigw-cache"] for _ in range(2)] == [
        "miss",
        "hit-exact",
    ]
    with pytest.raises(openai.RateLimitError):
        ask(beta, "gpt-4o-mini", "Hello again")


def number(text: str) -> float:
    return float(text.replace("$", "").replace(",", "").replace("%", "").strip())


class Page:
    """The dashboard as the browser shows it."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def text(self, element_id: str) -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.ID, element_id).text)

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not condition():
            state = self.driver.find_element("tag name", "body").get_attribute("data-state")
            assert time.monotonic() < deadline, (
                f"{what}: the page is {state}, showing {self.text('status')!r}"
            )
            time.sleep(0.05)

    def ready_with(self, requests: int) -> None:
        def shown() -> bool:
            body = self.driver.find_element("tag name", "body")
            return body.get_attribute("data-state") == "ready" and self.text("kpi-requests") == str(requests)

        self.wait(shown, f"{requests} requests")

    def select(self, element_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element(By.ID, element_id)).select_by_value(value)

    def bars(self, container: str) -> list[tuple[str, float]]:
        from selenium.webdriver.common.by import By

        rects = self.driver.find_elements(By.CSS_SELECTOR, f"#{container} rect.bar")
        return [(r.get_attribute("data-series") or "", float(r.get_attribute("data-value"))) for r in rects]


def test_forbidden_without_the_apps_authorisation(gateway: tuple[str, str]) -> None:
    base, _ = gateway
    with chromium() as driver:
        driver.get(f"{base}/ai/dashboard/")
        assert "403" in driver.find_element("tag name", "body").text
    # the API, the script and any other path are refused the same way, before anything is read
    for path in ("api/summary", "dashboard.js", "nothing-here"):
        assert httpx.get(f"{base}/ai/dashboard/{path}").status_code == 403
    allowed = httpx.get(f"{base}/ai/dashboard/api/summary", cookies={COOKIE: "staff"})
    assert allowed.status_code == 200


def test_page_shows_the_traffic_and_filters_change_it(
    gateway: tuple[str, str], chdb_url: str, tmp_path: Path
) -> None:
    base, table = gateway
    sink = ClickHouseSink(chdb_url, table=table)
    try:
        (everyone,) = read_usage(sink, group_by=())
        per_tenant = {row.tenant: row for row in read_usage(sink, group_by=("tenant",))}
    finally:
        sink.close()
    assert everyone.requests == 8
    assert everyone.cost > 0

    with chromium() as driver:
        driver.get(f"{base}/ai/dashboard/")  # the cookie's domain must be open to set it
        driver.add_cookie({"name": COOKIE, "value": "staff", "path": "/"})
        driver.get(f"{base}/ai/dashboard/?since=24h")
        page = Page(driver)
        page.ready_with(8)

        # the figures, as shown, against the log and the traffic
        assert number(page.text("kpi-tokens")) == everyone.total_tokens
        assert number(page.text("kpi-cost")) == pytest.approx(everyone.cost, rel=0.05)
        assert page.text("kpi-hit-rate") == "50.0%"  # 3 hits of 6 lookups (the 422 and 429 never looked)
        assert "3 hits of 6 lookups" in page.text("kpi-hits")
        assert number(page.text("kpi-saved")) > 0
        p50, p95, p99 = (number(page.text(f"kpi-{p}")) for p in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99
        assert page.text("chart-errors-budget") == "1"
        assert page.text("chart-errors-pii") == "1"
        assert page.text("chart-errors-upstream") == "0"

        # the chart: one bar per tenant (today), adding up to the spend shown
        bars = page.bars("chart-time")
        assert {name for name, _ in bars} == {"acme", "beta"}
        assert sum(v for _, v in bars) == pytest.approx(everyone.cost)
        assert number(page.text("chart-total")) == pytest.approx(everyone.cost, rel=0.05)
        page.select("metric", "requests")
        page.wait(lambda: page.text("chart-total") == "8", "requests in the chart")
        assert sorted(v for _, v in page.bars("chart-time")) == [3, 5]
        page.select("split", "model")
        page.wait(lambda: {n for n, _ in page.bars("chart-time")} == {"gpt-4o", "gpt-4o-mini"}, "per model")

        # budgets: beta's requests-per-minute window is used up
        budget = driver.find_element(
            "css selector", '[data-tenant="beta"] [data-window="requests_per_minute"]'
        )
        assert "2 of 2 used" in budget.text
        assert "0 left" in budget.text

        # the request lists hold ids, never bodies
        slowest = page.text("table-slowest")
        assert "two plus two" not in slowest
        assert "bob@example.com" not in driver.page_source

        # the tenant filter
        page.select("tenant", "beta")
        page.ready_with(3)
        assert number(page.text("kpi-tokens")) == per_tenant["beta"].total_tokens
        assert page.text("kpi-hit-rate") == "50.0%"
        assert page.text("chart-errors-budget") == "1"
        assert page.text("chart-errors-pii") == "0"
        assert "tenant=beta" in driver.current_url
        page.select("tenant", "acme")
        page.ready_with(5)
        assert number(page.text("kpi-cost")) == pytest.approx(per_tenant["acme"].cost, rel=0.05)

        # the time range: days long before the traffic show nothing
        page.select("range", "custom")
        driver.execute_script(
            "const s = document.getElementById('since'); s.value = '2020-01-01';"
            "const u = document.getElementById('until'); u.value = '2020-01-31';"
            "u.dispatchEvent(new Event('change'));"
        )
        page.ready_with(0)
        assert page.bars("chart-time") == []
        assert len(driver.find_elements("css selector", "#chart-time text")) > 0  # axes, no bars

        # the URL keeps the filters: a reload shows the same
        driver.refresh()
        page.ready_with(0)
        assert "since=2020-01-01" in driver.current_url
        assert "until=2020-02-01" in driver.current_url
