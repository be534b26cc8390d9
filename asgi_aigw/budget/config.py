"""Configuration of :class:`~asgi_aigw.budget.BudgetMiddleware` (the ``budget:`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..kernel.config import BodyLimits, ConfigSection
from ..stores.registry import BUDGET_STORES
from .windows import MAX_UNITS

#: The largest money limit, in dollars: under what the stores hold exactly (2**53 nano-dollars, about
#: 9,007,199 dollars), a round figure that stays under it once converted.
MAX_DOLLARS = 9_000_000.0
#: The largest price, in dollars per million tokens: a dollar a token.
MAX_PRICE = 1_000_000.0


class Limits(ConfigSection):
    """Limits per tenant and window. Unset means no limit in the defaults, and "inherit the default"
    in a per-tenant entry; ``-1`` means explicitly unlimited. Money is in US dollars."""

    # bounded by what the stores count exactly (:data:`~asgi_aigw.budget.windows.MAX_UNITS`): an
    # infinite or larger limit failed in the middle of startup, or broke the store's arithmetic
    requests_per_minute: int | None = Field(default=None, ge=-1, le=MAX_UNITS)
    tokens_per_minute: int | None = Field(default=None, ge=-1, le=MAX_UNITS)
    tokens_per_hour: int | None = Field(default=None, ge=-1, le=MAX_UNITS)
    tokens_per_day: int | None = Field(default=None, ge=-1, le=MAX_UNITS)
    tokens_per_month: int | None = Field(default=None, ge=-1, le=MAX_UNITS)
    cost_per_day: float | None = Field(default=None, ge=-1, le=MAX_DOLLARS, allow_inf_nan=False)
    cost_per_month: float | None = Field(default=None, ge=-1, le=MAX_DOLLARS, allow_inf_nan=False)


class ModelPrice(ConfigSection):
    """US dollars per one million tokens."""

    # finite and at most a dollar a token: an infinite price made every cost of the model fail
    input: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)
    output: float = Field(default=0.0, ge=0, le=MAX_PRICE, allow_inf_nan=False)
    #: Price of prompt tokens the provider served from its own prompt cache (defaults to ``input``).
    cached_input: float | None = Field(default=None, ge=0, le=MAX_PRICE, allow_inf_nan=False)
    #: Price of prompt tokens written to the provider's prompt cache with its default lifetime
    #: (Anthropic's 5-minute writes; defaults to ``input``; built-in Claude prices: 1.25x input).
    cache_write: float | None = Field(default=None, ge=0, le=MAX_PRICE, allow_inf_nan=False)
    #: Price of prompt tokens written to the cache for an hour (Anthropic's ``"ttl": "1h"``
    #: breakpoints, ``cache_creation.ephemeral_1h_input_tokens``; defaults to ``cache_write``, else
    #: ``input``; built-in Claude prices: 2x input).
    cache_write_1h: float | None = Field(default=None, ge=0, le=MAX_PRICE, allow_inf_nan=False)


class CacheHitCharge(ConfigSection):
    """What an answer from the gateway's cache costs the tenant (default: one request, no tokens)."""

    tokens: bool = False
    requests: bool = True
    cost: bool = False


class BudgetConfig(BodyLimits):
    #: ``memory://`` (one process) or ``redis://HOST:PORT/DB`` / ``rediss://`` / ``unix://`` /
    #: ``redis+cluster://`` / ``redis+sentinel://`` (shared).
    store: str = "memory://"
    #: Prefix of every store key: ``<prefix>{<tenant>}:<window>:<start>`` (hash tag per tenant).
    key_prefix: str = "aigw:"
    #: Limits for every tenant, unless a per-tenant entry or a live override says otherwise.
    limits: Limits = Field(default_factory=Limits)
    #: Per-tenant limits from the configuration file (live overrides in the store win over these).
    tenants: dict[str, Limits] = Field(default_factory=dict)
    #: Whose windows a request is reserved in: its ``tenant``'s (``limits``/``tenants``), its ``user``'s
    #: (``user_limits``), or both at once (``tenant_and_user``: an organisation budget with per-user
    #: limits inside it). Requests that carry no user are charged to their tenant.
    per: Literal["tenant", "user", "tenant_and_user"] = "tenant"
    #: Limits of each user (within their tenant) when ``per`` is ``user`` or ``tenant_and_user``.
    user_limits: Limits = Field(default_factory=Limits)
    #: Output tokens reserved when a request sets neither ``max_tokens`` nor ``max_completion_tokens``.
    default_max_tokens: int = Field(default=4096, ge=1)
    cache_hits: CacheHitCharge = Field(default_factory=CacheHitCharge)
    #: Prices per model (or alias), added to and overriding the built-in table.
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    #: Price of models found in no table. ``None``: where a money limit applies, a model with no price
    #: is refused (at startup when the configuration names it, else per request); elsewhere it costs 0.
    default_price: ModelPrice | None = None
    #: The upstream models each client model name (alias) is served by; ``build_app`` fills it from
    #: ``router.models``. An alias with no price of its own is priced as the dearest of its models.
    model_aliases: dict[str, list[str]] = Field(default_factory=dict)
    #: When the store cannot be reached: ``open`` lets requests through unmetered, ``closed`` answers 503.
    failure_mode: Literal["open", "closed"] = "open"
    #: Seconds to wait for the store on each call.
    store_timeout: float = Field(default=2.0, gt=0)
    #: After a store failure, skip the store for this many seconds (applying ``failure_mode``).
    store_retry_seconds: float = Field(default=1.0, ge=0)
    #: Store failures are logged at most once per this many seconds.
    error_log_interval: float = Field(default=60.0, ge=0)
    #: Window keys live this long past their window's end, so long streams still settle into them.
    key_grace_seconds: int = Field(default=600, ge=0)
    #: Send ``x-ratelimit-*`` headers on successful answers too (always on 429s).
    headers: bool = True
    #: The tenant of requests that carry none (no TenantMiddleware in front).
    default_tenant: str = "default"

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        return BUDGET_STORES.check(value)
