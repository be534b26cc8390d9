"""FakeProvider's Messages API checks ``output_config`` (structured outputs) as Anthropic does, and answers
with JSON that follows the schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.testing import FakeProvider, StreamingASGITransport

VERSION = {"anthropic-version": "2023-06-01"}
BASE: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Hi"}],
}
CLOSED = {
    "type": "object",
    "properties": {"n": {"type": "integer"}},
    "required": ["n"],
    "additionalProperties": False,
}


def output(schema: dict[str, Any]) -> dict[str, Any]:
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = StreamingASGITransport(fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=VERSION) as client:
        yield client


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            output({"type": "object", "properties": {}}),
            "'additionalProperties' must be explicitly set to false",
        ),
        (output({**CLOSED, "properties": {"n": {"type": "integer", "minimum": 1}}}), "'minimum' keyword"),
        (
            output({"type": "array", "items": {"type": "string"}, "minItems": 2}),
            "minItems values other than 0 or 1",
        ),
        (
            output(
                {"$ref": "#/$defs/A", "$defs": {"A": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/A"}]}}}
            ),
            "recursive schemas",
        ),
        ({"output_config": {"format": {"type": "json_object"}}}, "valid JSON schema output format"),
        ({"output_config": {"schema": CLOSED}}, "output_config.schema: Extra inputs are not permitted"),
    ],
)
async def test_refuses_what_anthropic_refuses(
    http: httpx.AsyncClient, changes: dict[str, Any], message: str
) -> None:
    answer = await http.post("/v1/messages", json={**BASE, **changes})
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


async def test_answers_with_json_that_follows_the_schema(http: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1},
            "mode": {"enum": ["a", "b"]},
        },
        "required": ["when", "items", "mode"],
        "additionalProperties": False,
        "$defs": {"Item": CLOSED},
    }
    answer = await http.post("/v1/messages", json={**BASE, **output(schema)})
    assert answer.status_code == 200, answer.text
    text = answer.json()["content"][0]["text"]
    assert orjson.loads(text) == {"when": "2026-01-01", "items": [{"n": 1}], "mode": "a"}
