"""One request's reservation: made up front, or when the cache inside has looked (the gate).

See :mod:`asgi_aigw.kernel.gate` for the contract. States: waiting (nothing reserved yet), hit (what a
cache hit costs is reserved, unmarked: nothing to settle after it), full (the whole estimate, marked
with the request's token), unmetered (the store failed open), refused (``refusal`` says why).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from ..kernel.context import RequestContext
from ..kernel.dialects import Dialect
from ..kernel.errors import GatewayError
from ..kernel.gate import AnswerWrite, RedisEntry
from .store import Reservation
from .windows import Slot, from_units

if TYPE_CHECKING:
    from .middleware import BudgetMiddleware

WAITING, HIT, FULL, UNMETERED, REFUSED = "waiting", "hit", "full", "unmetered", "refused"


class Pending:
    """The reservation of one request, and the :class:`~asgi_aigw.kernel.gate.BudgetGate` the cache
    calls when the budget waits for it."""

    __slots__ = (
        "amounts",
        "budget",
        "ctx",
        "dialect",
        "held",
        "hit_amounts",
        "limits",
        "marker",
        "now",
        "refusal",
        "reservation",
        "slots",
        "state",
        "tenant",
        "token",
        "unpriced",
        "writes",
    )

    def __init__(
        self,
        budget: BudgetMiddleware,
        ctx: RequestContext,
        tenant: str,
        slots: Sequence[Slot],
        amounts: list[int],
        limits: Sequence[int],
        token: str | None,
        now: float,
        dialect: Dialect,
    ) -> None:
        self.budget = budget
        self.ctx = ctx
        self.tenant = tenant
        self.slots = slots
        self.amounts = amounts
        self.limits = limits
        self.token = token
        self.now = now
        self.dialect = dialect
        #: What a cache hit reserves (requests only); None: a hit reserves the whole estimate, because
        #: the budget charges hits tokens or money, known only once the answer is read.
        self.hit_amounts: list[int] | None = None
        self.state = WAITING
        #: What the store holds for this request, and the token its reservation was marked with.
        self.held: list[int] | None = None
        self.marker: str | None = None
        self.reservation: Reservation | None = None
        self.refusal: GatewayError | None = None
        #: Exact entries to write beside the settlement.
        self.writes: list[AnswerWrite] = []
        #: The model asked for when it has no price (a live money limit then refuses it).
        self.unpriced: str | None = None

    @property
    def admitted(self) -> bool:
        return self.state in (HIT, FULL, UNMETERED)

    # -- the gate ---------------------------------------------------------------------------------

    async def admit(self) -> bool:
        """The whole estimate reserved (what goes on may spend it); False when refused."""
        if self.state == WAITING:
            await self._reserve(self.amounts, self.token, FULL)
        elif self.state == HIT:
            await self._upgrade()
        return self.state in (FULL, UNMETERED)

    async def ensure(self) -> bool:
        """Something reserved before an answer leaves (a layer answered without passing the gate)."""
        if self.state == WAITING:
            await self._reserve(self.amounts, self.token, FULL)
        return self.admitted

    async def lookup(
        self, get: Callable[[], Awaitable[bytes | None]], redis: RedisEntry | None
    ) -> tuple[bytes | None, bool]:
        if self.state != WAITING:
            return await get(), await self.ensure()
        budget = self.budget
        if redis is not None and budget.reads(redis.url):
            # one script reads the entry and reserves: one round trip for a hit
            try:
                outcome = await budget.reserve_and_get(self, redis.key)
            except GatewayError as exc:
                self._refuse(exc)
                return None, False
            if outcome is None:  # the store failed open: no entry read either
                self._unmetered()
                return None, True
            reservation, raw, hit = outcome
            if hit:
                # its marker is the store's to delete (with a later lookup): nothing to settle
                await self._take(reservation, self._hit(), None, HIT)
            else:
                await self._take(reservation, self.amounts, self.token, FULL)
            return (raw if self.admitted else None), self.admitted
        raw = await get()
        if raw is not None and self.hit_amounts is not None:
            await self._reserve(self.hit_amounts, self.token, HIT)
        else:
            await self._reserve(self.amounts, self.token, FULL)
        return (raw if self.admitted else None), self.admitted

    def after_answer(self, write: AnswerWrite) -> None:
        self.writes.append(write)

    # -- reserving --------------------------------------------------------------------------------

    def _hit(self) -> list[int]:
        assert self.hit_amounts is not None
        return self.hit_amounts

    async def _reserve(self, amounts: list[int], token: str | None, state: str) -> None:
        try:
            reservation = await self.budget.reserve(self.tenant, self.slots, amounts, token, self.limits)
        except GatewayError as exc:
            self._refuse(exc)
            return
        if reservation is None:
            self._unmetered()
        else:
            await self._take(reservation, amounts, token, state)

    async def _upgrade(self) -> None:
        """A hit's reservation became a miss (its entry could not be read): reserve the rest, under a
        token of its own (the hit's marker would make the store take this for a repeat)."""
        hit = self._hit()
        rest = [amount - part for amount, part in zip(self.amounts, hit, strict=True)]
        held, marker = self.held, self.marker
        await self._reserve(rest, None if self.token is None else self.token + "u", FULL)
        if self.state == FULL:
            self.held = list(self.amounts)
            if marker is not None:  # the hit's own marker (read without the lookup script): drop it
                await self.budget.give_back(self.tenant, self.slots, [0] * len(hit), marker)
        elif self.state == REFUSED and held is not None:
            await self.budget.give_back(self.tenant, self.slots, [-part for part in held], marker)

    async def _take(
        self, reservation: Reservation, amounts: list[int], token: str | None, state: str
    ) -> None:
        budget = self.budget
        if not reservation.allowed:
            self._refuse(budget.over_limit(self, amounts, reservation))
            return
        refusal = budget.unpriced_refusal(self, reservation)
        if refusal is not None:
            # a live override set a money limit the configuration has not: give the reservation back
            await budget.give_back(self.tenant, self.slots, [-amount for amount in amounts], token)
            self._refuse(refusal)
            return
        self.state = state
        self.held = amounts
        self.marker = token
        self.reservation = reservation
        ctx = self.ctx
        ctx.budget_decision = "allowed"
        ctx.budget_remaining = {
            slot.window.name: from_units(slot.window, max(0, limit - used))
            for slot, used, limit in zip(self.slots, reservation.used, reservation.limits, strict=True)
            if limit >= 0
        }

    def _refuse(self, exc: GatewayError) -> None:
        self.state = REFUSED
        self.refusal = exc

    def _unmetered(self) -> None:
        self.state = UNMETERED
        self.ctx.budget_decision = "unmetered"


def hit_amounts(slots: Sequence[Slot], requests: bool) -> list[int]:
    """What a cache hit reserves in each slot: one request where hits count as requests, else nothing."""
    return [1 if requests and slot.window.metric == "requests" else 0 for slot in slots]
