"""A ``type`` that is not a string (a list, an object, a number), anywhere in a Messages, Responses or chat
body, gets a 4xx through the whole stack, never a 500: every layer reads ``type`` before the router
validates the body, and a set lookup on a list raised ``TypeError`` in some of them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgi_aigw.router.config import DeploymentConfig
from asgi_aigw.testing import StreamingASGITransport

from .support import WholeStack, whole_stack, whole_stack_config

UPSTREAM = "http://fake-upstream.test"
MESSAGES: dict[str, Any] = {
    "model": "m",
    "max_tokens": 5,
    "system": [{"type": "text", "text": "s"}],
    "tool_choice": {"type": "auto"},
    "tools": [{"name": "t", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "t", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "r"}]}
            ],
        },
    ],
}
RESPONSES: dict[str, Any] = {
    "model": "m",
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "function", "name": "f"},
    "text": {"format": {"type": "text"}},
}
CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "text"},
}


def type_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place a ``type`` key sits in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "type":
                yield (*path, key)
            yield from type_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from type_paths(item, (*path, index))


def with_value(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


class Stack(WholeStack):
    def __init__(self, app: Any, fake: Any) -> None:
        super().__init__(app, fake)
        self.http = httpx.AsyncClient(
            transport=StreamingASGITransport(app), base_url="http://app.test", headers={"x-tenant-id": "acme"}
        )


async def test_a_type_that_is_not_a_string_is_never_a_500(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    deployment = DeploymentConfig(
        provider="anthropic", model="claude-up", base_url=UPSTREAM, api_key="test-key-not-real"
    )  # type: ignore[arg-type]
    config = whole_stack_config("m", deployment, redis_url, redis_prefix, tmp_path, 1_000_000)
    failures: list[str] = []
    sent = 0
    async for stack in whole_stack(Stack, config, UPSTREAM, redis_url, redis_prefix):
        headers = {"anthropic-version": "2023-06-01"}
        for route, body in (
            ("/ai/v1/messages", MESSAGES),
            ("/ai/v1/responses", RESPONSES),
            ("/ai/v1/chat/completions", CHAT),
        ):
            for path in type_paths(body):
                for bad in ([], {"a": 1}, 7):
                    answer = await stack.http.post(route, json=with_value(body, path, bad), headers=headers)
                    sent += 1
                    if answer.status_code >= 500:
                        failures.append(f"{route} {path} = {bad!r}: {answer.status_code} {answer.text[:200]}")
    assert sent >= 60
    assert failures == []


def value_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and list position in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from value_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from value_paths(item, (*path, index))


@pytest.mark.parametrize(
    ("provider", "base_url"), [("anthropic", UPSTREAM), ("openai", f"{UPSTREAM}/v1"), ("gemini", UPSTREAM)]
)
async def test_any_value_of_another_type_is_never_a_500(
    redis_url: str, redis_prefix: str, tmp_path: Path, provider: str, base_url: str
) -> None:
    # every field of every dialect's body, and count_tokens, replaced by each JSON type in turn: the
    # gateway refuses it, or the provider does (FakeProvider refuses as the real API would)
    deployment = DeploymentConfig(
        provider=provider, model="m-up", base_url=base_url, api_key="test-key-not-real"
    )  # type: ignore[arg-type]
    config = whole_stack_config("m", deployment, redis_url, redis_prefix, tmp_path, 10**9)
    count_tokens = {k: v for k, v in MESSAGES.items() if k != "max_tokens"}
    routes = (
        ("/ai/v1/messages", MESSAGES),
        ("/ai/v1/messages/count_tokens", count_tokens),
        ("/ai/v1/responses", RESPONSES),
        ("/ai/v1/chat/completions", CHAT),
    )
    failures: list[str] = []
    async for stack in whole_stack(Stack, config, UPSTREAM, redis_url, redis_prefix):
        for route, body in routes:
            for path in value_paths(body):
                for bad in ([], {"a": 1}, 7, None, "x", True, [[]]):
                    answer = await stack.http.post(
                        route, json=with_value(body, path, bad), headers={"anthropic-version": "2023-06-01"}
                    )
                    if answer.status_code >= 500:
                        failures.append(f"{route} {path} = {bad!r}: {answer.status_code} {answer.text[:200]}")
    assert failures == []
