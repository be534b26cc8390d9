"""Prompt tokens of an OpenAI Responses request (``count_responses_tokens``): the chat request it amounts
to counts the same, every part of the input counts, item ids do not, what chat cannot hold counts as its
JSON, odd shapes never raise; a token counter without ``count_responses`` is stood in for by the
approximate one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgi_aigw.budget.tokens import ApproximateCounter, WarmCounter
from asgi_aigw.runtime.tokens import (
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    count_chat_tokens,
    count_responses_tokens,
    count_text_tokens,
)

MODEL = "gpt-4o"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}}}


def request(items: Any, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": items, **extra}


def test_it_counts_exactly_as_the_chat_request_it_amounts_to() -> None:
    responses = request(
        [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C."},
        ],
        instructions="Answer briefly.",
        tools=[{"type": "function", "name": "weather", "description": "The weather", "parameters": SCHEMA}],
    )
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
    }
    chat = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "weather", "description": "The weather", "parameters": SCHEMA},
            }
        ],
    }
    assert count_responses_tokens(responses) == count_chat_tokens(chat)
    assert count_responses_tokens(request("Hi")) == count_chat_tokens(
        {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    )


def test_each_part_of_the_input_adds_what_it_puts_in_the_prompt() -> None:
    base = count_responses_tokens(request([{"role": "user", "content": "Look."}]))

    def added(part: dict[str, Any]) -> int:
        content = [{"type": "input_text", "text": "Look."}, part]
        return count_responses_tokens(request([{"role": "user", "content": content}])) - base

    assert added({"type": "input_image", "image_url": "https://example.com/a.png"}) == IMAGE_TOKENS_HIGH
    assert added({"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}) == (
        IMAGE_TOKENS_LOW
    )
    # a file has no size before it is read: its JSON, an over-estimate
    assert added({"type": "input_file", "file_data": "JVBERi0xLjQK" * 20}) > 20
    output = {"type": "function_call_output", "call_id": "c", "output": "A long tool answer " * 10}
    with_output = count_responses_tokens(request([{"role": "user", "content": "Look."}, output]))
    assert with_output - base >= count_text_tokens("A long tool answer " * 10, MODEL)


def test_item_ids_and_statuses_are_not_prompt_text() -> None:
    plain = request([{"role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}])
    tagged = request(
        [
            {
                "id": "msg_0123456789abcdef0123456789abcdef",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
            }
        ]
    )
    assert count_responses_tokens(plain) == count_responses_tokens(tagged)


def test_what_chat_cannot_hold_counts_as_its_json() -> None:
    base = count_responses_tokens(request("Search the web"))
    summary = "The user wants a web search about tides."
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": summary}]}
    with_reasoning = count_responses_tokens(
        request([{"role": "user", "content": "Search the web"}, reasoning])
    )
    assert with_reasoning - base > count_text_tokens(summary, MODEL)
    with_tool = count_responses_tokens(request("Search the web", tools=[{"type": "web_search"}]))
    assert with_tool > base


def test_odd_shapes_are_counted_not_raised() -> None:
    odd: dict[str, Any] = {
        "model": MODEL,
        "instructions": 42,
        "input": ["a bare string", 7, {"type": "mystery", "x": "y"}, {"role": "user", "content": [None, 3]}],
        "tools": ["bad", {"type": "function"}],
    }
    assert count_responses_tokens(odd) > 0
    assert count_responses_tokens({"input": None}) == count_responses_tokens({"input": []})


class ChatOnlyCounter:
    """A counter written before the Responses dialect: no ``count_responses``."""

    def count_chat(self, request: Mapping[str, Any], model: str | None) -> int:
        return 1

    def count_text(self, text: str, model: str | None) -> int:
        return 1


async def test_a_counter_without_count_responses_is_stood_in_for() -> None:
    body = request("Hello " * 40, instructions="Be brief.")
    counted = await WarmCounter(ChatOnlyCounter()).count_responses(body, MODEL)
    assert counted == ApproximateCounter().count_responses(body, MODEL)
    assert counted > 40
