"""kernel.deadlines: the shared-timer deadline behaves as asyncio.timeout does."""

from __future__ import annotations

import asyncio
import time

import pytest

from asgi_aigw.kernel.deadlines import _watches, deadline


async def test_an_overrun_wait_raises_timeout_at_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError), deadline(0.2):
        await asyncio.sleep(5)
    assert 0.18 <= time.monotonic() - started < 1.0


async def test_a_wait_that_finishes_in_time_is_left_alone_afterwards() -> None:
    with deadline(0.1):
        await asyncio.sleep(0.01)
    # the timer armed for 0.1 s fires while this task sleeps: it must not cancel it
    await asyncio.sleep(0.2)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_waits_with_different_deadlines_each_expire_at_their_own() -> None:
    async def wait(seconds: float) -> float:
        started = time.monotonic()
        try:
            with deadline(seconds):
                await asyncio.sleep(5)
        except TimeoutError:
            return time.monotonic() - started
        return -1.0

    # the long deadline is armed first, so the short one must re-arm the shared timer earlier
    long, short = await asyncio.gather(wait(0.6), wait(0.15))
    assert 0.13 <= short < 0.45
    assert 0.58 <= long < 1.2


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout() -> None:
    async def wait() -> None:
        with deadline(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_from_outside_at_the_deadline_still_cancels() -> None:
    """The deadline and an outside cancel land together: the task is cancelled, not timed out."""
    loop = asyncio.get_running_loop()

    async def wait() -> None:
        with deadline(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    watch = _watches[loop]
    watch.pending[task] = 0.0  # due now
    watch._fire(loop)  # the shared timer cancels the task...
    task.cancel()  # ...and so does its owner, before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task


async def _nested(outer: float, inner: float) -> tuple[str, float, str, float]:
    """How the inner and the outer block of nested deadlines ended, and when (seconds from the start):
    each block sleeps far past both."""
    started = time.monotonic()
    inner_end = outer_end = "finished"
    inner_at = -1.0
    try:
        with deadline(outer):
            try:
                with deadline(inner):
                    await asyncio.sleep(5)
            except TimeoutError:
                inner_end = "timed out"
            inner_at = time.monotonic() - started
            await asyncio.sleep(5)
    except TimeoutError:
        outer_end = "timed out"
    return inner_end, inner_at, outer_end, time.monotonic() - started


async def test_a_deadline_inside_another_ends_at_the_earlier_and_gives_the_outer_back() -> None:
    # the inner one is longer: the outer one's time ends it, and the outer block at once after
    inner_end, inner_at, outer_end, outer_at = await _nested(0.2, 5)
    assert (inner_end, outer_end) == ("timed out", "timed out")
    assert 0.18 <= inner_at < 1.0
    assert outer_at - inner_at < 0.2
    # a shorter inner one ends alone; the outer one still holds afterwards, at its own time
    inner_end, inner_at, outer_end, outer_at = await _nested(0.4, 0.1)
    assert (inner_end, outer_end) == ("timed out", "timed out")
    assert 0.08 <= inner_at < 0.3
    assert 0.38 <= outer_at < 1.2
    # an inner one that ends in time leaves the outer one as it was, and neither fires afterwards
    with deadline(0.3):
        with deadline(0.05):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.4)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
