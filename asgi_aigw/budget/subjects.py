"""Who a request is charged to: its tenant (who pays), its user (who asked), or both.

A user's windows live under the tenant's hash tag (``<prefix>{<tenant>}:u:<user>:<window>:<start>``),
so the tenant's and the user's counters are reserved and settled in the same atomic store call, on one
Redis Cluster slot: an organisation budget with per-user limits inside it, and the record of who used it.
User ids pass the same key-safety checks as tenant ids, so neither can reach into the other's keys (the
window codes never start with ``u:``, and ids never contain ``:``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache

from ..kernel.errors import Unauthorized
from ..tenant.ids import InvalidTenantId, TenantIdValidator
from .config import BudgetConfig
from .windows import Slot, Window

#: Prefix of the user windows' names: the fields of the tenant's live-override hash that change the
#: per-user limits of every user of that tenant (``user_tokens_per_minute``).
USER_PREFIX = "user_"


@lru_cache(maxsize=8192)
def user_window(window: Window, user: str) -> Window:
    """``window`` counted for one user: its own key code, override name, header and label."""
    return replace(
        window,
        name=USER_PREFIX + window.name,
        code=f"u:{user}:{window.code}",
        header=f"user-{window.header}",
        label=f"{window.label} of user {user}",
    )


def user_slots(slots: Sequence[Slot], user: str) -> list[Slot]:
    """The user's own slots for the tenant's current ``slots`` (same bounds)."""
    return [Slot(user_window(slot.window, user), slot.start, slot.end) for slot in slots]


class BudgetSubjects:
    """Which windows, with which limits, a request is reserved in (``BudgetConfig.per``)."""

    __slots__ = ("_user_limits", "per", "tenant_limits", "validate")

    def __init__(
        self,
        config: BudgetConfig,
        validate: TenantIdValidator,
        tenant_limits: Callable[[str], list[int]],
        user_limits: list[int],
    ) -> None:
        self.per = config.per
        self.validate = validate
        self.tenant_limits = tenant_limits
        self._user_limits = user_limits

    def user(self, user: str | None) -> str | None:
        """The request's user id, checked like a tenant id (it becomes part of store keys)."""
        if user is None or self.per == "tenant":
            return None
        try:
            return self.validate(user)
        except InvalidTenantId as exc:
            message = str(exc).replace("tenant id", "user id")
            raise Unauthorized(f"The user id is not valid: {message}.", code="invalid_user") from None

    def windows(
        self, tenant: str, user: str | None, slots: Sequence[Slot]
    ) -> tuple[Sequence[Slot], list[int]]:
        """The slots to reserve in and their limits. The user's slots come last (the Redis store's key
        cache relies on the last slot naming the user). A request with no user is charged to its
        tenant's windows whatever ``per`` says."""
        tenant_limits = self.tenant_limits(tenant)
        if user is None:
            return slots, tenant_limits
        own = user_slots(slots, user)
        if self.per == "user":
            return own, self._user_limits
        return [*slots, *own], [*tenant_limits, *self._user_limits]
