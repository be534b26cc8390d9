"""FakeProvider's Messages API refuses what Anthropic's refuses (each rule as the docs or the API's own
error messages state it), and counts tokens as its answers report them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from asgi_aigw.testing import FakeProvider, StreamingASGITransport

VERSION = {"anthropic-version": "2023-06-01"}
USER = [{"role": "user", "content": "Hello there"}]
BASE: dict[str, Any] = {"model": "claude", "max_tokens": 4096, "messages": USER}
TOOL_TURNS = [
    {"role": "user", "content": "ls"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
]


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = StreamingASGITransport(fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=VERSION) as client:
        yield client


def result_for(tool_use_id: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "ok"}]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "`max_tokens` must be greater"),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "temperature": 0.5},
            "`temperature` may only be set to 1 when thinking is enabled",
        ),
        (
            {
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "thinking",
                                "thinking": "t",
                                "signature": "s",
                                "cache_control": {"type": "ephemeral"},
                            }
                        ],
                    },
                ]
            },
            "messages.1.content.0.thinking.cache_control: Extra inputs are not permitted",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}],
                    }
                ]
            },
            "cache_control cannot be set for empty text blocks",
        ),
        (
            {
                "system": [
                    {"type": "text", "text": str(n), "cache_control": {"type": "ephemeral"}} for n in range(5)
                ]
            },
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (
            {"messages": [*TOOL_TURNS, result_for("toolu_other")]},
            "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_other",
        ),
        ({"messages": [result_for("toolu_1")]}, "unexpected `tool_use_id`"),
    ],
)
async def test_refuses_what_anthropic_refuses(
    http: httpx.AsyncClient, changes: dict[str, Any], message: str
) -> None:
    response = await http.post("/v1/messages", json={**BASE, **changes})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]


@pytest.mark.parametrize(
    "changes",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 1024}, "temperature": 1},
        {"thinking": {"type": "disabled"}, "temperature": 0.5},
        {"messages": [*TOOL_TURNS, result_for("toolu_1")]},
        {
            "system": [
                {"type": "text", "text": str(n), "cache_control": {"type": "ephemeral"}} for n in range(4)
            ]
        },
    ],
)
async def test_accepts_the_valid_neighbours(http: httpx.AsyncClient, changes: dict[str, Any]) -> None:
    response = await http.post("/v1/messages", json={**BASE, **changes})
    assert response.status_code == 200, response.text


async def test_refuses_a_request_without_anthropic_version(fake: FakeProvider) -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url="http://fake") as bare:
        for path, body in (
            ("/v1/messages", BASE),
            ("/v1/messages/count_tokens", {"model": "c", "messages": USER}),
        ):
            response = await bare.post(path, json=body)
            assert response.status_code == 400
            assert response.json()["error"]["message"] == "anthropic-version: header is required"


async def test_count_tokens_matches_the_input_tokens_of_the_answer(http: httpx.AsyncClient) -> None:
    counted = await http.post("/v1/messages/count_tokens", json={"model": "claude", "messages": USER})
    answered = await http.post("/v1/messages", json=BASE)
    assert counted.status_code == 200
    assert counted.json() == {"input_tokens": answered.json()["usage"]["input_tokens"]}


async def test_count_tokens_refuses_generation_fields(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages/count_tokens", json=BASE)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "max_tokens: Extra inputs are not permitted"
