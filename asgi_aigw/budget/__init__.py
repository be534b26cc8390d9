"""Budgets: token, request and money limits per tenant, reserved atomically and settled with real usage."""

from .config import BudgetConfig, CacheHitCharge, Limits, ModelPrice
from .memory import MemoryBudgetStore
from .middleware import BudgetMiddleware, BudgetUnavailable
from .pricing import DEFAULT_PRICES, PriceTable
from .redis import RedisBudgetStore
from .store import BudgetStore, Reservation, StoreError, store_from_url
from .tokens import RuntimeTokenCounter, TokenCounter
from .windows import WINDOW_NAMES, WINDOWS, Slot, SlotClock, Window

__all__ = [
    "DEFAULT_PRICES",
    "WINDOWS",
    "WINDOW_NAMES",
    "BudgetConfig",
    "BudgetMiddleware",
    "BudgetStore",
    "BudgetUnavailable",
    "CacheHitCharge",
    "Limits",
    "MemoryBudgetStore",
    "ModelPrice",
    "PriceTable",
    "RedisBudgetStore",
    "Reservation",
    "RuntimeTokenCounter",
    "Slot",
    "SlotClock",
    "StoreError",
    "TokenCounter",
    "Window",
    "store_from_url",
]
