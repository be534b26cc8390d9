"""Restoring values into answers where a careless restore breaks them: tool-call arguments (JSON
source) streamed in pieces, several tool calls streamed in parallel, upstreams that escape ``<`` as
``\\u003c``, and the assistant's ``refusal``. Each test names the check it pins."""

from __future__ import annotations

import json
from typing import Any

import orjson
from asgiref.testing import ApplicationCommunicator

from asgi_aigw.kernel.sse import encode_data
from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.redact.placeholders import PlaceholderMap
from asgi_aigw.redact.restore import JSONRestorer, StreamRestorer

from .redact_support import base_analyzer, chunk
from .test_redact_stream import SteppedApp, scope, step

#: A value a restore must escape inside JSON source: quotes, a backslash, and an attempt to add a key.
HOSTILE = 'K"x\\", "admin": true, "z": "K'
#: A recognizer for it (the default ones find no value holding quotes).
SECRET = RedactConfig(
    regex_only=True,
    entities=[],
    recognizers=[{"name": "secret", "entity": "SECRET", "patterns": [{"regex": r"K\".*?\"K", "score": 1.0}]}],  # type: ignore[list-item]
)


def arguments_of(events: list[bytes]) -> dict[int, str]:
    """Each tool call's arguments, joined from the streamed deltas."""
    joined: dict[int, str] = {}
    for event in events:
        for block in event.split(b"\n\n"):
            if not block.startswith(b"data: {"):
                continue
            for choice in orjson.loads(block[6:])["choices"]:
                for call in choice["delta"].get("tool_calls") or []:
                    joined[call["index"]] = joined.get(call["index"], "") + call["function"]["arguments"]
    return joined


def call_delta(index: int, arguments: str) -> dict[str, Any]:
    return {"index": index, "function": {"arguments": arguments}}


async def test_a_value_restored_into_streamed_arguments_is_json_escaped_and_cannot_add_keys() -> None:
    inner = SteppedApp()
    app = RedactMiddleware(inner, config=SECRET, analyzer=base_analyzer(True))
    communicator = ApplicationCommunicator(app, scope())
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"Use {HOSTILE} now"}]}
    await communicator.send_input({"type": "http.request", "body": orjson.dumps(body), "more_body": False})
    assert (await communicator.receive_output(10))["type"] == "http.response.start"
    assert inner.request["messages"][0]["content"] == "Use <SECRET_1> now"
    head = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"key": "<SEC'},
    }
    events = [
        await step(inner, communicator, chunk(tool_calls=[head])),
        await step(
            inner, communicator, chunk(tool_calls=[{"index": 0, "function": {"arguments": 'RET_1>"}'}}])
        ),
    ]
    arguments = arguments_of(events)[0]
    # unescaped, the quote would end the string and "admin": true would become a key of its own
    assert json.loads(arguments) == {"key": HOSTILE}


def test_parallel_streamed_tool_calls_are_restored_each_on_its_own() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", 'Ann "A" O\\Neil')
    mapping.placeholder("EMAIL_ADDRESS", "ann@example.com")
    restorer = StreamRestorer(mapping)
    # two calls interleaved, each with a placeholder cut at a different place
    deltas = [
        [
            {
                "index": 0,
                "id": "a",
                "type": "function",
                "function": {"name": "f", "arguments": '{"who": "<PER'},
            }
        ],
        [
            {
                "index": 1,
                "id": "b",
                "type": "function",
                "function": {"name": "g", "arguments": '{"to": "<EMAIL_AD'},
            }
        ],
        [{"index": 0, "function": {"arguments": "SON_1>"}}],
        [{"index": 1, "function": {"arguments": 'DRESS_1>", "cc": "<PERSON_1>"}'}}],
        [{"index": 0, "function": {"arguments": '"}'}}],
    ]
    out = []
    for tool_calls in deltas:
        event = chunk(tool_calls=tool_calls)
        out.append(restorer.on_event(event) or event)
    out.extend(restorer.on_end())
    joined = arguments_of(out)
    assert json.loads(joined[0]) == {"who": 'Ann "A" O\\Neil'}
    assert json.loads(joined[1]) == {"to": "ann@example.com", "cc": 'Ann "A" O\\Neil'}


def test_parallel_calls_in_one_chunk_hold_their_tails_apart() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", "Ann")
    restorer = StreamRestorer(mapping)
    first = chunk(tool_calls=[call_delta(0, '{"a": "<PER'), call_delta(1, '{"b": "<PERSON_')])
    second = chunk(tool_calls=[call_delta(1, '1>"}'), call_delta(0, 'SON_1>"}')])
    out = [restorer.on_event(first) or first, restorer.on_event(second) or second]
    joined = arguments_of(out)
    assert (json.loads(joined[0]), json.loads(joined[1])) == ({"a": "Ann"}, {"b": "Ann"})


def escaped_lt(payload: dict[str, Any]) -> bytes:
    """``payload`` encoded the way some servers do, with ``<`` and ``>`` as ``\\u003c``/``\\u003e``."""
    return json.dumps(payload).replace("<", "\\u003c").replace(">", "\\u003e").encode()


def test_a_stream_escaping_lt_is_restored() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("EMAIL_ADDRESS", "ann@example.com")
    restorer = StreamRestorer(mapping)
    payload = {
        "id": "x",
        "choices": [{"index": 0, "delta": {"content": "Mail <EMAIL_ADDRESS_1>."}, "finish_reason": None}],
    }
    raw = encode_data(escaped_lt(payload))
    assert b"<" not in raw  # the upstream really escaped it
    restored = restorer.on_event(raw)
    assert restored is not None
    assert orjson.loads(restored[6:])["choices"][0]["delta"]["content"] == "Mail ann@example.com."


def test_a_json_answer_escaping_lt_is_restored_into_content_refusal_and_arguments() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", 'Ann "A"')
    message = {
        "role": "assistant",
        "content": "Hi <PERSON_1>",
        "refusal": "I cannot write to <PERSON_1>.",
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"who": "<PERSON_1>"}'}}
        ],
    }
    body = escaped_lt({"choices": [{"index": 0, "message": message}]})
    assert b"<" not in body
    restored = orjson.loads(JSONRestorer(mapping)(200, body) or b"{}")["choices"][0]["message"]
    assert restored["content"] == 'Hi Ann "A"'
    assert restored["refusal"] == 'I cannot write to Ann "A".'
    assert json.loads(restored["tool_calls"][0]["function"]["arguments"]) == {"who": 'Ann "A"'}


def test_a_streamed_refusal_is_restored() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", "Ann")
    restorer = StreamRestorer(mapping)
    out = [restorer.on_event(chunk(refusal="No, <PERS")), restorer.on_event(chunk(refusal="ON_1>."))]
    refusals = [orjson.loads((event or b"")[6:])["choices"][0]["delta"]["refusal"] for event in out]
    assert "".join(refusals) == "No, Ann."


def go_escaped_arguments(arguments: dict[str, Any]) -> str:
    """Tool-call arguments as a Go server encodes them (``encoding/json`` escapes ``<`` and ``>``), so the
    placeholder inside the JSON source reads ``\\u003cPERSON_1\\u003e`` even after the body is decoded."""
    return json.dumps(arguments).replace("<", "\\u003c").replace(">", "\\u003e")


def test_a_json_answer_with_go_escaped_arguments_is_restored() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", 'Ann "A"')
    arguments = go_escaped_arguments({"who": "<PERSON_1>"})
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = orjson.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": [call]}}]})
    restored = orjson.loads(JSONRestorer(mapping)(200, body) or b"{}")
    restored_arguments = restored["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(restored_arguments) == {"who": 'Ann "A"'}


def test_a_stream_with_go_escaped_arguments_split_over_chunks_is_restored() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", 'Ann "A"')
    restorer = StreamRestorer(mapping)
    arguments = go_escaped_arguments({"who": "<PERSON_1>"})
    cut = arguments.index("PERSON") + 3  # inside the escaped placeholder
    first = chunk(tool_calls=[call_delta(0, arguments[:cut])])
    second = chunk(tool_calls=[call_delta(0, arguments[cut:])])
    out = [restorer.on_event(first) or first, restorer.on_event(second) or second]
    assert json.loads(arguments_of(out)[0]) == {"who": 'Ann "A"'}
