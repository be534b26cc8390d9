"""RedactMiddleware on the Anthropic Messages routes, through the real Presidio engine: PII in every
client-written field never reaches the provider (FakeProvider speaking Anthropic's format, or a small
Messages app), the answer gets it back (JSON and streamed, through the official ``anthropic`` SDK over
uvicorn too), count_tokens is scanned, refusals are in Anthropic's error shape, and a signed thinking
block makes the round trip unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .redact_support import CANARIES, AnsweringApp, assert_nowhere, base_analyzer
from .support import served, sse_payloads
from .test_redact_attack import DISGUISES, clean
from .test_redact_attack import email as attack_email

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
EMAIL = CANARIES["EMAIL_ADDRESS"]
#: Inline image data, long enough to be taken for binary as a real one is.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" * 8
SIGNATURE = "EqQBCkYIBxgCKkDzcXDxq7B0g/yzJb+Y/jJzZHk1lMN6CPQmcUNkUx+Ab1NpIy5sTxX=="


def config(**options: Any) -> RedactConfig:
    return RedactConfig(**options)


def client_for(app: Any) -> httpx.AsyncClient:
    # Anthropic refuses a request without its API version, and so does FakeProvider
    return httpx.AsyncClient(
        transport=StreamingASGITransport(app),
        base_url="http://testserver",
        headers={"anthropic-version": "2023-06-01"},
    )


@pytest.fixture
async def fake_stack() -> AsyncIterator[tuple[FakeProvider, httpx.AsyncClient]]:
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        yield fake, client


def request(content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


class MessagesApp(AnsweringApp):
    """A small Messages-format upstream (see AnsweringApp)."""


def sse(payload: dict[str, Any]) -> bytes:
    return b"event: " + str(payload["type"]).encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


# -- every field ---------------------------------------------------------------------------------------


def every_field() -> dict[str, Any]:
    """A Messages request with a canary in each field that carries client text."""
    c = CANARIES
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 300,
        "system": [
            {
                "type": "text",
                "text": f"The operator is {c['PERSON']}.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "metadata": {"user_id": EMAIL},
        "stop_sequences": [f"SSN {c['US_SSN']}"],
        "tools": [
            {
                "name": "lookup",
                "description": f"Looks up accounts; escalations go to {EMAIL}.",
                "input_schema": {
                    "type": "object",
                    "properties": {"iban": {"type": "string", "description": f"e.g. {c['IBAN_CODE']}"}},
                },
            }
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"My card is {c['CREDIT_CARD']}."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {
                        "type": "image",
                        "source": {"type": "url", "url": f"https://example.org/mail/{EMAIL}/a.png"},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "text",
                            "media_type": "text/plain",
                            "data": f"Call {c['PHONE_NUMBER']}.",
                        },
                        "title": f"Notes on {c['PERSON']}",
                        "context": f"Card {c['CREDIT_CARD']} on file.",
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "content",
                            "content": [{"type": "text", "text": f"SSN {c['US_SSN']}."}],
                        },
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": f"The IBAN {c['IBAN_CODE']} needs checking.",
                        "signature": SIGNATURE,
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "lookup",
                        "input": {"iban": c["IBAN_CODE"]},
                    },
                    # each tool_result answers a tool_use of the turn before, as Anthropic requires
                    {"type": "tool_use", "id": "toolu_01B", "name": "lookup", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": f"Owner: {c['PERSON']}"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01B",
                        "content": [{"type": "text", "text": f"Phone {c['PHONE_NUMBER']}"}],
                    },
                    {"type": "text", "text": f"Also email {EMAIL} please."},
                ],
            },
        ],
    }


async def test_pii_in_every_field_never_reaches_the_provider_and_structure_is_kept() -> None:
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(), analyzer=base_analyzer(False))
    body = every_field()
    async with client_for(app) as client:
        response = await client.post(MESSAGES, json=body)
    assert response.status_code == 200, response.text
    assert_nowhere([r.body for r in fake.requests])
    sent = fake.last_request.json
    # structural fields reach the provider exactly as written
    assert sent["messages"][0]["content"][1] == body["messages"][0]["content"][1]  # base64 image
    assert sent["messages"][1]["content"][0]["signature"] == SIGNATURE
    assert sent["messages"][1]["content"][1]["id"] == "toolu_01A"
    assert sent["messages"][2]["content"][0]["tool_use_id"] == "toolu_01A"
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["tools"][0]["name"] == "lookup"
    assert sent["metadata"] == {"user_id": "<EMAIL_ADDRESS_1>"}
    # and the answer (the fake calls the tool with the last user text) has the values back
    answer = response.json()
    assert answer["content"][0]["type"] == "tool_use"
    assert EMAIL in answer["content"][0]["input"]["query"]


async def test_a_body_with_nothing_to_find_goes_on_byte_for_byte(
    fake_stack: tuple[FakeProvider, httpx.AsyncClient],
) -> None:
    fake, client = fake_stack
    raw = b'{ "model":"claude-sonnet-4-5",  "max_tokens":50,\n "messages":[{"role":"user","content":"caf\\u00e9 < tea"}]}'
    response = await client.post(MESSAGES, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert fake.last_request.body == raw


# -- answers -------------------------------------------------------------------------------------------


async def test_the_json_answer_is_restored(fake_stack: tuple[FakeProvider, httpx.AsyncClient]) -> None:
    fake, client = fake_stack
    response = await client.post(MESSAGES, json=request(f"Write to {EMAIL} today"))
    assert fake.last_request.json["messages"][0]["content"] == "Write to <EMAIL_ADDRESS_1> today"
    assert response.json()["content"][0]["text"] == f"Echo: Write to {EMAIL} today"


async def test_the_stream_is_restored_text_and_tool_input(
    fake_stack: tuple[FakeProvider, httpx.AsyncClient],
) -> None:
    fake, client = fake_stack
    prompt = f"Mail {EMAIL} and call {CANARIES['PHONE_NUMBER']} now"
    response = await client.post(MESSAGES, json=request(prompt, stream=True))
    payloads = sse_payloads(response.text)
    text = "".join(p["delta"]["text"] for p in payloads if p["type"] == "content_block_delta")
    assert text == f"Echo: {prompt}"
    assert payloads[-1] == {"type": "message_stop"}

    tools = [{"name": "send", "input_schema": {"type": "object"}}]
    response = await client.post(MESSAGES, json=request(prompt, stream=True, tools=tools))
    payloads = sse_payloads(response.text)
    partial = "".join(p["delta"]["partial_json"] for p in payloads if p["type"] == "content_block_delta")
    assert json.loads(partial) == {"query": prompt}
    assert_nowhere([r.body for r in fake.requests], {"EMAIL_ADDRESS": EMAIL})


async def test_the_anthropic_sdk_over_uvicorn_gets_its_values_back() -> None:
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    prompt = f"Mail {EMAIL} and {CANARIES['US_SSN']}"
    async with (
        served(app) as base_url,
        anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key-not-real", max_retries=0) as client,
    ):
        answer = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=200, messages=[{"role": "user", "content": prompt}]
        )
        assert answer.content[0].type == "text"
        assert answer.content[0].text == f"Echo: {prompt}"
        async with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=200,
            messages=[{"role": "user", "content": prompt}],
            tools=[{"name": "send", "input_schema": {"type": "object"}}],
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "tool_use"
        assert final.content[0].input == {"query": prompt}
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=200, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            streamed = "".join([text async for text in stream.text_stream])
            final = await stream.get_final_message()
        assert streamed == f"Echo: {prompt}"
        assert final.content[0].type == "text"
        assert final.content[0].text == f"Echo: {prompt}"
    assert_nowhere([r.body for r in fake.requests], {"EMAIL_ADDRESS": EMAIL, "US_SSN": CANARIES["US_SSN"]})


# -- count_tokens --------------------------------------------------------------------------------------


async def test_count_tokens_is_scanned() -> None:
    inner = MessagesApp({"input_tokens": 17})
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        body = {
            "model": "claude-sonnet-4-5",
            "system": f"Owner {EMAIL}",
            "messages": [{"role": "user", "content": EMAIL}],
        }
        response = await client.post(COUNT, json=body)
    assert response.json() == {"input_tokens": 17}
    assert inner.last == {
        "model": "claude-sonnet-4-5",
        "system": "Owner <EMAIL_ADDRESS_1>",
        "messages": [{"role": "user", "content": "<EMAIL_ADDRESS_1>"}],
    }


# -- refusals in Anthropic's shape ---------------------------------------------------------------------


async def test_block_mode_refuses_in_anthropics_error_shape_which_the_sdk_reads() -> None:
    inner = MessagesApp({"input_tokens": 1})
    app = RedactMiddleware(
        inner, config=RedactConfig(regex_only=True, actions={"US_SSN": "block"}), analyzer=base_analyzer(True)
    )
    async with (
        served(app) as base_url,
        anthropic.AsyncAnthropic(base_url=base_url, api_key="test-key-not-real", max_retries=0) as sdk,
    ):
        messages: Any = [{"role": "user", "content": f"SSN {CANARIES['US_SSN']}"}]
        calls = [
            sdk.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=messages),
            sdk.messages.count_tokens(model="claude-sonnet-4-5", messages=messages),
        ]
        for call in calls:
            with pytest.raises(anthropic.UnprocessableEntityError) as caught:
                await call
            body = caught.value.body
            assert isinstance(body, dict)
            assert body["type"] == "error"
            assert body["error"]["type"] == "invalid_request_error"
            assert "US_SSN in messages[0].content" in body["error"]["message"]
            assert CANARIES["US_SSN"] not in caught.value.response.text
    assert inner.bodies == []  # nothing went upstream


async def test_bad_input_and_a_failed_analyzer_are_refused_in_anthropics_shape() -> None:
    inner = MessagesApp({"input_tokens": 1})

    def broken() -> Any:
        raise RuntimeError("model files missing")

    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    failing = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=broken)
    async with client_for(app) as client, client_for(failing) as failing_client:
        cases = [
            (client, b"{not json", 400, "invalid_request_error"),
            (
                client,
                orjson.dumps(request("hi") | {"messages": [{"role": "system", "content": "x"}]}),
                400,
                "invalid_request_error",
            ),
            (failing_client, orjson.dumps(request(f"mail {EMAIL}")), 503, "overloaded_error"),
        ]
        for http, raw, status, kind in cases:
            for path in (MESSAGES, COUNT):
                response = await http.post(path, content=raw, headers={"content-type": "application/json"})
                assert response.status_code == status
                error = response.json()
                assert error["type"] == "error"
                assert error["error"]["type"] == kind
                assert set(error["error"]) == {"type", "message"}
    assert inner.bodies == []


async def test_answer_scan_masks_new_pii_in_text_blocks_only() -> None:
    thinking = {"type": "thinking", "thinking": "Maybe 536-22-1234?", "signature": SIGNATURE}
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [thinking, {"type": "text", "text": "Your SSN is 536-22-1234, mail <EMAIL_ADDRESS_1>."}],
    }
    inner = MessagesApp(answer)
    app = RedactMiddleware(
        inner, config=RedactConfig(regex_only=True, scan_answer=True), analyzer=base_analyzer(True)
    )
    async with client_for(app) as client:
        response = await client.post(MESSAGES, json=request(f"mail {EMAIL}"))
    content = response.json()["content"]
    assert content[1]["text"] == f"Your SSN is <US_SSN>, mail {EMAIL}."
    assert content[0] == thinking  # signed: left as it is


# -- thinking ------------------------------------------------------------------------------------------


async def test_a_signed_thinking_block_makes_the_round_trip_unchanged() -> None:
    thinking = {
        "type": "thinking",
        "thinking": "They want mail sent to <EMAIL_ADDRESS_1>.",
        "signature": SIGNATURE,
    }
    tool_use = {"type": "tool_use", "id": "toolu_01", "name": "send", "input": {"to": "<EMAIL_ADDRESS_1>"}}
    first = {"id": "msg_1", "type": "message", "role": "assistant", "content": [thinking, tool_use]}
    second = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Sent to <EMAIL_ADDRESS_1>."}],
    }
    inner = MessagesApp(first, second)
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    question = {"role": "user", "content": f"Mail {EMAIL} the report"}
    async with client_for(app) as client:
        answer = (await client.post(MESSAGES, json={**request(""), "messages": [question]})).json()
        # the thinking is what the model wrote, placeholders and all, so its signature holds
        assert answer["content"][0] == thinking
        assert answer["content"][1]["input"] == {"to": EMAIL}
        history = [
            question,
            {"role": "assistant", "content": answer["content"]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "ok"}],
            },
        ]
        final = (await client.post(MESSAGES, json={**request(""), "messages": history})).json()
    sent = inner.last["messages"]
    assert sent[1]["content"][0] == thinking  # exactly what the provider signed
    # the value keeps its number: the signed block's placeholder is not taken for a client's forgery
    assert sent[0]["content"] == "Mail <EMAIL_ADDRESS_1> the report"
    assert sent[1]["content"][1]["input"] == {"to": "<EMAIL_ADDRESS_1>"}
    assert final["content"][0]["text"] == f"Sent to {EMAIL}."


async def test_unsigned_thinking_and_text_placeholders_are_still_reserved() -> None:
    inner = MessagesApp(
        {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "<EMAIL_ADDRESS_1>"}],
        }
    )
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    forged = [
        {"type": "thinking", "thinking": "<EMAIL_ADDRESS_1>"},  # no signature: the client's own text
        {"type": "text", "text": "ok"},
    ]
    async with client_for(app) as client:
        for assistant in (forged, [{"type": "text", "text": "Say <EMAIL_ADDRESS_1>"}]):
            messages = [
                {"role": "user", "content": f"Mail {EMAIL}"},
                {"role": "assistant", "content": assistant},
                {"role": "user", "content": "Repeat it"},
            ]
            response = await client.post(MESSAGES, json={**request(""), "messages": messages})
            assert inner.last["messages"][0]["content"] == "Mail <EMAIL_ADDRESS_2>"
            # the model repeating the client's own <EMAIL_ADDRESS_1> gets nothing restored
            assert response.json()["content"][0]["text"] == "<EMAIL_ADDRESS_1>"


async def test_thinking_deltas_pass_unchanged_in_a_stream() -> None:
    events = [
        sse(
            {
                "type": "message_start",
                "message": {"id": "m", "type": "message", "role": "assistant", "content": []},
            }
        ),
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Mail <EMAIL_"},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "ADDRESS_1>."},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": SIGNATURE},
            }
        ),
        sse({"type": "content_block_stop", "index": 0}),
        sse({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
        sse(
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "To <EMAIL_"}}
        ),
        sse(
            {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "ADDRESS_1>"}}
        ),
        sse({"type": "content_block_stop", "index": 1}),
        sse({"type": "message_stop"}),
    ]
    inner = MessagesApp(events)
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        response = await client.post(MESSAGES, json=request(f"Mail {EMAIL}", stream=True))
    received = response.content
    for raw in events[:6]:
        assert raw in received  # the thinking block's events, byte for byte
    payloads = sse_payloads(response.text)
    text = "".join(
        p["delta"].get("text", "") for p in payloads if p["type"] == "content_block_delta" and p["index"] == 1
    )
    assert text == f"To {EMAIL}"


async def test_a_stream_split_at_every_byte_boundary_is_restored() -> None:
    """The upstream's bytes cut in two at each offset (inside events, lines, UTF-8 characters and
    placeholders): the client always gets the same restored text and valid tool input."""
    deltas = [
        {"type": "text_delta", "text": "Café: <EMAIL_ADDRESS_1>, "},
        {"type": "text_delta", "text": "<US_SSN_1> ✓"},
    ]
    events = [
        sse(
            {
                "type": "message_start",
                "message": {"id": "m", "type": "message", "role": "assistant", "content": []},
            }
        ),
        sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *(sse({"type": "content_block_delta", "index": 0, "delta": delta}) for delta in deltas),
        sse({"type": "content_block_stop", "index": 0}),
        sse(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"to": "<EMAIL_ADD'},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'RESS_1>"}'},
            }
        ),
        sse({"type": "content_block_stop", "index": 1}),
        sse({"type": "message_stop"}),
    ]
    whole = b"".join(events)
    inner = MessagesApp(*[[whole[:cut], whole[cut:]] for cut in range(len(whole) + 1)])
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    ssn = CANARIES["US_SSN"]
    async with client_for(app) as client:
        for cut in range(len(whole) + 1):
            response = await client.post(MESSAGES, json=request(f"Mail {EMAIL}, SSN {ssn}", stream=True))
            payloads = sse_payloads(response.text)
            pieces = [p for p in payloads if p["type"] == "content_block_delta"]
            text = "".join(p["delta"]["text"] for p in pieces if p["index"] == 0)
            assert text == f"Café: {EMAIL}, {ssn} ✓", cut
            partial = "".join(p["delta"]["partial_json"] for p in pieces if p["index"] == 1)
            assert json.loads(partial) == {"to": EMAIL}, cut
            assert payloads[-1] == {"type": "message_stop"}
    assert len(inner.bodies) == len(whole) + 1


async def test_disguised_values_in_nested_messages_fields_never_reach_the_provider() -> None:
    """The attack list's disguises (full-width, zero-width, HTML entities), JSON-escaped in the body, in
    nested tool results, tool input, thinking, a text document and a system block."""
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        for name, disguise in DISGUISES.items():
            value = disguise(attack_email("jose"))
            nested = [{"type": "text", "text": f"see {value}"}]
            body = {
                "model": "claude-sonnet-4-5",
                "max_tokens": 50,
                "system": [{"type": "text", "text": f"Owner: {value}"}],
                "messages": [
                    {"role": "user", "content": "Look it up"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": f"Mail {value}.", "signature": SIGNATURE},
                            {
                                "type": "tool_use",
                                "id": "toolu_1",
                                "name": "f",
                                "input": {"a": [{"b": value}]},
                            },
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "toolu_1",
                                "content": [
                                    {"type": "document", "source": {"type": "content", "content": nested}}
                                ],
                            },
                            {
                                "type": "document",
                                "source": {
                                    "type": "text",
                                    "media_type": "text/plain",
                                    "data": f"To: {value}",
                                },
                            },
                        ],
                    },
                ],
            }
            raw = json.dumps(body, ensure_ascii=True).encode()  # every non-ASCII character as \uXXXX
            response = await client.post(MESSAGES, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 200, name
            assert "garcia@example.com" not in clean(fake.last_request.body), name
            assert fake.last_request.body.count(b"<EMAIL_ADDRESS_1>") == 5, name  # each of the five places


async def test_a_dialect_redaction_cannot_walk_is_refused_never_forwarded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A prompt route the middleware has no walk for (a dialect added to the kernel before redaction
    learnt it) is refused with 400, never forwarded half-scanned; the Responses route is walked."""
    from asgi_aigw.redact import middleware

    reached: list[bytes] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(b"called")

    monkeypatch.setattr(middleware, "PROMPT_ROUTES", middleware.PROMPT_ROUTES | {"future"})
    classify = middleware.classify
    monkeypatch.setattr(
        middleware, "classify", lambda scope: "future" if scope["path"] == "/v1/future" else classify(scope)
    )
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        answer = await client.post("/v1/future", json={"model": "m", "input": f"My email is {EMAIL}"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "redaction_unsupported"
    assert EMAIL not in answer.text
    assert reached == []
    walked = middleware._walk("responses", RedactConfig(), {"model": "m", "input": f"My email is {EMAIL}"})
    assert [field.text for field in walked.fields] == [f"My email is {EMAIL}"]
