"""Deadlines for many short waits, sharing one timer per event loop.

``asyncio.timeout`` schedules and cancels a timer for every use: a few microseconds on each request's
body read, which almost never waits. Here each wait only records its deadline; one timer, armed for the
earliest deadline, cancels the waits that have overrun it and re-arms itself for the next.

```python
with deadline(30.0):
    await receive()  # raises TimeoutError once 30 s have passed
```
"""

from __future__ import annotations

import asyncio
import math
import weakref

#: A deadline this close is due: a timer that fires a little early must not leave it for the next one.
_EARLY = 0.002


class _Watch:
    """The deadlines of one event loop's waiting tasks, and the earliest time its timer fires."""

    __slots__ = ("__weakref__", "armed", "expired", "pending")

    def __init__(self) -> None:
        self.pending: dict[asyncio.Task[object], float] = {}
        #: Tasks this watch cancelled (their wait turns the cancellation into ``TimeoutError``).
        self.expired: set[asyncio.Task[object]] = set()
        #: When the earliest scheduled timer fires (``inf``: none). The handle is not kept: holding it
        #: would keep a closed loop alive through this watch.
        self.armed = math.inf

    def add(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], at: float) -> None:
        self.pending[task] = at
        if at < self.armed:
            self.armed = at
            loop.call_at(at, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = math.inf
        # timers may run up to a clock tick early (asyncio's resolution, uvloop's millisecond)
        now = loop.time() + _EARLY
        later = math.inf
        for task, at in list(self.pending.items()):
            if at <= now:
                del self.pending[task]
                if task.cancel():
                    self.expired.add(task)
            elif at < later:
                later = at
        if later < math.inf:
            self.armed = later
            loop.call_at(later, self._fire, loop)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()


class deadline:
    """``with deadline(seconds):`` raises ``TimeoutError`` in the block once ``seconds`` have passed,
    as ``async with asyncio.timeout(seconds)`` does. Use it inside a task, around awaits. A deadline
    inside another one of the same task ends at the earlier of the two, and gives the outer one back."""

    __slots__ = ("_cancelling", "_outer", "_seconds", "_task", "_watch")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        watch = _watches.get(loop)
        if watch is None:
            watch = _watches[loop] = _Watch()
        self._task, self._watch, self._cancelling = task, watch, task.cancelling()
        at = loop.time() + self._seconds
        outer = self._outer = watch.pending.get(task)
        if outer is not None and outer < at:
            at = outer
        watch.add(loop, task, at)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        task, watch = self._task, self._watch
        watch.pending.pop(task, None)
        timed_out = False
        if task in watch.expired:
            watch.expired.discard(task)
            # ours unless someone else cancelled the task too (then their cancellation goes on)
            timed_out = task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError
        if self._outer is not None:
            # the enclosing deadline again (due now if it was the one that fired: it fires once more)
            self._watch.add(asyncio.get_running_loop(), task, self._outer)
        if timed_out:
            raise TimeoutError from exc
