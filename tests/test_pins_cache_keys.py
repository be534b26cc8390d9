"""Pins for the cache keys: which message is the semantic question, and the shape of the keys.

Each test here kills a mutant of ``asgi_aigw/cache/keys.py`` that the behaviour tests let through
(``python bench/mutation.py cache-keys``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from asgi_aigw.cache.keys import cache_keys, message_text
from asgi_aigw.testing import FakeProvider

from .cache_support import cache_stack, post

QUESTION = "How do I reset my password?"
REWORDED = "How can I reset my password, please?"

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "search_help", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "search_help", "parameters": {"type": "object"}}}]


def ending_with_assistant(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "Finish the sentence I started."},
            {"role": "assistant", "content": text},
        ],
    }


def ending_with_tool(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Search the help pages."},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": text},
        ],
    }


def keys(messages: list[Any], max_question_chars: int = 100) -> Any:
    return cache_keys({"model": "m", "messages": messages}, "acme", max_question_chars=max_question_chars)


@pytest.mark.parametrize("role", ["assistant", "tool", "system", "developer"])
def test_only_a_trailing_user_message_is_a_question(role: str) -> None:
    last = {"role": role, "content": QUESTION}
    assert keys([{"role": "user", "content": "hi"}, last]).question is None
    assert keys([{"role": "user", "content": "hi"}, last]).scope is None
    assert keys([{"role": "user", "content": QUESTION}]).question == QUESTION


def test_the_question_is_stripped_and_bounded_by_its_length() -> None:
    assert keys([{"role": "user", "content": f"  {QUESTION}\n"}]).question == QUESTION
    assert keys([{"role": "user", "content": "   "}]).question is None
    assert keys([{"role": "user", "content": "x" * 100}]).question == "x" * 100
    assert keys([{"role": "user", "content": "x" * 101}]).question is None
    assert keys([]).question is None


def test_keys_have_the_documented_shape() -> None:
    # `<prefix>e:<tenant tag>:<sha256>` in Redis: a 16-hex tenant tag, then the request's digest
    k = keys([{"role": "user", "content": QUESTION}])
    assert re.fullmatch(r"[0-9a-f]{16}:[0-9a-f]{64}", k.exact)
    assert k.scope is not None
    assert re.fullmatch(r"[0-9a-f]{16}:[0-9a-f]{64}", k.scope)
    assert k.scope.split(":")[0] == k.exact.split(":")[0]


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, FakeProvider]]:
    fake = FakeProvider()
    app, cache = cache_stack(fake)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as c:
        yield c, fake
    await cache.aclose()


@pytest.mark.parametrize("build", [ending_with_assistant, ending_with_tool], ids=["assistant", "tool"])
async def test_a_trailing_assistant_or_tool_message_is_never_matched_semantically(
    client: tuple[httpx.AsyncClient, FakeProvider], build: Any
) -> None:
    # A reworded tool result (or assistant prefix) is different input: serving the answer given to
    # the first would answer a question nobody asked. Only user messages are questions.
    c, fake = client
    first = await post(c, build(QUESTION))
    assert first.status_code == 200, first.text
    second = await post(c, build(REWORDED))
    assert second.status_code == 200, second.text
    assert second.headers["x-aigw-cache"] == "miss"
    assert len(fake.requests) == 2
    # the same user question, reworded, still matches: the semantic layer itself works here
    await post(c, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}]})
    hit = await post(c, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": REWORDED}]})
    assert hit.headers["x-aigw-cache"] == "hit-semantic"


def test_message_text_reads_a_string_or_text_parts_only() -> None:
    assert message_text({"role": "user", "content": "hi"}) == "hi"
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    assert message_text({"role": "user", "content": parts}) == "first\nsecond"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert message_text({"role": "user", "content": [*parts, image]}) is None
    assert message_text({"role": "user", "content": [{"type": "text", "text": 5}]}) is None
    # a part of another type is not text, even with a "text" field (a caption, a file's name)
    captioned = {"type": "image_url", "text": "a caption", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert message_text({"role": "user", "content": [captioned]}) is None
    assert message_text({"role": "user", "content": ["first"]}) is None
    assert message_text({"role": "user", "content": []}) is None
    assert message_text({"role": "user", "content": None}) is None
    assert message_text({"role": "user", "content": 5}) is None
    assert message_text({"role": "user"}) is None
    assert message_text("hi") is None
    assert message_text(["hi"]) is None


def test_a_question_in_text_parts_is_asked_semantically() -> None:
    parts = [{"type": "text", "text": " How do I reset"}, {"type": "text", "text": "my password? "}]
    assert keys([{"role": "user", "content": parts}]).question == "How do I reset\nmy password?"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert keys([{"role": "user", "content": [*parts, image]}]).question is None
    assert keys(["How do I reset my password?"]).question is None


# -- Messages keys --------------------------------------------------------------------------------------

EPHEMERAL = {"type": "ephemeral"}
HELP_TOOL = {"name": "search_help", "input_schema": {"type": "object"}}


def messages_keys(body: dict[str, Any], headers: Any = (), tenant: str = "acme") -> Any:
    full = {"model": "claude-sonnet-4-5", "max_tokens": 256, **body}
    return cache_keys(full, tenant, max_question_chars=100, dialect="messages", headers=headers)


def tool_turns(mark: bool) -> list[Any]:
    """A tool round trip, then the question; ``mark``: ``cache_control`` on a tool result's nested block
    and on the question."""
    result: dict[str, Any] = {"type": "text", "text": "Billing is under Settings."}
    question: dict[str, Any] = {"type": "text", "text": QUESTION}
    if mark:
        result["cache_control"] = question["cache_control"] = EPHEMERAL
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "search_help", "input": {}}
    return [
        {"role": "user", "content": "Where is billing?"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [result]}]},
        {"role": "assistant", "content": "Billing is under Settings."},
        {"role": "user", "content": [question]},
    ]


def test_messages_keys_ignore_cache_control_everywhere() -> None:
    plain = messages_keys(
        {
            "system": [{"type": "text", "text": "Be terse."}],
            "tools": [HELP_TOOL],
            "messages": tool_turns(False),
        }
    )
    marked = messages_keys(
        {
            "system": [{"type": "text", "text": "Be terse.", "cache_control": EPHEMERAL}],
            "tools": [{**HELP_TOOL, "cache_control": EPHEMERAL}],
            "messages": tool_turns(True),
            "cache_control": EPHEMERAL,
        }
    )
    assert marked.exact == plain.exact
    assert marked.scope == plain.scope
    assert marked.question == plain.question == QUESTION
    # a property named cache_control inside a tool's schema is the tool's, and is kept
    schema_tool = {"name": "t", "input_schema": {"type": "object", "properties": {"cache_control": {}}}}
    bare_tool = {"name": "t", "input_schema": {"type": "object", "properties": {}}}
    assert (
        messages_keys({"tools": [schema_tool], "messages": tool_turns(False)}).exact
        != messages_keys({"tools": [bare_tool], "messages": tool_turns(False)}).exact
    )


def test_messages_keys_read_a_string_as_its_text_block() -> None:
    string = messages_keys({"system": "Be terse.", "messages": [{"role": "user", "content": QUESTION}]})
    blocks = messages_keys(
        {
            "system": [{"type": "text", "text": "Be terse."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        }
    )
    assert string.exact == blocks.exact
    assert string.question == blocks.question == QUESTION


def test_messages_keys_leave_out_stream_and_metadata_not_the_parameters() -> None:
    base = {"messages": [{"role": "user", "content": QUESTION}]}
    same = messages_keys({**base, "stream": True, "metadata": {"user_id": "u-42"}})
    assert same.exact == messages_keys(base).exact
    for field, value in [("stop_sequences", ["END"]), ("top_k", 5), ("tool_choice", {"type": "any"})]:
        changed = messages_keys({**base, field: value})
        assert changed.exact != same.exact, field
        assert changed.scope != same.scope, field


def test_messages_keys_hold_the_anthropic_headers_only() -> None:
    base = {"messages": [{"role": "user", "content": QUESTION}]}
    plain = messages_keys(base, [(b"x-api-key", b"test-key-not-real"), (b"user-agent", b"a")])
    assert plain.exact == messages_keys(base).exact
    beta = messages_keys(base, [(b"anthropic-beta", b"b-2025,a-2025")])
    assert beta.exact == messages_keys(base, [(b"anthropic-beta", b" a-2025 , b-2025")]).exact
    assert (
        beta.exact
        == messages_keys(base, [(b"anthropic-beta", b"a-2025"), (b"anthropic-beta", b"b-2025")]).exact
    )
    assert beta.exact != plain.exact
    assert beta.scope != plain.scope
    version = messages_keys(base, [(b"anthropic-version", b"2023-06-01")])
    assert version.exact not in (plain.exact, beta.exact)


def test_messages_keys_are_the_dialects_and_the_tenants() -> None:
    body = {
        "model": "m",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    }
    as_chat = cache_keys(body, "acme", max_question_chars=100)
    as_messages = messages_keys(body)
    assert as_messages.exact != as_chat.exact
    assert as_messages.scope != as_chat.scope
    other_tenant = messages_keys(body, tenant="globex")
    assert other_tenant.exact != as_messages.exact
    assert other_tenant.scope != as_messages.scope
