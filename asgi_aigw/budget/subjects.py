"""Who a request is charged to: its tenant (who pays), its user (who asked), or both.

A user's windows live under the tenant's hash tag (``<prefix>{<tenant>}:u:<user>:<window>:<start>``),
so the tenant's and the user's counters are reserved and settled in the same atomic store call, on one
Redis Cluster slot: an organisation budget with per-user limits inside it, and the record of who used it.
User ids pass the same key-safety checks as tenant ids, so neither can reach into the other's keys (the
window codes never start with ``u:``, and ids never contain ``:``).

A gateway API key with limits of its own (TenantMiddleware records them in ``ctx.extra``) adds its
windows, ``<prefix>{<tenant>}:k:<key id>:<window>:<start>``, after all others and whatever ``per``
says: a key's limits apply on top of its tenant's and user's, and the tightest refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from ..kernel.errors import Unauthorized
from ..tenant.ids import InvalidTenantId, TenantIdValidator
from .config import BudgetConfig, Limits
from .windows import WINDOWS, Slot, Window, to_units

#: Prefix of the user windows' names: the fields of the tenant's live-override hash that change the
#: per-user limits of every user of that tenant (``user_tokens_per_minute``).
USER_PREFIX = "user_"
#: ``ctx.extra`` key where TenantMiddleware puts the request's API key, ``{"id", "limits"}`` (the same
#: string as ``asgi_aigw.tenant.middleware.API_KEY_CONTEXT``; the middlewares do not import each other).
API_KEY_CONTEXT = "tenant.api_key"
#: Key ids as the gateway issues them: nothing a store key could trip on.
_KEY_ID = re.compile(r"[0-9a-f]{12}")


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


@lru_cache(maxsize=8192)
def key_window(window: Window, key_id: str) -> Window:
    """``window`` counted for one API key."""
    return replace(
        window,
        name="key_" + window.name,
        code=f"k:{key_id}:{window.code}",
        header=f"key-{window.header}",
        label=f"{window.label} of API key {key_id}",
    )


@lru_cache(maxsize=4096)
def _key_limits(items: tuple[tuple[str, float], ...]) -> tuple[tuple[int, int], ...]:
    """(window index, limit in store units) of each limit set, checked with the budget's own model."""
    limits = Limits.model_validate(dict(items))
    return tuple(
        (i, to_units(window, value))
        for i, window in enumerate(WINDOWS)
        if (value := getattr(limits, window.name)) is not None and value >= 0
    )


def key_limits(extra: Mapping[str, Any]) -> tuple[str, tuple[tuple[int, int], ...]] | None:
    """The request's API key id and its limits, ``None`` when no key with limits identified it."""
    key = extra.get(API_KEY_CONTEXT)
    if not isinstance(key, Mapping) or not key.get("limits"):
        return None
    key_id = key.get("id")
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise Unauthorized("The API key id is not valid.", code="invalid_api_key")
    try:
        return key_id, _key_limits(tuple(sorted(key["limits"].items())))
    except (ValidationError, AttributeError, TypeError) as exc:
        raise Unauthorized(
            f"The API key {key_id} has unreadable limits: {exc}", code="invalid_api_key"
        ) from None


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
        self,
        tenant: str,
        user: str | None,
        slots: Sequence[Slot],
        key: tuple[str, tuple[tuple[int, int], ...]] | None = None,
    ) -> tuple[Sequence[Slot], list[int]]:
        """The slots to reserve in and their limits: the tenant's, then the user's, then the API
        key's (the Redis store's key cache relies on the last slot naming the user, or the key, which
        belongs to one user; a key's limits are fixed when it is made). A request with no user is
        charged to its tenant's windows whatever ``per`` says."""
        chosen, limits = self._subject_windows(tenant, user, slots)
        if key is None:
            return chosen, limits
        key_id, own = key
        extra = [Slot(key_window(slots[i].window, key_id), slots[i].start, slots[i].end) for i, _ in own]
        return [*chosen, *extra], [*limits, *(limit for _, limit in own)]

    def _subject_windows(
        self, tenant: str, user: str | None, slots: Sequence[Slot]
    ) -> tuple[Sequence[Slot], list[int]]:
        tenant_limits = self.tenant_limits(tenant)
        if user is None:
            return slots, tenant_limits
        own = user_slots(slots, user)
        if self.per == "user":
            return own, self._user_limits
        return [*slots, *own], [*tenant_limits, *self._user_limits]
