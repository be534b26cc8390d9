"""Layers load what their first request would (the budget's tokenizer, the PII engine) while the server
starts, so that the first request is not the one that waits for it (0.4 s and 0.15 s more)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from asgi_lifespan import LifespanManager

from asgi_aigw import BudgetConfig, BudgetMiddleware, RedactConfig, RedactMiddleware
from asgi_aigw.testing import FakeProvider


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
