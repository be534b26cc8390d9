"""``DashboardConfig``: the ``dashboard:`` section of the gateway configuration.

```yaml
dashboard:
  authorize: myapp.auth:is_staff      # authorize(scope) -> bool, sync or async
```

"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..kernel.config import ConfigSection
from ..logs.usage import parse_since


class DashboardConfig(ConfigSection):
    """The usage dashboard, served by ``build_app`` at ``{prefix}/dashboard``."""

    #: ``"package.module:function"`` taking the ASGI scope and returning whether the caller may see the
    #: dashboard (``True``/``False``, or an awaitable of it). Refused callers get 403.
    authorize: str | None = None
    #: Serve the dashboard to anyone who can reach it, with no ``authorize``. Without one of the two the
    #: dashboard refuses to start: spend per tenant is not for every caller of the gateway.
    allow_anonymous: bool = False
    #: The time range the page opens with (``24h``, ``7d``, ``30d``, ``all``).
    default_range: str = "7d"
    #: How many of the slowest and of the most expensive requests are listed.
    recent: int = Field(default=10, ge=1, le=100)
    #: Budget windows are shown for at most this many tenants (those that spent most in the range).
    max_budget_tenants: int = Field(default=20, ge=0, le=500)

    @field_validator("default_range")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_since(value)
        return value
