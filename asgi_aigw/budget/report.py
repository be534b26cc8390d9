"""A tenant's budget windows as they stand: limit, where it comes from, usage, what is left, reset.

``aigw budget show`` prints it and the dashboard draws it; both read the store the gateway meters in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from .config import BudgetConfig
from .middleware import limits_vector
from .store import BudgetStore
from .windows import SlotClock, Window, from_units

LimitSource = Literal["override", "tenant config", "default"]


@dataclass
class WindowReport:
    window: Window
    #: In store units (nano-dollars for money); ``-1``: unlimited.
    limit_units: int
    used_units: int
    source: LimitSource
    resets_in_seconds: float

    @property
    def limit(self) -> float | None:
        """The limit in its own unit (requests, tokens, US dollars), ``None`` when unlimited."""
        return None if self.limit_units < 0 else from_units(self.window, self.limit_units)

    @property
    def used(self) -> float:
        return from_units(self.window, self.used_units)

    @property
    def remaining_units(self) -> int | None:
        return None if self.limit_units < 0 else max(0, self.limit_units - self.used_units)

    @property
    def remaining(self) -> float | None:
        left = self.remaining_units
        return None if left is None else from_units(self.window, left)


async def tenant_windows(
    store: BudgetStore, config: BudgetConfig, tenant: str, now: float | None = None
) -> list[WindowReport]:
    """Every window of ``tenant``, in :data:`~asgi_aigw.budget.windows.WINDOWS` order: its live
    override, else its limit in ``config.tenants``, else the default (two store calls)."""
    now = time.time() if now is None else now
    slots = SlotClock().slots(now)
    overrides = await store.get_overrides(tenant)
    usage = await store.usage(tenant, slots)
    tenant_limits = config.tenants.get(tenant)
    defaults = limits_vector(config.limits)
    configured = limits_vector(tenant_limits, config.limits) if tenant_limits else defaults
    reports: list[WindowReport] = []
    for slot, used, default, fixed in zip(slots, usage, defaults, configured, strict=True):
        window = slot.window
        source: LimitSource
        if window.name in overrides:
            limit, source = overrides[window.name], "override"
        elif tenant_limits is not None and getattr(tenant_limits, window.name) is not None:
            limit, source = fixed, "tenant config"
        else:
            limit, source = default, "default"
        reports.append(WindowReport(window, limit, used, source, round(slot.end - now, 3)))
    return reports
