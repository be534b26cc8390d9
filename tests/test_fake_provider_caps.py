"""FakeProvider stops at each wire format's output cap with that format's finish reason, as the real APIs
do, and refuses what OpenAI refuses (``max_tokens`` for reasoning models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from asgi_aigw.testing import FakeBehaviour, FakeProvider

#: The Messages API refuses requests without its version header, as the fake does.
VERSION = {"anthropic-version": "2023-06-01"}

ANSWER = "one two three four five six seven eight"
USER = [{"role": "user", "content": "hi"}]

#: format: (path, body with a cap of 3, the answer's text, its finish reason, its completion tokens)
Reader = Callable[[dict[str, Any]], tuple[str, str, int]]
FORMATS: dict[str, tuple[str, dict[str, Any], Reader]] = {
    "openai": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": USER, "max_tokens": 3},
        lambda d: (
            d["choices"][0]["message"]["content"],
            d["choices"][0]["finish_reason"],
            d["usage"]["completion_tokens"],
        ),
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "claude-test", "messages": USER, "max_tokens": 3},
        lambda d: (d["content"][0]["text"], d["stop_reason"], d["usage"]["output_tokens"]),
    ),
    "gemini": (
        "/v1beta/models/gemini-test:generateContent",
        {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"maxOutputTokens": 3},
        },
        lambda d: (
            d["candidates"][0]["content"]["parts"][0]["text"],
            d["candidates"][0]["finishReason"],
            d["usageMetadata"]["candidatesTokenCount"],
        ),
    ),
    "ollama": (
        "/api/chat",
        {"model": "llama-test", "messages": USER, "stream": False, "options": {"num_predict": 3}},
        lambda d: (d["message"]["content"], d["done_reason"], d["eval_count"]),
    ),
}
FINISH = {"openai": "length", "anthropic": "max_tokens", "gemini": "MAX_TOKENS", "ollama": "length"}


async def post(fake: FakeProvider, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(fake), base_url="http://fake", headers=VERSION
    ) as client:
        return await client.post(path, json=body)


@pytest.mark.parametrize("name", list(FORMATS))
async def test_each_format_stops_at_its_cap(name: str) -> None:
    path, body, read = FORMATS[name]
    response = await post(FakeProvider(FakeBehaviour(answer=ANSWER)), path, body)
    assert response.status_code == 200, response.text
    assert read(response.json()) == ("one two three", FINISH[name], 3)


@pytest.mark.parametrize("name", list(FORMATS))
async def test_ignore_output_cap_answers_in_full(name: str) -> None:
    path, body, read = FORMATS[name]
    response = await post(FakeProvider(FakeBehaviour(answer=ANSWER, ignore_output_cap=True)), path, body)
    text, finish, tokens = read(response.json())
    assert (text, tokens) == (ANSWER, 8)
    assert finish != FINISH[name]


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"])
async def test_openai_reasoning_models_refuse_max_tokens(model: str) -> None:
    fake = FakeProvider()
    response = await post(fake, "/v1/chat/completions", {"model": model, "messages": USER, "max_tokens": 5})
    assert response.status_code == 400
    assert "max_completion_tokens" in response.json()["error"]["message"]
    ok = await post(
        fake, "/v1/chat/completions", {"model": model, "messages": USER, "max_completion_tokens": 5}
    )
    assert ok.status_code == 200
