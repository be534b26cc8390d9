"""FakeProvider's Anthropic prompt cache, read by the official ``anthropic`` SDK: a request with a
breakpoint writes its prefix (by lifetime, in ``usage.cache_creation``), a repeat reads it, a prefix
too short is not cached, and entries expire after their ``ttl``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from asgi_aigw.httpx2_bridge import httpx2_client
from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.testing._anthropic_cache import PromptCache

DOCUMENT = "The reference manual says every valve must be checked twice a day. " * 120
MODEL = "claude-sonnet-4-5"


@pytest.fixture
async def sdk(fake: FakeProvider) -> AsyncIterator[anthropic.AsyncAnthropic]:
    http = httpx2_client(StreamingASGITransport(fake))
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-test-not-a-real-key", base_url="http://fake", http_client=http, max_retries=0
    )
    yield client
    await client.close()


def block(text: str, ttl: str | None = None) -> dict[str, Any]:
    control: dict[str, Any] = {"type": "ephemeral"}
    if ttl is not None:
        control["ttl"] = ttl
    return {"type": "text", "text": text, "cache_control": control}


async def ask(sdk: anthropic.AsyncAnthropic, question: str, **extra: Any) -> anthropic.types.Usage:
    answer = await sdk.messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": question}], **extra
    )
    return answer.usage


async def test_a_first_request_writes_and_a_repeat_reads(sdk: anthropic.AsyncAnthropic) -> None:
    system = [block(DOCUMENT)]
    first = await ask(sdk, "How often are valves checked?", system=system)
    assert first.cache_creation_input_tokens is not None
    assert first.cache_creation_input_tokens >= 1024
    assert first.cache_read_input_tokens == 0
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_5m_input_tokens == first.cache_creation_input_tokens
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    second = await ask(sdk, "Who checks them?", system=system)
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    # the whole prompt is still reported: uncached input, reads and writes add up to it
    assert first.input_tokens > 0
    assert second.input_tokens > 0


async def test_one_hour_and_five_minute_writes_are_reported_apart(sdk: anthropic.AsyncAnthropic) -> None:
    history = "An earlier conversation about valves and pumps. " * 60
    system = [block(DOCUMENT, ttl="1h")]
    messages: Any = [
        {"role": "user", "content": [block(history, ttl="5m")]},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "And the pumps?"},
    ]
    first = await sdk.messages.create(model=MODEL, max_tokens=50, system=system, messages=messages)
    assert first.usage.cache_creation is not None
    hour = first.usage.cache_creation.ephemeral_1h_input_tokens
    minutes = first.usage.cache_creation.ephemeral_5m_input_tokens
    assert hour >= 1024
    assert minutes > 0
    assert first.usage.cache_creation_input_tokens == hour + minutes
    # a new conversation on the same system prompt reads the 1-hour prefix only
    other = await ask(sdk, "Something else entirely", system=system)
    assert other.cache_read_input_tokens == hour
    assert other.cache_creation_input_tokens == 0


async def test_a_short_prefix_is_not_cached(sdk: anthropic.AsyncAnthropic) -> None:
    system = [block("Be brief.")]
    for _ in range(2):
        usage = await ask(sdk, "Hello", system=system)
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)


async def test_models_do_not_share_a_prefix(fake: FakeProvider, sdk: anthropic.AsyncAnthropic) -> None:
    system = [block(DOCUMENT)]
    await ask(sdk, "Hi", system=system)
    answer = await sdk.messages.create(
        model="claude-haiku-4-5", max_tokens=50, system=system, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.usage.cache_read_input_tokens == 0
    fake.reset()  # forgets the cache too
    assert (await ask(sdk, "Hi", system=system)).cache_read_input_tokens == 0


def test_entries_expire_after_their_lifetime() -> None:
    now = [0.0]
    cache = PromptCache(clock=lambda: now[0])
    body: dict[str, Any] = {
        "model": MODEL,
        "system": [block(DOCUMENT, ttl="1h")],
        "messages": [{"role": "user", "content": [block("More context here. " * 400)]}],
    }
    first = cache.use(body, 10_000)
    assert first.write_1h > 0
    assert first.write_5m > 0
    assert first.read == 0
    now[0] = 299.0
    assert cache.use(body, 10_000).read == first.written
    now[0] = 299.0 + 301.0  # the 5-minute entry lapsed (a read refreshed it at 299 s), the hour one holds
    later = cache.use(body, 10_000)
    assert (later.read, later.write_5m, later.write_1h) == (first.write_1h, first.write_5m, 0)
    now[0] = 5000.0
    assert cache.use(body, 10_000).read == 0
    # the figures never exceed the prompt the answer reports
    clipped = PromptCache().use(body, 1500)
    assert clipped.read + clipped.written <= 1500


async def test_lifetimes_only_shorten_along_the_prompt(sdk: anthropic.AsyncAnthropic) -> None:
    tool: Any = {
        "name": "lookup",
        "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
    }
    with pytest.raises(anthropic.BadRequestError) as refused:
        await ask(sdk, "Hi", tools=[tool], system=[block(DOCUMENT, ttl="1h")])
    assert refused.value.body["error"]["message"].startswith(  # type: ignore[index]
        "system.0.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m'"
    )
    # 1 hour first, then 5 minutes: accepted
    usage = await ask(
        sdk,
        "Hi",
        tools=[{**tool, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        system=[block(DOCUMENT)],
    )
    assert usage.cache_creation_input_tokens


async def test_an_unknown_lifetime_is_refused(sdk: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        await ask(sdk, "Hi", system=[block(DOCUMENT, ttl="2h")])
    assert "system.0.cache_control.ephemeral.ttl: Input should be '5m' or '1h'" in str(refused.value)
