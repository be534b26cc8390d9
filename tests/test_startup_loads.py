"""Layers load what their first request would (the budget's tokenizer, the PII engine, the semantic
cache's shard) while the server starts, so that no early request waits for it (0.4 s, 0.15 s, 60-80 ms)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager

from asgi_aigw import BudgetConfig, BudgetMiddleware, RedactConfig, RedactMiddleware, SemanticCacheMiddleware
from asgi_aigw.cache.qdrant_edge import QdrantEdgeStore
from asgi_aigw.testing import FakeProvider

from .cache_support import BagOfWordsEmbedder


class LoadingCounter:
    """A token counter that records the threads it counted on (a tokenizer loads on its first count)."""

    def __init__(self) -> None:
        self.counted: list[tuple[str, str | None, bool]] = []

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        return 1

    def count_text(self, text: str, model: str | None) -> int:
        self.counted.append((text, model, threading.current_thread() is threading.main_thread()))
        return 1


async def test_the_budget_loads_its_tokenizer_at_startup_off_the_event_loop() -> None:
    counter = LoadingCounter()
    budget = BudgetMiddleware(FakeProvider(), config=BudgetConfig(), token_counter=counter)
    async with LifespanManager(budget):
        assert counter.counted == [("warm-up", None, False)]  # before any request, in a worker thread
        assert budget.counter._warm  # the requests' counts then run inline


async def test_redaction_builds_its_engine_at_startup() -> None:
    redact = RedactMiddleware(FakeProvider(), config=RedactConfig(regex_only=True))
    assert redact.scanner._engine is None
    async with LifespanManager(redact):
        assert redact.scanner._engine is not None


async def test_the_semantic_cache_opens_its_qdrant_edge_shard_at_startup(tmp_path: Path) -> None:
    store = QdrantEdgeStore(tmp_path / "edge")
    cache = SemanticCacheMiddleware(FakeProvider(), vector=store, embedder=BagOfWordsEmbedder())
    async with LifespanManager(cache):
        await cache.drain()  # the warm-up runs in the background
        assert store._shard is not None  # created for the embedder's vectors, before any answer
        assert store._shard.info().points_count == 0
