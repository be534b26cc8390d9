"""Fixtures shared by the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._fuzz_support import write_report


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    """An event loop in a thread for a module's stacks; the fuzz tallies are written when it closes."""
    with start_blocking_portal() as portal:
        yield portal
    write_report()
