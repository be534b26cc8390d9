"""FakeProvider speaks OpenAI's wire format and obeys its behaviours."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .support import sse_payloads

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url="http://fake") as client:
        yield client


async def test_tool_call_round_trip(http: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "weather in Paris"}]
    first = (
        await http.post("/v1/chat/completions", json={"model": "m", "messages": messages, "tools": TOOLS})
    ).json()
    call = first["choices"][0]["message"]["tool_calls"][0]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "lookup", "arguments": '{"query":"weather in Paris"}'}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    second = (
        await http.post("/v1/chat/completions", json={"model": "m", "messages": messages, "tools": TOOLS})
    ).json()
    assert second["choices"][0]["message"]["content"] == "Tool said: sunny"


async def test_streamed_tool_call_arrives_in_pieces(http: httpx.AsyncClient) -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}], "tools": TOOLS}
    payloads = sse_payloads((await http.post("/v1/chat/completions", json=body)).text)
    deltas = [p["choices"][0]["delta"] for p in payloads[:-1]]
    assert deltas[1]["tool_calls"][0]["function"]["name"] == "lookup"
    assert deltas[2]["tool_calls"][0]["function"]["arguments"] == '{"query":"x"}'
    assert payloads[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_queued_behaviours_run_once_each(http: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.enqueue(FakeBehaviour(status=503), times=2)
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    statuses = [(await http.post("/v1/chat/completions", json=body)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(fake.requests) == 3


async def test_usage_counts_words_and_pieces(http: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "one two, three"}]}
    usage = (await http.post("/v1/chat/completions", json=body)).json()["usage"]
    # 4 tokens of content + 4 per message + 3 for the reply; "Echo: one two, three" is 4 pieces
    assert usage["prompt_tokens"] == 11
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == 15


async def test_error_body_is_openai_shaped(http: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.behaviour = FakeBehaviour(status=429, retry_after="3")
    response = await http.post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def test_bad_request_to_the_fake(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 400


async def test_a_bounded_fake_keeps_only_its_last_requests() -> None:
    fake = FakeProvider(keep_requests=2)
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url="http://fake") as http:
        for word in ("one", "two", "three"):
            body = {"model": "m", "messages": [{"role": "user", "content": word}]}
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
    assert [r.json["messages"][0]["content"] for r in fake.requests] == ["two", "three"]
    assert fake.last_request.json["messages"][0]["content"] == "three"
    with pytest.raises(ValueError, match="keep_requests"):
        FakeProvider(keep_requests=-1)


def test_the_served_fake_does_not_keep_every_request() -> None:
    # ``uvicorn asgi_aigw.testing.fake_provider:app`` runs for as long as a demo or a benchmark does
    from asgi_aigw.testing.fake_provider import SERVED_KEEPS, app

    assert app.keep_requests == SERVED_KEEPS
    assert 0 < SERVED_KEEPS <= 10_000
