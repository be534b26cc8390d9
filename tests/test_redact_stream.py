"""Restoring placeholders in streams chunk by chunk (ApplicationCommunicator: nothing is buffered by
the test client), and the placeholder map and restorers on their own."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from asgiref.testing import ApplicationCommunicator
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_aigw.kernel.sse import DONE_EVENT
from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.redact.placeholders import PlaceholderMap, placeholders_in
from asgi_aigw.redact.restore import JSONRestorer, StreamRestorer

from .redact_support import CANARIES, base_analyzer, chunk

EMAIL = CANARIES["EMAIL_ADDRESS"]
PHONE = CANARIES["PHONE_NUMBER"]


class SteppedApp:
    """An OpenAI-format stream whose events the test releases one at a time."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.request: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.request = orjson.loads(message["body"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        while (event := await self.events.get()) is not None:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def start_stream(prompt: str) -> tuple[SteppedApp, ApplicationCommunicator]:
    inner = SteppedApp()
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    communicator = ApplicationCommunicator(app, scope())
    body = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": prompt}]})
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(10)
    assert start["type"] == "http.response.start"
    return inner, communicator


def contents(body: bytes) -> str:
    out = []
    for block in body.split(b"\n\n"):
        if block.startswith(b"data: {"):
            for choice in orjson.loads(block[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


async def step(inner: SteppedApp, communicator: ApplicationCommunicator, event: bytes) -> bytes:
    """Release one upstream event and return what the client got for it (at once, not later)."""
    await inner.events.put(event)
    message = await communicator.receive_output(5)
    assert message["type"] == "http.response.body"
    return bytes(message["body"])


@pytest.mark.parametrize(
    "pieces",
    [
        ["Write to <EMAIL_", "ADDRESS_1> today"],
        ["Write to <EMAIL_ADD", "RESS", "_1> today"],
        ["Write to <", "EMAIL_ADDRESS_1", "> today"],
    ],
    ids=["2-chunks", "3-chunks", "3-chunks-bracket-alone"],
)
async def test_a_placeholder_split_across_chunks_is_restored(pieces: list[str]) -> None:
    inner, communicator = await start_stream(f"My mail is {EMAIL}")
    assert inner.request["messages"][0]["content"] == "My mail is <EMAIL_ADDRESS_1>"
    received = []
    for piece in pieces:
        received.append(contents(await step(inner, communicator, chunk(piece))))
    # the first chunk's text before the placeholder leaves at once; only the placeholder is held
    assert received[0] == "Write to "
    assert received[-1] == f"{EMAIL} today"
    assert "".join(received) == f"Write to {EMAIL} today"
    await inner.events.put(DONE_EVENT)
    await inner.events.put(None)
    assert (await communicator.receive_output(5))["body"] == DONE_EVENT


async def test_a_lookalike_that_never_completes_is_released() -> None:
    inner, communicator = await start_stream(f"Call {PHONE}")
    assert contents(await step(inner, communicator, chunk("1 <"))) == "1 "
    assert contents(await step(inner, communicator, chunk("PHONE_NUMBER_"))) == ""
    assert contents(await step(inner, communicator, chunk("9> x"))) == "<PHONE_NUMBER_9> x"


async def test_held_text_is_sent_with_the_finish_chunk() -> None:
    inner, communicator = await start_stream(f"Call {PHONE}")
    assert contents(await step(inner, communicator, chunk("cost < 5"))) == "cost < 5"
    assert contents(await step(inner, communicator, chunk("a <PHO"))) == "a "
    assert contents(await step(inner, communicator, chunk(finish="stop"))) == "<PHO"


async def test_held_text_is_sent_before_done_when_no_finish_chunk_came() -> None:
    inner, communicator = await start_stream(f"Call {PHONE}")
    await step(inner, communicator, chunk("x <PHONE_NUM"))
    await inner.events.put(DONE_EVENT)
    body = (await communicator.receive_output(5))["body"]
    assert contents(body) == "<PHONE_NUM"
    assert body.endswith(DONE_EVENT)


async def test_tool_call_arguments_are_restored_json_escaped() -> None:
    inner, communicator = await start_stream('Mail "Bob" at bob@example.com')
    upstream = inner.request["messages"][0]["content"]
    assert upstream == 'Mail "Bob" at <EMAIL_ADDRESS_1>'
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "send", "arguments": '{"to": "<EMAIL'},
    }
    first = await step(inner, communicator, chunk(tool_calls=[call]))
    rest = {"index": 0, "function": {"arguments": '_ADDRESS_1>"}'}}
    second = await step(inner, communicator, chunk(tool_calls=[rest]))
    pieces = [
        orjson.loads(b[6:])["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for b in (first, second)
    ]
    assert pieces == ['{"to": "', 'bob@example.com"}']


async def test_no_placeholder_in_the_request_means_no_tap() -> None:
    inner, communicator = await start_stream("Nothing personal here")
    event = chunk("Hello <EMAIL_ADDRESS_1>")
    assert await step(inner, communicator, event) == event  # byte for byte, never parsed


# -- the map and the restorers on their own ------------------------------------------------------------


def test_placeholders_are_consistent_and_skip_reserved_numbers() -> None:
    mapping = PlaceholderMap(reserved={"<PERSON_1>", "<PERSON_3>"})
    assert mapping.placeholder("PERSON", "Ann") == "<PERSON_2>"
    assert mapping.placeholder("PERSON", "Bob") == "<PERSON_4>"
    assert mapping.placeholder("PERSON", "Ann") == "<PERSON_2>"
    assert mapping.placeholder("EMAIL_ADDRESS", "a@b.c") == "<EMAIL_ADDRESS_1>"
    assert mapping.restore("<PERSON_1> <PERSON_2> <PERSON_4> <PERSON_9>") == "<PERSON_1> Ann Bob <PERSON_9>"


def test_lookalikes_are_found_anywhere_in_the_request() -> None:
    data = {"messages": [{"content": [{"text": "see <IBAN_CODE_12>"}]}, {"content": "<x_1> <A_B_2>"}]}
    assert placeholders_in(data) == {"<IBAN_CODE_12>", "<A_B_2>"}


def test_split_tail_holds_only_a_possible_placeholder_start() -> None:
    mapping = PlaceholderMap()
    assert mapping.split_tail("a <EMAIL_") == ("a <EMAIL_", "")  # empty map: nothing to wait for
    mapping.placeholder("EMAIL_ADDRESS", "a@b.c")
    assert mapping.split_tail("a <EMAIL_") == ("a ", "<EMAIL_")
    assert mapping.split_tail("a <EMAIL_ADDRESS_1>") == ("a <EMAIL_ADDRESS_1>", "")
    assert mapping.split_tail("a <EMAIL_X") == ("a <EMAIL_X", "")
    assert mapping.split_tail("1 < 2") == ("1 < 2", "")


def test_json_restorer_escapes_values_inside_arguments() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", 'Ann "the boss" O\\Neil')
    body = {
        "choices": [
            {
                "message": {
                    "content": "Hi <PERSON_1>",
                    "tool_calls": [{"function": {"name": "f", "arguments": '{"who": "<PERSON_1>"}'}}],
                }
            }
        ]
    }
    restored = orjson.loads(JSONRestorer(mapping)(200, orjson.dumps(body)) or b"")
    message = restored["choices"][0]["message"]
    assert message["content"] == 'Hi Ann "the boss" O\\Neil'
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "who": 'Ann "the boss" O\\Neil'
    }


def test_json_restorer_leaves_bodies_without_placeholders_alone() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", "Ann")
    assert JSONRestorer(mapping)(200, b'{"a": "b"}') is None


def test_stream_restorer_keeps_choices_apart() -> None:
    mapping = PlaceholderMap()
    mapping.placeholder("PERSON", "Ann")
    restorer = StreamRestorer(mapping)
    first = restorer.on_event(chunk("<PER", index=0))
    second = restorer.on_event(chunk("<PERSON_1>", index=1))
    third = restorer.on_event(chunk("SON_1>", index=0))
    assert contents(first or b"") == ""
    assert contents(second or b"") == "Ann"
    assert contents(third or b"") == "Ann"


_ANSWER_PIECES = st.sampled_from(
    ["Hi ", "<PERSON_1>", "<EMAIL_ADDRESS_1>", "<PERSON_2>", "<", ">", "_1", " a<b ", "x"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ANSWER_PIECES, min_size=1, max_size=12).map("".join), st.data())
def test_any_split_of_a_stream_restores_like_the_whole_text(answer: str, data: st.DataObject) -> None:
    mapping = PlaceholderMap(reserved={"<PERSON_1>"})
    mapping.placeholder("PERSON", "Ann <x>")  # <PERSON_2>: a value may itself hold '<'
    mapping.placeholder("EMAIL_ADDRESS", "a@b.c")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(answer) - 1)), max_size=6)))
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True) if a < b]
    restorer = StreamRestorer(mapping)
    out = []
    for piece in pieces:
        event = chunk(piece)
        out.append(restorer.on_event(event) or event)
    out.extend(restorer.on_end())
    assert contents(b"".join(out)) == mapping.restore(answer)
