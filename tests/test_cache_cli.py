"""``aigw cache purge``: one tenant's answers, then everything, on Redis and Qdrant Edge."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import httpx
import pytest

from asgi_aigw.cache import CacheConfig
from asgi_aigw.cli import main
from asgi_aigw.testing import FakeProvider

from .cache_support import cache_stack, chat, post


async def _fill(config: CacheConfig) -> None:
    app, cache = cache_stack(FakeProvider(), config=config, exact=None, vector=config.vector_store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        for tenant in ("a", "b"):
            await post(client, chat("How do I delete a branch in git?"), **{"x-tenant": tenant})
    await cache.aclose()  # releases the Qdrant Edge directory


async def _status(config: CacheConfig, tenant: str) -> tuple[str, str]:
    app, cache = cache_stack(FakeProvider(), config=config, exact=None, vector=config.vector_store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        same = await post(
            client,
            chat("How do I delete a branch in git?"),
            **{"x-tenant": tenant, "cache-control": "no-store"},
        )
        reworded = await post(
            client,
            chat("How can I delete a git branch?"),
            **{"x-tenant": tenant, "cache-control": "no-store"},
        )
    await cache.aclose()
    return same.headers["x-aigw-cache"], reworded.headers["x-aigw-cache"]


async def test_purge_one_tenant_then_all(
    tmp_path: Path, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    vector = f"qdrant-edge://{tmp_path / 'edge'}"
    config = CacheConfig(store=redis_url, key_prefix=redis_prefix, vector_store=vector)
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"cache:\n  store: {redis_url}\n  key_prefix: '{redis_prefix}'\n  vector_store: {vector}\n"
    )
    await _fill(config)
    assert await _status(config, "a") == ("hit-exact", "hit-semantic")

    assert (
        await anyio.to_thread.run_sync(main, ["cache", "purge", "--config", str(path), "--tenant", "a"]) == 0
    )
    assert "tenant 'a': 1 exact entries, 1 vectors" in capsys.readouterr().out
    assert await _status(config, "a") == ("miss", "miss")
    assert await _status(config, "b") == ("hit-exact", "hit-semantic")

    assert await anyio.to_thread.run_sync(main, ["cache", "purge", "--config", str(path)]) == 0
    assert "all tenants: 1 exact entries, 1 vectors" in capsys.readouterr().out
    assert await _status(config, "b") == ("miss", "miss")


def test_purge_without_cache_section_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("prefix: /ai\n")
    assert main(["cache", "purge", "--config", str(path)]) == 2
    assert "no 'cache' section" in capsys.readouterr().err
