"""FakeProvider thinks when a request turns thinking on (Anthropic thinking blocks and stream deltas,
Gemini thought parts and thoughtsTokenCount, Ollama ``message.thinking``) and refuses the thinking
configurations the real APIs refuse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.testing import FakeProvider, StreamingASGITransport
from asgi_aigw.testing._anthropic_format import SIGNATURE

from .support import sse_payloads

VERSION = {"anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "Why is the sky blue"}]
THINKING = {"type": "enabled", "budget_tokens": 1024}
CLAUDE: dict[str, Any] = {"model": "claude", "max_tokens": 4096, "messages": USER, "thinking": THINKING}
TOOL_LOOP = [
    {"role": "user", "content": "ls"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
]
GEMINI = "/v1beta/models/{}:generateContent"


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = StreamingASGITransport(fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=VERSION) as client:
        yield client


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"top_k": 5}, "`top_k` is not supported when thinking is enabled"),
        ({"top_p": 0.5}, "`top_p` must be between 0.95 and 1"),
        ({"tool_choice": {"type": "any"}}, "tool_choice forces tool use"),
        ({"messages": TOOL_LOOP}, "a final `assistant` message must start with a thinking block"),
    ],
)
async def test_anthropic_refuses_what_thinking_refuses(
    http: httpx.AsyncClient, changes: dict[str, Any], message: str
) -> None:
    answer = await http.post("/v1/messages", json={**CLAUDE, **changes})
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]
    # the same request without thinking is accepted
    plain = {key: value for key, value in {**CLAUDE, **changes}.items() if key != "thinking"}
    assert (await http.post("/v1/messages", json=plain)).status_code == 200


async def test_anthropic_takes_a_tool_loop_whose_turn_starts_with_its_signed_thinking(
    http: httpx.AsyncClient,
) -> None:
    signed = {"type": "thinking", "thinking": "List files.", "signature": SIGNATURE}
    loop = orjson.loads(orjson.dumps(TOOL_LOOP))
    loop[1]["content"].insert(0, signed)
    assert (await http.post("/v1/messages", json={**CLAUDE, "messages": loop})).status_code == 200
    loop[1]["content"][0] = {"type": "thinking", "thinking": "List files."}
    unsigned = await http.post("/v1/messages", json={**CLAUDE, "messages": loop})
    assert unsigned.status_code == 400
    assert "thinking.signature: Field required" in unsigned.json()["error"]["message"]


async def test_anthropic_answers_with_a_thinking_block_counted_in_output(http: httpx.AsyncClient) -> None:
    without = {key: value for key, value in CLAUDE.items() if key != "thinking"}
    plain = (await http.post("/v1/messages", json=without)).json()
    thought = (await http.post("/v1/messages", json=CLAUDE)).json()
    assert thought["content"][0] == {
        "type": "thinking",
        "thinking": "Considering: Why is the sky blue",
        "signature": SIGNATURE,
    }
    assert thought["content"][1] == plain["content"][0]
    # thinking is output: 6 streamed words more
    assert thought["usage"]["output_tokens"] == plain["usage"]["output_tokens"] + 6


async def test_anthropic_streams_thinking_then_signature_then_text(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/messages", json={**CLAUDE, "stream": True})
    events = sse_payloads(answer.text)
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    kinds = [d["type"] for d in deltas]
    assert kinds == ["thinking_delta"] * 6 + ["signature_delta"] + ["text_delta"] * 6
    assert "".join(d.get("thinking", "") for d in deltas) == "Considering: Why is the sky blue"
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "thinking"), (1, "text")]


@pytest.mark.parametrize(
    ("model", "config", "message"),
    [
        ("gemini-2.5-flash", {"thinkingLevel": "low"}, "Thinking level is not supported"),
        ("gemini-3-pro-preview", {"thinkingLevel": "low", "thinkingBudget": 128}, "only one of"),
        ("gemini-2.5-flash", {"thinkingBudgets": 128}, 'Unknown name "thinkingBudgets"'),
    ],
)
async def test_gemini_refuses_thinking_configs_it_does_not_take(
    http: httpx.AsyncClient, model: str, config: dict[str, Any], message: str
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"thinkingConfig": config},
    }
    answer = await http.post(GEMINI.format(model), json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


async def test_gemini_answers_with_a_thought_part_and_its_token_count(http: httpx.AsyncClient) -> None:
    config = {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    body = {"contents": [{"role": "user", "parts": [{"text": "Why blue"}]}], "generationConfig": config}
    answer = (await http.post(GEMINI.format("gemini-2.5-flash"), json=body)).json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "Considering: Why blue", "thought": True}, {"text": "Echo: Why blue"}]
    usage = answer["usageMetadata"]
    assert usage["thoughtsTokenCount"] == 3
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"] + 3


async def test_ollama_thinks_and_refuses_an_unknown_think_value(http: httpx.AsyncClient) -> None:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Why blue"}], "stream": False}
    thought = (await http.post("/api/chat", json={**body, "think": "high"})).json()
    assert thought["message"]["thinking"] == "Considering: Why blue"
    plain = (await http.post("/api/chat", json={**body, "think": False})).json()
    assert "thinking" not in plain["message"]
    assert thought["eval_count"] == plain["eval_count"] + 3
    refused = await http.post("/api/chat", json={**body, "think": "extreme"})
    assert refused.status_code == 400
    assert "invalid think value" in refused.json()["error"]
