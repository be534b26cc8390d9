"""Budgets: token, request and money limits per tenant, reserved atomically and settled with real usage.

```python
from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits

app = BudgetMiddleware(app, config=BudgetConfig(store="redis://localhost:6379/0",
                                                limits=Limits(tokens_per_minute=20_000)))
```
"""

from .config import BudgetConfig, CacheHitCharge, Limits, ModelPrice
from .memory import MemoryBudgetStore
from .middleware import BudgetMiddleware, BudgetUnavailable
from .redis import RedisBudgetStore
from .store import BudgetStore, Reservation, StoreError
from .tokens import TokenCounter
from .windows import Slot

__all__ = [
    "BudgetConfig",
    "BudgetMiddleware",
    "BudgetStore",
    "BudgetUnavailable",
    "CacheHitCharge",
    "Limits",
    "MemoryBudgetStore",
    "ModelPrice",
    "RedisBudgetStore",
    "Reservation",
    "Slot",
    "StoreError",
    "TokenCounter",
]
