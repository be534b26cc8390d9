"""Prices and limits are numbers the budget can count with: finite, and within what its stores hold
exactly. An infinite price made every cost of its model raise; an infinite money limit failed the
budget's construction with an OverflowError; a limit past 2**53 store units broke the scripts'
arithmetic. And the cost of a request without prompt-cache tokens, worked out the short way, is the
full sum's."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from asgi_aigw.budget.config import MAX_DOLLARS, MAX_PRICE, Limits, ModelPrice
from asgi_aigw.budget.pricing import PriceTable, full_cost_nanos
from asgi_aigw.budget.windows import MAX_UNITS, WINDOWS, to_units
from asgi_aigw.cli.budget import _parse_values
from asgi_aigw.kernel.errors import ConfigError

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"input": INF}, "input"),
        ({"input": 1.0, "output": NAN}, "output"),
        ({"input": 1.0, "cached_input": INF}, "cached_input"),
        ({"input": 1.0, "cache_write": INF}, "cache_write"),
        ({"input": 1.0, "cache_write_1h": INF}, "cache_write_1h"),
        ({"input": MAX_PRICE * 2}, "input"),
    ],
)
def test_a_price_that_is_not_a_finite_dollar_a_token_at_most_is_refused(
    fields: dict[str, float], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ModelPrice(**fields)
    assert refused.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cost_per_day": INF}, "cost_per_day"),
        ({"cost_per_month": NAN}, "cost_per_month"),
        ({"cost_per_day": MAX_DOLLARS * 2}, "cost_per_day"),
        ({"tokens_per_month": MAX_UNITS + 1}, "tokens_per_month"),
        ({"requests_per_minute": MAX_UNITS * 4}, "requests_per_minute"),
    ],
)
def test_a_limit_past_what_the_store_counts_exactly_is_refused(fields: dict[str, float], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Limits(**fields)
    assert refused.value.errors()[0]["loc"] == (field,)


def test_the_largest_limits_allowed_convert_within_the_store() -> None:
    limits = Limits(cost_per_day=MAX_DOLLARS, tokens_per_day=MAX_UNITS)
    by_name = {w.name: w for w in WINDOWS}
    assert to_units(by_name["cost_per_day"], limits.cost_per_day or 0) <= MAX_UNITS
    assert to_units(by_name["tokens_per_day"], limits.tokens_per_day or 0) == MAX_UNITS


@pytest.mark.parametrize("value", [INF, NAN, (MAX_UNITS + 1) / 1e9 * 2])
def test_to_units_refuses_what_the_store_cannot_hold(value: float) -> None:
    cost = next(w for w in WINDOWS if w.metric == "cost")
    with pytest.raises(ValueError, match=cost.name):
        to_units(cost, value)


@pytest.mark.parametrize("raw", ["inf", "nan", "1e20"])
def test_the_cli_refuses_a_money_override_the_store_cannot_hold(raw: str) -> None:
    args = argparse.Namespace(**{w.name: None for w in WINDOWS})
    args.cost_per_day = raw
    with pytest.raises(ConfigError, match="--cost-per-day"):
        _parse_values(args)


PRICES = st.builds(
    ModelPrice,
    input=st.floats(0, MAX_PRICE),
    output=st.floats(0, MAX_PRICE),
    cached_input=st.none() | st.floats(0, MAX_PRICE),
    cache_write=st.none() | st.floats(0, MAX_PRICE),
)


@given(PRICES, st.integers(0, 10**9), st.integers(-(10**6), 10**9))
def test_a_cost_without_prompt_cache_tokens_is_the_full_sums(
    price: ModelPrice, prompt: int, completion: int
) -> None:
    table = PriceTable({"m": price}, builtin=False)
    assert table.cost_nanos("m", prompt, completion) == full_cost_nanos(price, prompt, completion, 0, 0, 0)
