"""Fixtures and helpers for the request log tests in chDB. A test module takes a fixture by assignment
(``reader = logs_helpers.reader``), pytest finding it under the module's name."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asgi_aigw.budget import RedisBudgetStore
from asgi_aigw.logs import ClickHouseSink, LogConfig, RequestLogMiddleware

from . import budget_helpers


def table_named(prefix: str) -> Any:
    """A fixture: a fresh table name per test (chDB hosts one data directory per process)."""

    @pytest.fixture
    def table() -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    return table


@pytest.fixture
def reader(chdb_url: str, table: str) -> Iterator[ClickHouseSink]:
    """A sink on the test's table, to read its rows back."""
    sink = ClickHouseSink(chdb_url, table=table)
    yield sink
    sink.close()


@pytest.fixture
async def budget_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBudgetStore]:
    """A Redis budget store under the test's own prefix, with the store's now frozen."""
    budget_helpers.freeze_now()
    async with budget_helpers.redis_budget_store(redis_url, redis_prefix) as store:
        yield store


def log_config(chdb_url: str, table: str, tmp_path: Path, **overrides: Any) -> LogConfig:
    """The log in chDB's ``table``, spooling under ``tmp_path``."""
    options: dict[str, Any] = {"store": chdb_url, "table": table, "spool_dir": str(tmp_path / "spool")}
    return LogConfig(**{**options, **overrides})


def logged(app: Any, chdb_url: str, table: str, tmp_path: Path, **options: Any) -> RequestLogMiddleware:
    """``app`` behind the request log writing to chDB's ``table``."""
    return RequestLogMiddleware(app, config=log_config(chdb_url, table, tmp_path, **options))
