"""Prompt tokens of an Anthropic Messages request (``count_messages_tokens``): every part of the prompt
counts, metadata does not, odd shapes never raise; a token counter without ``count_messages`` is stood
in for by the approximate one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from asgi_aigw.budget.tokens import ApproximateCounter, WarmCounter, cache_lifetime
from asgi_aigw.runtime.tokens import IMAGE_TOKENS_HIGH, count_messages_tokens, count_text_tokens

MODEL = "claude-sonnet-4-5"


def request(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": content}], **extra}


def test_text_in_a_string_or_in_blocks_counts_the_same() -> None:
    as_string = count_messages_tokens(request("Describe the weather in Paris."))
    as_block = count_messages_tokens(request([{"type": "text", "text": "Describe the weather in Paris."}]))
    assert as_string == as_block
    assert as_string > count_messages_tokens(request("Hi"))


def test_the_system_prompt_counts_as_a_string_or_blocks() -> None:
    base = count_messages_tokens(request("Hi"))
    text = "You are a terse assistant who answers in French."
    with_string = count_messages_tokens(request("Hi", system=text))
    with_blocks = count_messages_tokens(request("Hi", system=[{"type": "text", "text": text}]))
    assert with_string == with_blocks
    # the text (at the Claude safety factor, rounded up once for the whole prompt) and one message's framing
    assert with_string - base >= count_text_tokens(text, MODEL) - 1 + 3


def test_each_kind_of_block_adds_what_it_puts_in_the_prompt() -> None:
    base = count_messages_tokens(request([{"type": "text", "text": "Look."}]))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KG"}}
    assert (
        count_messages_tokens(request([{"type": "text", "text": "Look."}, image])) == base + IMAGE_TOKENS_HIGH
    )
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. " * 20},
    }
    assert count_messages_tokens(request([{"type": "text", "text": "Look."}, document])) > base + 60
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "San Francisco"}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "Sunny and 21 degrees all week long",
    }
    history = {
        "model": MODEL,
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [result]},
        ],
    }
    no_input = {
        **history,
        "messages": [
            history["messages"][0],
            {"role": "assistant", "content": [{**call, "input": {}}]},
            {"role": "user", "content": [{**result, "content": ""}]},
        ],
    }
    with_all = count_messages_tokens(history)
    assert (
        with_all - count_messages_tokens(no_input)
        >= count_text_tokens('"city":"San Francisco"Sunny and 21 degrees all week long', MODEL) - 2
    )


def test_cache_control_and_ids_are_metadata() -> None:
    text = "A long reference document. " * 20
    plain = request([{"type": "text", "text": text}])
    marked = request([{"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    assert count_messages_tokens(plain) == count_messages_tokens(marked)
    assert cache_lifetime(plain) is None
    assert cache_lifetime(marked) == "1h"
    assert (
        cache_lifetime(
            {**plain, "system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}
        )
        == "5m"
    )
    assert (
        cache_lifetime(
            {**plain, "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral"}}]}
        )
        == "5m"
    )


def test_tools_count_their_schema_and_anthropics_tool_prompt() -> None:
    tool = {
        "name": "get_weather",
        "description": "The current weather in a given city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    base = count_messages_tokens(request("Weather in Paris?"))
    auto = count_messages_tokens(request("Weather in Paris?", tools=[tool]))
    forced = count_messages_tokens(request("Weather in Paris?", tools=[tool], tool_choice={"type": "any"}))
    # 346 tokens of tool-use system prompt with auto, 313 with any (Anthropic's tool-use docs)
    assert auto - forced == 346 - 313
    assert auto - base > 346 + count_text_tokens("get_weather", MODEL)


def test_odd_shapes_are_counted_not_raised() -> None:
    odd: dict[str, Any] = {
        "model": MODEL,
        "system": 42,
        "messages": ["not a message", {"role": "user", "content": [7, {"type": "mystery", "x": "y"}]}],
        "tools": ["bad", {"type": "web_search_20250305", "name": "web_search"}],
    }
    assert count_messages_tokens(odd) > 0
    assert count_messages_tokens({"messages": "nope"}) == count_messages_tokens({"messages": []})


class ChatOnlyCounter:
    """A counter written before the Messages dialect: no ``count_messages``."""

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        return 1

    def count_text(self, text: str, model: str | None) -> int:
        return 1


async def test_a_counter_without_count_messages_is_stood_in_for() -> None:
    body = request("Hello " * 40)
    counted = await WarmCounter(ChatOnlyCounter()).count_messages(body, MODEL)
    assert counted == ApproximateCounter().count_messages(body, MODEL)
    assert counted > 40


# -- prices of the prompt cache ---------------------------------------------------------------------------


def test_claude_cache_writes_cost_a_quarter_more_than_input_and_reads_a_tenth() -> None:
    from asgi_aigw.budget.pricing import PriceTable

    table = PriceTable()
    for model, inp in (
        ("claude-sonnet-4-5-20250929", 3.0),
        ("claude-opus-4-5", 5.0),
        ("claude-3-5-haiku", 0.8),
    ):
        price = table.price(model)
        assert price is not None
        assert price.cache_write == pytest.approx(inp * 1.25)
        assert price.cached_input == pytest.approx(inp * 0.1)
    haiku3 = table.price("claude-3-haiku-20240307")
    assert haiku3 is not None
    assert haiku3.cache_write == 0.30  # Anthropic's published figure
    # 1000 written + 1000 read + 1000 plain input + 100 out on Sonnet 4.5, in nano-dollars
    assert table.cost_nanos("claude-sonnet-4-5", 3000, 100, 1000, 1000) == (3750 + 300 + 3000 + 1500) * 1000
    # OpenAI models have no write price: a write (not reported by OpenAI anyway) costs input
    assert table.cost_nanos("gpt-4o", 2000, 0, 0, 1000) == table.cost_nanos("gpt-4o", 2000, 0)
    # reads and writes beyond the prompt are clipped: never a negative plain-input share
    assert table.cost_nanos("claude-sonnet-4-5", 100, 0, 80, 80) == 24_000 + 75_000


def test_claude_one_hour_cache_writes_cost_twice_the_input() -> None:
    from asgi_aigw.budget.config import ModelPrice
    from asgi_aigw.budget.pricing import PriceTable

    table = PriceTable()
    for model, inp in (("claude-sonnet-4-5", 3.0), ("claude-opus-4-1", 15.0), ("claude-3-haiku", 0.25)):
        price = table.price(model)
        assert price is not None
        assert price.cache_write_1h == pytest.approx(inp * 2)
    assert table.price("gpt-4o").cache_write_1h is None  # type: ignore[union-attr]
    # 1000 written, 600 of them for an hour, + 1000 plain input + 100 out on Sonnet 4.5
    assert table.cost_nanos("claude-sonnet-4-5", 2000, 100, 0, 1000, 600) == (
        400 * 3750 + 600 * 6000 + 1000 * 3000 + 100 * 15000
    )
    # 1-hour writes beyond the writes are clipped to them
    assert table.cost_nanos("claude-sonnet-4-5", 100, 0, 0, 10, 50) == 10 * 6000 + 90 * 3000
    # a configured price without its own 1-hour rate prices those writes as its other writes
    own = PriceTable({"m": ModelPrice(input=1.0, cache_write=4.0)}, builtin=False)
    assert own.cost_nanos("m", 100, 0, 0, 100, 100) == own.cost_nanos("m", 100, 0, 0, 100)
    own = PriceTable({"m": ModelPrice(input=1.0, cache_write=4.0, cache_write_1h=9.0)}, builtin=False)
    assert own.cost_nanos("m", 100, 0, 0, 100, 100) == 900_000


def test_the_longest_cache_lifetime_a_request_asks_for() -> None:
    from asgi_aigw.budget.tokens import cache_lifetime

    def block(control: Any) -> dict[str, Any]:
        return {"type": "text", "text": "x", "cache_control": control}

    assert cache_lifetime(request("hi")) is None
    assert cache_lifetime(request([block({"type": "ephemeral"})])) == "5m"
    assert cache_lifetime(request([block({"type": "ephemeral", "ttl": "5m"})])) == "5m"
    hour = {"type": "ephemeral", "ttl": "1h"}
    assert cache_lifetime(request([block({"type": "ephemeral"})], system=[block(hour)])) == "1h"
    tool = {"name": "t", "input_schema": {}, "cache_control": hour}
    assert cache_lifetime(request("hi", tools=[tool])) == "1h"
    assert cache_lifetime(request([block("not an object")])) == "5m"
