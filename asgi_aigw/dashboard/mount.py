"""The dashboard mounted beside the gateway (``build_app``): its own path, outside every layer."""

from __future__ import annotations

from typing import Any

from ..kernel.mount import PrefixMount


class DashboardMount(PrefixMount):
    """``{prefix}/dashboard`` to the dashboard, everything else to the gateway. Lifespan goes to the
    gateway, and the dashboard is closed after it; :meth:`aclose` closes both (for callers that close
    the app themselves, as without a dashboard)."""

    async def aclose(self) -> None:
        await self._close_router()
        inner: Any = getattr(self.app, "aclose", None)
        if inner is not None:
            await inner()
