"""The in-process budget store: the Redis store's semantics for one process (embedded default, tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

from .store import Reservation
from .windows import Slot


class _Tenant:
    __slots__ = ("counters", "lock", "overrides", "reservations")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        #: slot suffix -> [value, expires_at (epoch seconds)]
        self.counters: dict[str, list[int]] = {}
        self.overrides: dict[str, int] = {}
        #: token of a reservation not settled yet -> when it is forgotten (epoch seconds)
        self.reservations: dict[str, int] = {}

    def sweep(self, now: float) -> None:
        expired = [key for key, (_, expires) in self.counters.items() if expires <= now]
        for key in expired:
            del self.counters[key]
        for token in [t for t, expires in self.reservations.items() if expires <= now]:
            del self.reservations[token]

    def value(self, slot: Slot, now: float) -> int:
        entry = self.counters.get(slot.suffix)
        if entry is None or entry[1] <= now:
            return 0
        return entry[0]

    def idle(self) -> bool:
        """Nothing left to remember (swept first) and nobody inside or waiting: safe to forget."""
        return not (self.counters or self.reservations or self.overrides or self.lock.locked())


#: Tenants held before the first sweep of those with nothing left to remember.
_FIRST_SWEEP = 1024


class MemoryBudgetStore:
    """Counters in a dict, one :class:`asyncio.Lock` per tenant; expired slots are swept lazily, and a
    tenant with nothing left (its windows over, no override) is forgotten once the tenants have doubled
    since the last sweep: with tenants named by a bare header, every new name would otherwise stay."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._tenants: dict[str, _Tenant] = {}
        self._now = clock
        self._sweep_at = _FIRST_SWEEP

    def _tenant(self, tenant: str) -> _Tenant:
        state = self._tenants.get(tenant)
        if state is None:
            if len(self._tenants) >= self._sweep_at:
                self._forget_idle()
            state = self._tenants[tenant] = _Tenant()
        return state

    def _forget_idle(self) -> None:
        # no await here, and a caller takes its tenant's lock before its first await: a tenant whose
        # lock is free has nobody between looking it up and locking it
        now = self._now()
        for name, state in list(self._tenants.items()):
            state.sweep(now)
            if state.idle():
                del self._tenants[name]
        self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._tenants))

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
        state = self._tenant(tenant)
        async with state.lock:
            now = self._now()
            if len(state.counters) > 64 or len(state.reservations) > 1024:
                state.sweep(now)
            if token is not None and token in state.reservations:  # the same call again: made already
                used = [state.value(slot, now) for slot in slots]
                effective = [
                    state.overrides.get(s.window.name, lim) for s, lim in zip(slots, limits, strict=True)
                ]
                return Reservation(True, used, effective)
            effective = [
                state.overrides.get(slot.window.name, limit)
                for slot, limit in zip(slots, limits, strict=True)
            ]
            used = [state.value(slot, now) for slot in slots]
            for current, amount, limit in zip(used, amounts, effective, strict=True):
                if limit >= 0 and amount > 0 and current + amount > limit:
                    return Reservation(False, used, effective)
            for index, (slot, amount) in enumerate(zip(slots, amounts, strict=True)):
                if amount <= 0:
                    continue
                entry = state.counters.get(slot.suffix)
                if entry is None or entry[1] <= now:
                    state.counters[slot.suffix] = [amount, slot.end + grace]
                else:
                    entry[0] += amount
                used[index] += amount
            if token is not None:
                state.reservations[token] = max(slot.end for slot in slots) + grace
            return Reservation(True, used, effective)

    async def settle(
        self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int], *, token: str | None = None
    ) -> None:
        state = self._tenant(tenant)
        async with state.lock:
            if token is not None and state.reservations.pop(token, None) is None:
                return  # settled already, or never reserved
            now = self._now()
            for slot, delta in zip(slots, deltas, strict=True):
                entry = state.counters.get(slot.suffix)
                if delta and entry is not None and entry[1] > now:
                    entry[0] = max(0, entry[0] + delta)

    async def usage(self, tenant: str, slots: Sequence[Slot]) -> list[int]:
        # a read keeps no state: a report on any name (the dashboard's tenant filter) must not grow the dict
        state = self._tenants.get(tenant)
        if state is None:
            return [0] * len(slots)
        now = self._now()
        return [state.value(slot, now) for slot in slots]

    async def reset_usage(self, tenant: str, slots: Sequence[Slot]) -> None:
        state = self._tenant(tenant)
        async with state.lock:
            for slot in slots:
                state.counters.pop(slot.suffix, None)

    async def get_overrides(self, tenant: str) -> dict[str, int]:
        state = self._tenants.get(tenant)
        return dict(state.overrides) if state is not None else {}

    async def set_overrides(self, tenant: str, values: Mapping[str, int | None]) -> None:
        state = self._tenant(tenant)
        async with state.lock:
            for name, value in values.items():
                if value is None:
                    state.overrides.pop(name, None)
                else:
                    state.overrides[name] = int(value)

    async def clear_overrides(self, tenant: str) -> None:
        self._tenant(tenant).overrides.clear()

    async def aclose(self) -> None:
        return None


def open_store(url: str, **_: object) -> MemoryBudgetStore:
    """``memory://``: counters in this process (registered in :mod:`asgi_aigw.stores.registry`)."""
    return MemoryBudgetStore()
