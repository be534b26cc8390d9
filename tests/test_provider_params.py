"""The per-parameter table (asgi_aigw.providers.params) is what the adapters do, and what the docs say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.kernel.models import ChatCompletionRequest
from asgi_aigw.providers import ADAPTERS, Deployment
from asgi_aigw.providers.params import PARAMETERS, RULES, markdown_table

from .golden import LOOKUP

DOCS = Path(__file__).resolve().parent.parent / "docs" / "providers.md"

#: What a client sends to ask for each row's parameter (the value that asks for something).
SAMPLES: dict[str, dict[str, Any]] = {
    "response_format": {
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "a",
                "schema": {"type": "object", "properties": {"x": {"type": "string"}}},
            },
        }
    },
    "n": {"n": 2},
    "logprobs": {"logprobs": True, "top_logprobs": 2},
    "metadata": {"metadata": {"purpose": "test"}},
    "service_tier": {"service_tier": "auto"},
    "message name": {"messages": [{"role": "user", "content": "hi", "name": "alice"}]},
    "seed": {"seed": 7},
    "stop": {"stop": ["END"]},
    "user": {"user": "user-1"},
    "tools/tool_choice": {"tools": [LOOKUP], "tool_choice": "auto"},
    "parallel_tool_calls": {"tools": [LOOKUP], "parallel_tool_calls": False},
    "reasoning_effort": {"reasoning_effort": "low"},
    "temperature/top_p": {"temperature": 0.3, "top_p": 0.9},
    "presence_penalty/frequency_penalty": {"presence_penalty": 0.5, "frequency_penalty": 0.5},
    "logit_bias": {"logit_bias": {"50256": -100}},
}
#: The request fields a row is about, as named in the dropped-params header.
FIELDS = {"message name": ["name"], "logprobs": ["logprobs", "top_logprobs"]}


def fields(row: str) -> list[str]:
    return FIELDS.get(row, row.split("/"))


def deployment(provider: str) -> Deployment:
    return Deployment(
        id=provider, provider=provider, model="m", base_url="http://upstream.test", api_key="test-key-0000"
    )


def at(payload: Any, path: str) -> Any:
    for step in path.split("."):
        payload = payload[int(step)] if isinstance(payload, list) else payload[step]
    return payload


def test_every_provider_has_every_row() -> None:
    assert set(SAMPLES) == set(PARAMETERS)
    for provider, rules in RULES.items():
        assert set(rules) == set(PARAMETERS), provider
        assert provider in ADAPTERS


@pytest.mark.parametrize("row", PARAMETERS)
@pytest.mark.parametrize("provider", sorted(RULES))
def test_each_row_is_what_the_adapter_does(provider: str, row: str) -> None:
    rule = RULES[provider][row]
    body = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], **SAMPLES[row]}
    request = ChatCompletionRequest.model_validate(body)
    adapter = ADAPTERS[provider]
    if rule.handling == "400":
        with pytest.raises(InvalidRequest) as refused:
            adapter.chat_request(deployment(provider), request, body, stream=False)
        assert refused.value.param == fields(row)[0]
        return
    payload = orjson.loads(adapter.chat_request(deployment(provider), request, body, stream=False).content)
    dropped = adapter.dropped_params(request, body)
    if rule.handling == "dropped":
        assert set(fields(row)) <= set(dropped)
        assert not set(fields(row)) & set(payload)
    elif rule.where:
        for path in rule.where.split(","):
            at(payload, path)  # a KeyError if the row says a field is sent that is not
        assert fields(row)[0] not in dropped
    else:  # sent as the client sent it
        assert payload == {**body, "model": "m"}
        assert dropped == []


@pytest.mark.parametrize("provider", sorted(RULES))
def test_the_docs_hold_the_table(provider: str) -> None:
    table = markdown_table(provider)
    # the failure shows the table to paste into the page
    assert table in DOCS.read_text(encoding="utf-8"), f"docs/providers.md should hold:\n{table}"
