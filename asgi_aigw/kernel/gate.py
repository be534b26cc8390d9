"""The budget's gate: a budget that lets the cache inside it look first, then reserves what is needed.

BudgetMiddleware reserves before a request goes on. With a cache inside, that is a reservation of the
whole estimate for every hit, given back after it: two store calls for an answer that costs one request.
When every layer between the budget and the cache is known to spend nothing (their classes say so with
:data:`BUDGET_GATE`), the budget instead puts a :class:`BudgetGate` in the request's context and the cache
calls it:

- :meth:`BudgetGate.lookup` looks the answer up and reserves in one go: what a hit costs when it is
  found, the whole estimate when not (one Redis script when both stores share a server);
- :meth:`BudgetGate.admit` before anything else goes on (a miss, a bypass, a request the cache passes
  on): the whole estimate, if not reserved yet;
- :meth:`BudgetGate.after_answer` hands over the exact entry to write, sent beside the settlement.

A refused gate means: send nothing and return; the budget answers with its refusal. Whatever answers
without passing the gate (an error of a layer in between) is reserved for by the budget before the first
byte leaves, so every request is counted and nothing spends unreserved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

#: The class attribute that tells the budget what a layer inside it does with the gate: ``"keeper"``
#: (the cache: it passes the gate before its app runs), ``"transparent"`` (it spends nothing and passes
#: the request on). Any other layer ends the search: the budget then reserves up front, as always.
BUDGET_GATE = "budget_gate"


@dataclass(frozen=True, slots=True)
class RedisEntry:
    """Where an exact entry lives in Redis, so a budget on the same server can read or write it in its
    own calls: the store's URL and the entry's full key; ``command``, the packed write."""

    url: str
    key: bytes
    command: bytes = b""


@dataclass(frozen=True, slots=True)
class AnswerWrite:
    """An exact entry to store once the answer has gone: ``write`` through the cache's own store, or
    ``redis`` through the budget's connection when they share a server (``failed`` is told of an error)."""

    write: Callable[[], Awaitable[None]]
    redis: RedisEntry | None
    failed: Callable[[BaseException], None]


class BudgetGate(Protocol):
    """What the cache calls; see the module docstring."""

    async def lookup(
        self, get: Callable[[], Awaitable[bytes | None]], redis: RedisEntry | None
    ) -> tuple[bytes | None, bool]:
        """The stored entry (``get()``, or read with the reservation at ``redis``) and whether the
        request is admitted. Found: a hit's cost is reserved; not found: the whole estimate."""
        ...

    async def admit(self) -> bool:
        """Reserve the whole estimate unless it is; False when refused (send nothing, return)."""
        ...

    def after_answer(self, write: AnswerWrite) -> None:
        """Store an entry once the answer has gone, beside the settlement."""
        ...


def find_keeper(app: object, depth: int = 16) -> object | None:
    """The layer inside ``app``'s chain that keeps the gate, reached through transparent layers only."""
    for _ in range(depth):
        role = getattr(type(app), BUDGET_GATE, None)
        if role == "keeper":
            return app
        if role != "transparent":
            return None
        app = getattr(app, "app", None)
    return None
