"""Model prices, for money limits: a built-in table of well-known models, overridable per model.

Prices are the providers' published list prices in US dollars per million tokens at the time of
writing; they change, so set your own in ``budget.pricing`` when money limits matter.

Anthropic prices its prompt cache off the input price (docs.anthropic.com, "Pricing", prompt caching):
a cache read costs 0.1x input, a write with the default 5-minute lifetime 1.25x input, a write with a
1-hour lifetime (``"ttl": "1h"``) 2x input. Answers report the writes of each lifetime apart
(``usage.cache_creation``), so each is priced at its own rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from .config import ModelPrice

logger = logging.getLogger("asgi_aigw.budget")

#: model name (or name prefix, matched at a ``-`` boundary): (input, output, cached input) per 1M tokens.
DEFAULT_PRICES: dict[str, tuple[float, float, float | None]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00, 0.125),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5-nano": (0.05, 0.40, 0.005),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "gpt-4-turbo": (10.00, 30.00, None),
    "gpt-4": (30.00, 60.00, None),
    "gpt-3.5-turbo": (0.50, 1.50, None),
    "o1": (15.00, 60.00, 7.50),
    "o1-mini": (1.10, 4.40, 0.55),
    "o3": (2.00, 8.00, 0.50),
    "o3-mini": (1.10, 4.40, 0.55),
    "o4-mini": (1.10, 4.40, 0.275),
    "text-embedding-3-small": (0.02, 0.0, None),
    "text-embedding-3-large": (0.13, 0.0, None),
    "text-embedding-ada-002": (0.10, 0.0, None),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00, 0.50),
    "claude-opus-4-1": (15.00, 75.00, 1.50),
    "claude-opus-4": (15.00, 75.00, 1.50),
    "claude-sonnet-4-5": (3.00, 15.00, 0.30),
    "claude-sonnet-4": (3.00, 15.00, 0.30),
    "claude-haiku-4-5": (1.00, 5.00, 0.10),
    "claude-3-7-sonnet": (3.00, 15.00, 0.30),
    "claude-3-5-sonnet": (3.00, 15.00, 0.30),
    "claude-3-5-haiku": (0.80, 4.00, 0.08),
    "claude-3-opus": (15.00, 75.00, 1.50),
    "claude-3-haiku": (0.25, 1.25, 0.03),
    # Google
    "gemini-2.5-pro": (1.25, 10.00, 0.31),
    "gemini-2.5-flash": (0.30, 2.50, 0.075),
    "gemini-2.5-flash-lite": (0.10, 0.40, 0.025),
    "gemini-2.0-flash": (0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": (0.075, 0.30, None),
    "gemini-1.5-pro": (1.25, 5.00, None),
    "gemini-1.5-flash": (0.075, 0.30, None),
}


#: Anthropic's cache writes with the default 5-minute lifetime: 1.25x the input price.
ANTHROPIC_CACHE_WRITE_FACTOR = 1.25
#: Anthropic's cache writes with a 1-hour lifetime: 2x the input price.
ANTHROPIC_CACHE_WRITE_1H_FACTOR = 2.0
#: The price of a cache write per 1M tokens where it is not the input price: every Claude model's.
CACHE_WRITE_PRICES: dict[str, float] = {
    name: round(price[0] * ANTHROPIC_CACHE_WRITE_FACTOR, 6)
    for name, price in DEFAULT_PRICES.items()
    if name.startswith("claude-")
}
# Claude 3 Haiku's published write price is rounded: $0.30, not 1.25 x $0.25
CACHE_WRITE_PRICES["claude-3-haiku"] = 0.30
#: The price of a 1-hour cache write per 1M tokens: every Claude model's.
CACHE_WRITE_1H_PRICES: dict[str, float] = {
    name: round(price[0] * ANTHROPIC_CACHE_WRITE_1H_FACTOR, 6)
    for name, price in DEFAULT_PRICES.items()
    if name.startswith("claude-")
}


def _dearness(price: ModelPrice | None) -> tuple[float, float]:
    return (price.output, price.input) if price is not None else (0.0, 0.0)


#: Price per token in nano-dollars = price per million tokens in dollars * 1e9 / 1e6.
_NANOS_PER_MILLION_PRICE = 1000.0


class PriceTable:
    """Looks up a model's price: configured entries first, then the built-in table; exact names
    first, then the longest known name that prefixes it at a ``-`` boundary (dated versions), with any
    ``provider/`` prefix dropped. Lookups are cached."""

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice] | None = None,
        *,
        default: ModelPrice | None = None,
        builtin: bool = True,
        aliases: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        table: dict[str, ModelPrice] = {}
        if builtin:
            for name, (inp, out, cached) in DEFAULT_PRICES.items():
                table[name] = ModelPrice(
                    input=inp,
                    output=out,
                    cached_input=cached,
                    cache_write=CACHE_WRITE_PRICES.get(name),
                    cache_write_1h=CACHE_WRITE_1H_PRICES.get(name),
                )
        table.update(overrides or {})
        self._table = table
        self._aliases = {name: list(models) for name, models in (aliases or {}).items()}
        self._default = default
        self._cache: dict[str, ModelPrice | None] = {}
        self._warned: set[str] = set()

    def price(self, model: str | None) -> ModelPrice | None:
        """``model``'s price, else the default price (``None`` when there is none)."""
        if not model:
            return self._default
        found = self.lookup(model)
        if found is not None:
            return found
        if self._default is None and model not in self._warned and len(self._warned) < 1000:
            self._warned.add(model)
            logger.warning(
                "No price known for model %r: its requests cost $0 where no money limit applies. "
                "Set budget.pricing.%s (or budget.default_price).",
                model,
                model,
            )
        return self._default

    def lookup(self, model: str) -> ModelPrice | None:
        """``model``'s own price (or its alias's), ``None`` when no table knows it. Cached."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._lookup(model)
        if len(self._cache) < 10_000:
            self._cache[model] = found
        return found

    def _lookup(self, model: str) -> ModelPrice | None:
        found = self._lookup_name(model)
        if found is None and model in self._aliases:
            # an alias priced as the dearest model it may be served by: the reservation must not be short
            prices = [self._lookup_name(upstream) for upstream in self._aliases[model]]
            if prices and all(price is not None for price in prices):
                found = max(prices, key=_dearness)
        return found

    def _lookup_name(self, model: str) -> ModelPrice | None:
        for name in (model, model.rpartition("/")[2]):
            if name in self._table:
                return self._table[name]
        name = model.rpartition("/")[2]
        best: str | None = None
        for known in self._table:
            if name.startswith(known + "-") and (best is None or len(known) > len(best)):
                best = known
        return self._table[best] if best is not None else None

    def cost_nanos(
        self,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> int:
        """The cost in nano-dollars (rounded up), 0 for models with no price. ``prompt_tokens`` includes
        the cache reads (``cached_tokens``) and writes (``cache_write_tokens``, of which
        ``cache_write_1h_tokens`` were written for an hour), each at its own price."""
        price = self.price(model)
        if price is None:
            return 0
        if not (cached_tokens or cache_write_tokens or cache_write_1h_tokens) and prompt_tokens >= 0:
            # most requests: no prompt cache read or written (the same sum, without its zero terms)
            plain = prompt_tokens * price.input + completion_tokens * price.output
            return math.ceil(plain * _NANOS_PER_MILLION_PRICE - 1e-6)
        return full_cost_nanos(
            price, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cache_write_1h_tokens
        )


def full_cost_nanos(
    price: ModelPrice,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    cache_write_tokens: int,
    cache_write_1h_tokens: int,
) -> int:
    """:meth:`PriceTable.cost_nanos` at ``price``, every term of the sum written out (cache reads and
    writes each at their price)."""
    cached = min(max(cached_tokens, 0), prompt_tokens)
    written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
    hour = min(max(cache_write_1h_tokens, 0), written)
    cached_price = price.input if price.cached_input is None else price.cached_input
    write_price = price.input if price.cache_write is None else price.cache_write
    hour_price = write_price if price.cache_write_1h is None else price.cache_write_1h
    dollars_per_million = (
        (prompt_tokens - cached - written) * price.input
        + cached * cached_price
        + (written - hour) * write_price
        + hour * hour_price
        + completion_tokens * price.output
    )
    return math.ceil(dollars_per_million * _NANOS_PER_MILLION_PRICE - 1e-6)
