"""The usage dashboard: spend, tokens, requests, cache savings, latency, refusals and budgets per tenant
and model, from the request log and the budget store, in a page with no external assets.

```python
from asgi_aigw.dashboard import DashboardApp, DashboardConfig

app = DashboardApp(config=DashboardConfig(authorize="myapp.auth:is_staff"), log="chdb://.aigw/chdb")
```

See ``docs/dashboard.md``.
"""

from .access import Authorize, localhost_only
from .app import DashboardApp
from .config import DashboardConfig

__all__ = ["Authorize", "DashboardApp", "DashboardConfig", "localhost_only"]
