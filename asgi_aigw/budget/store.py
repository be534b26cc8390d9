"""The budget store contract: atomic reservation over several windows, settlement, live overrides.

Two implementations with the same semantics: :class:`~asgi_aigw.budget.memory.MemoryBudgetStore` (one
process) and :class:`~asgi_aigw.budget.redis.RedisBudgetStore` (shared by every worker and host).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .windows import Slot


class StoreError(Exception):
    """The store could not be reached or answered with an error."""


@dataclass(slots=True)
class Reservation:
    """The outcome of :meth:`BudgetStore.reserve`, one entry per slot in the order given."""

    allowed: bool
    #: Usage after the reservation when allowed, else the usage that refused it. A store may report 0
    #: for a window with no limit that the call added nothing to (Redis does not read that counter).
    used: list[int]
    #: The limit that applied (live override, else the given default); ``-1`` for none.
    limits: list[int]


class BudgetStore(Protocol):
    """Counters per tenant and window slot, in store units (requests, tokens, nano-dollars)."""

    async def reserve(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        limits: Sequence[int],
        grace: int,
        *,
        token: str | None = None,
    ) -> Reservation:
        """Atomically: if every slot has room for its amount (under its override, else ``limits``),
        add every amount; otherwise add nothing. Keys expire ``grace`` seconds after their slot ends.
        A reservation made with a ``token`` is remembered under it until it is settled."""
        ...

    async def settle(
        self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int], *, token: str | None = None
    ) -> None:
        """Add ``deltas`` (negative to give back) to slots that still exist; never below zero. With a
        ``token``, only if a reservation made with it is still unsettled: a settlement sent twice (its
        first reply was lost), or one for a reservation whose reply was lost before it was known to be
        made, changes nothing the second time or when none was made.

        ``token`` is optional for stores of your own: without it in their signature, the middleware
        calls them as before (and cannot tell a lost reply from a failed call)."""
        ...

    async def usage(self, tenant: str, slots: Sequence[Slot]) -> list[int]: ...

    async def reset_usage(self, tenant: str, slots: Sequence[Slot]) -> None: ...

    async def get_overrides(self, tenant: str) -> dict[str, int]:
        """The tenant's live limits by window name, in store units (``-1``: unlimited)."""
        ...

    async def set_overrides(self, tenant: str, values: Mapping[str, int | None]) -> None:
        """Set live limits; ``None`` removes a window's override (back to the configured default)."""
        ...

    async def clear_overrides(self, tenant: str) -> None: ...

    async def aclose(self) -> None: ...


def per_process(url: str) -> bool:
    """Whether the budget store at ``url`` lives in one process (each worker would count alone)."""
    return url.partition("://")[0].lower() == "memory"


def multi_worker_error(url: str, workers: int) -> str | None:
    """Why ``workers`` processes cannot share the budget store at ``url``, or ``None`` if they can."""
    if workers <= 1 or not per_process(url):
        return None
    return (
        f"--workers {workers} with the in-process budget store ({url}) would give each worker its own "
        f"counters, multiplying every limit by {workers}: set budget.store: redis://HOST:6379/0 "
        "(shared by every worker), or run one worker."
    )
