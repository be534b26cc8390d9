"""RedactMiddleware on the OpenAI Responses API (``POST /v1/responses``), through the real Presidio
engine: PII in every client-written field never reaches the provider (FakeProvider speaking the
Responses format), structural fields reach it unchanged, the answer gets the values back (JSON and
streamed, through the official ``openai`` SDK's ``responses.create`` and ``responses.stream`` over
uvicorn and the router too), refusals are in OpenAI's error shape, and the answer scan masks new PII in
output text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from asgi_aigw import build_app
from asgi_aigw.config import GatewayConfig
from asgi_aigw.redact import RedactConfig, RedactMiddleware
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RetryConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, ServerThread, StreamingASGITransport

from .redact_support import CANARIES, AnsweringApp, assert_nowhere, base_analyzer
from .support import served, sse_payloads
from .test_redact_attack import DISGUISES, clean
from .test_redact_attack import email as attack_email

RESPONSES = "/v1/responses"
EMAIL = CANARIES["EMAIL_ADDRESS"]
SSN = CANARIES["US_SSN"]
#: Inline image and file data, long enough to be taken for binary as real ones are.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==" * 8
PDF = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29kZT4+" * 8
ENCRYPTED = "gAAAAABoZ8rX1yZQ0m3c2V4YmFzZTY0LWVuY3J5cHRlZC1yZWFzb25pbmc="
LOOKUP: Any = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    "strict": True,
}


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://testserver")


@pytest.fixture
async def fake_stack() -> AsyncIterator[tuple[FakeProvider, httpx.AsyncClient]]:
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        yield fake, client


class ResponsesApp(AnsweringApp):
    """A small Responses-format upstream (see AnsweringApp)."""


# -- every field ---------------------------------------------------------------------------------------


def every_field() -> dict[str, Any]:
    """A Responses request with a canary in each field that carries client text."""
    c = CANARIES
    return {
        "model": "gpt-5-mini",
        "instructions": f"The operator is {c['PERSON']}.",
        "metadata": {"customer": EMAIL},
        "user": EMAIL,
        "safety_identifier": f"user {c['PHONE_NUMBER']}",
        "prompt_cache_key": f"cache for {EMAIL}",
        "store": False,
        "tool_choice": "auto",
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": f"Looks up accounts; escalations go to {EMAIL}.",
                "parameters": {
                    "type": "object",
                    "properties": {"iban": {"type": "string", "description": f"e.g. {c['IBAN_CODE']}"}},
                },
                "strict": False,
            }
        ],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "answer",
                "description": f"Reply for {c['PERSON']}",
                "schema": {
                    "type": "object",
                    "properties": {"card": {"type": "string", "description": f"like {c['CREDIT_CARD']}"}},
                },
            },
            "verbosity": "low",
        },
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": f"My card is {c['CREDIT_CARD']}."},
                    {"type": "input_image", "detail": "auto", "image_url": f"data:image/png;base64,{PNG}"},
                    {
                        "type": "input_image",
                        "detail": "low",
                        "image_url": f"https://example.org/{EMAIL}/a.png",
                    },
                    {
                        "type": "input_file",
                        "filename": f"{c['PERSON']} statement.pdf",
                        "file_data": f"data:application/pdf;base64,{PDF}",
                    },
                ],
            },
            {
                "type": "reasoning",
                "id": "rs_01",
                "summary": [{"type": "summary_text", "text": f"The IBAN {c['IBAN_CODE']} needs checking."}],
                "encrypted_content": ENCRYPTED,
            },
            {
                "type": "message",
                "id": "msg_01",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": f"Calling {c['PHONE_NUMBER']}.", "annotations": []}
                ],
            },
            {
                "type": "function_call",
                "id": "fc_01",
                "call_id": "call_01",
                "name": "lookup",
                "arguments": json.dumps({"iban": c["IBAN_CODE"], "note": f"SSN {c['US_SSN']}"}),
            },
            {"type": "function_call_output", "call_id": "call_01", "output": f"Owner: {c['PERSON']}"},
            {
                "type": "function_call",
                "call_id": "call_02",
                "name": "lookup",
                "arguments": json.dumps({"q": EMAIL}),
            },
            {
                "type": "function_call_output",
                "call_id": "call_02",
                "output": [{"type": "input_text", "text": f"Phone {c['PHONE_NUMBER']}"}],
            },
            {"role": "user", "content": f"Also email {EMAIL} please."},
        ],
    }


async def test_pii_in_every_field_never_reaches_the_provider_and_structure_is_kept() -> None:
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(), analyzer=base_analyzer(False))
    body = every_field()
    async with client_for(app) as client:
        response = await client.post(RESPONSES, json=body)
    assert response.status_code == 200, response.text
    assert_nowhere([r.body for r in fake.requests])
    sent = fake.last_request.json
    items = sent["input"]
    # structural fields reach the provider exactly as written
    assert items[0]["content"][1] == body["input"][0]["content"][1]  # inline image
    assert items[0]["content"][3]["file_data"] == body["input"][0]["content"][3]["file_data"]
    assert items[1]["id"] == "rs_01"
    assert items[1]["encrypted_content"] == ENCRYPTED
    assert {k: items[2][k] for k in ("type", "id", "role", "status")} == {
        "type": "message",
        "id": "msg_01",
        "role": "assistant",
        "status": "completed",
    }
    assert (items[3]["id"], items[3]["call_id"], items[3]["name"]) == ("fc_01", "call_01", "lookup")
    assert items[4]["call_id"] == "call_01"
    assert sent["tools"][0]["name"] == "lookup"
    assert sent["tools"][0]["parameters"]["properties"]["iban"]["type"] == "string"
    assert (sent["text"]["format"]["name"], sent["text"]["verbosity"]) == ("answer", "low")
    assert (sent["tool_choice"], sent["store"], sent["model"]) == ("auto", False, "gpt-5-mini")
    # the identifiers are scanned as chat's are, and arguments stay JSON holding placeholders
    assert sent["user"] == "<EMAIL_ADDRESS_1>"
    assert sent["metadata"] == {"customer": "<EMAIL_ADDRESS_1>"}
    assert json.loads(items[3]["arguments"]) == {"iban": "<IBAN_CODE_1>", "note": "SSN <US_SSN_1>"}
    assert items[1]["summary"][0]["text"] == "The IBAN <IBAN_CODE_1> needs checking."
    # the answer (the fake calls the tool with the last user text) has the values back
    answer = response.json()
    assert answer["output"][0]["type"] == "function_call"
    assert json.loads(answer["output"][0]["arguments"]) == {"query": f"Also email {EMAIL} please."}
    assert answer["user"] == EMAIL  # the echoed request settings too
    assert answer["instructions"] == body["instructions"]


async def test_a_body_with_nothing_to_find_goes_on_byte_for_byte(
    fake_stack: tuple[FakeProvider, httpx.AsyncClient],
) -> None:
    fake, client = fake_stack
    raw = b'{ "model":"gpt-5-mini",\n "input":[{"role":"user","content":"caf\\u00e9 < tea"}], "store": false}'
    response = await client.post(RESPONSES, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert fake.last_request.body == raw


async def test_input_as_a_string_and_message_text_parts_scanned_as_one_text(
    fake_stack: tuple[FakeProvider, httpx.AsyncClient],
) -> None:
    fake, client = fake_stack
    response = await client.post(RESPONSES, json={"model": "m", "input": f"Write to {EMAIL} today"})
    assert fake.last_request.json["input"] == "Write to <EMAIL_ADDRESS_1> today"
    assert response.json()["output"][0]["content"][0]["text"] == f"Echo: Write to {EMAIL} today"
    # a value split across two parts, as the model reads them joined
    parts = [
        {"type": "input_text", "text": "write to maria.gon"},
        {"type": "input_text", "text": "zalez@example.com"},
    ]
    await client.post(RESPONSES, json={"model": "m", "input": [{"role": "user", "content": parts}]})
    sent = fake.last_request.json["input"][0]["content"]
    assert [p["text"] for p in sent] == ["write to <EMAIL_ADDRESS_1>", ""]


async def test_disguised_values_in_nested_responses_fields_never_reach_the_provider() -> None:
    """The attack list's disguises (full-width, zero-width, HTML entities), JSON-escaped in the body, in
    instructions, function call arguments, a function call output's parts and a reasoning summary."""
    fake = FakeProvider()
    app = RedactMiddleware(fake, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        for name, disguise in DISGUISES.items():
            value = disguise(attack_email("jose"))
            body = {
                "model": "gpt-5-mini",
                "instructions": f"Owner: {value}",
                "input": [
                    {"role": "user", "content": "Look it up"},
                    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": value}]},
                    {
                        "type": "function_call",
                        "call_id": "c1",
                        "name": "f",
                        "arguments": json.dumps({"a": [value]}),
                    },
                    {
                        "type": "function_call_output",
                        "call_id": "c1",
                        "output": [{"type": "input_text", "text": f"see {value}"}],
                    },
                ],
            }
            raw = json.dumps(body, ensure_ascii=True).encode()  # every non-ASCII character as \uXXXX
            response = await client.post(RESPONSES, content=raw, headers={"content-type": "application/json"})
            assert response.status_code == 200, name
            assert "garcia@example.com" not in clean(fake.last_request.body), name
            assert fake.last_request.body.count(b"<EMAIL_ADDRESS_1>") == 4, name  # each of the four places


async def test_roles_are_checked_and_an_unscanned_role_is_left_as_written() -> None:
    inner = ResponsesApp({"id": "resp_1", "object": "response", "output": []})
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    async with client_for(app) as client:
        for role in ("User", "tool", None):
            item: dict[str, Any] = {"type": "message", "content": f"mail {EMAIL}"}
            if role is not None:
                item["role"] = role
            response = await client.post(RESPONSES, json={"model": "m", "input": [item]})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["param"] == "input[0].role"
            assert EMAIL not in response.text
    assert inner.bodies == []
    only_users = RedactMiddleware(
        inner, config=RedactConfig(regex_only=True, roles=["user"]), analyzer=base_analyzer(True)
    )
    async with client_for(only_users) as client:
        body = {
            "model": "m",
            "input": [
                {"role": "developer", "content": f"Owner {EMAIL}"},
                {"role": "user", "content": f"Mail {EMAIL}"},
            ],
        }
        await client.post(RESPONSES, json=body)
    assert [i["content"] for i in inner.last["input"]] == [f"Owner {EMAIL}", "Mail <EMAIL_ADDRESS_1>"]


# -- answers -------------------------------------------------------------------------------------------


async def test_the_stream_is_restored_text_and_tool_arguments(
    fake_stack: tuple[FakeProvider, httpx.AsyncClient],
) -> None:
    fake, client = fake_stack
    prompt = f"Mail {EMAIL} and call {CANARIES['PHONE_NUMBER']} now"
    response = await client.post(RESPONSES, json={"model": "m", "input": prompt, "stream": True})
    payloads = sse_payloads(response.text)
    text = "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")
    assert text == f"Echo: {prompt}"
    assert [p["text"] for p in payloads if p["type"] == "response.output_text.done"] == [text]
    assert payloads[-1]["type"] == "response.completed"
    assert payloads[-1]["response"]["output"][0]["content"][0]["text"] == text
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))

    body = {"model": "m", "input": prompt, "stream": True, "tools": [LOOKUP]}
    response = await client.post(RESPONSES, json=body)
    payloads = sse_payloads(response.text)
    arguments = "".join(p["delta"] for p in payloads if p["type"] == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"query": prompt}
    done = [p for p in payloads if p["type"] == "response.function_call_arguments.done"]
    assert json.loads(done[0]["arguments"]) == {"query": prompt}
    assert json.loads(payloads[-1]["response"]["output"][0]["arguments"]) == {"query": prompt}
    assert_nowhere([r.body for r in fake.requests], {"EMAIL_ADDRESS": EMAIL})


def _events(*payloads: dict[str, Any]) -> list[bytes]:
    return [
        b"event: "
        + str(p["type"]).encode()
        + b"\ndata: "
        + orjson.dumps({**p, "sequence_number": n})
        + b"\n\n"
        for n, p in enumerate(payloads)
    ]


def scripted_stream() -> list[bytes]:
    """A Responses stream with a text item and a function call, placeholders split across deltas, the
    call's arguments escaping ``<`` as ``\\u003c``."""
    text_where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    call_where = {"item_id": "fc_1", "output_index": 1}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "Café: <EMAIL_ADDRESS_1>, <US_SSN_1> ✓", "annotations": []}
        ],
    }
    call = {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "f",
        "arguments": '{"to": "\\u003cEMAIL_ADDRESS_1\\u003e"}',
    }
    response = {"id": "resp_1", "object": "response", "status": "completed", "output": [message, call]}
    started = {**response, "status": "in_progress", "output": []}
    return _events(
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": {**message, "content": []}},
        {"type": "response.output_text.delta", **text_where, "delta": "Café: <EMAIL_", "logprobs": []},
        {
            "type": "response.output_text.delta",
            **text_where,
            "delta": "ADDRESS_1>, <US_SSN_1> ✓",
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            **text_where,
            "text": message["content"][0]["text"],
            "logprobs": [],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.output_item.added", "output_index": 1, "item": {**call, "arguments": ""}},
        {"type": "response.function_call_arguments.delta", **call_where, "delta": '{"to": "\\u003cEMAIL_AD'},
        {"type": "response.function_call_arguments.delta", **call_where, "delta": 'DRESS_1\\u003e"}'},
        {"type": "response.function_call_arguments.done", **call_where, "arguments": call["arguments"]},
        {"type": "response.output_item.done", "output_index": 1, "item": call},
        {"type": "response.completed", "response": response},
    )


async def test_a_stream_split_at_every_byte_boundary_is_restored() -> None:
    """The upstream's bytes cut in two at each offset (inside events, lines, UTF-8 characters and
    placeholders): the client always gets the same restored text, valid arguments, a restored final
    response and gapless sequence numbers."""
    whole = b"".join(scripted_stream())
    inner = ResponsesApp(*[[whole[:cut], whole[cut:]] for cut in range(len(whole) + 1)])
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    expected = f"Café: {EMAIL}, {SSN} ✓"
    async with client_for(app) as client:
        for cut in range(len(whole) + 1):
            body = {"model": "m", "input": f"Mail {EMAIL}, SSN {SSN}", "stream": True}
            response = await client.post(RESPONSES, json=body)
            payloads = sse_payloads(response.text)
            text = "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")
            assert text == expected, cut
            arguments = "".join(
                p["delta"] for p in payloads if p["type"] == "response.function_call_arguments.delta"
            )
            assert json.loads(arguments) == {"to": EMAIL}, cut
            final = payloads[-1]["response"]
            assert final["output"][0]["content"][0]["text"] == expected, cut
            assert json.loads(final["output"][1]["arguments"]) == {"to": EMAIL}, cut
            assert [p["sequence_number"] for p in payloads] == list(range(len(payloads))), cut
    assert len(inner.bodies) == len(whole) + 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_openai_sdk_over_uvicorn_through_the_router_gets_its_values_back(provider: str) -> None:
    """Passed through to an OpenAI deployment, or translated for an Anthropic one: the provider sees
    placeholders, ``responses.create`` and ``responses.stream`` (deltas and final response) the values."""
    fake = FakeProvider()
    upstream = ServerThread(fake)
    upstream.start()
    deployment = DeploymentConfig(
        provider=provider,
        model="up-model",
        base_url=upstream.base_url + ("/v1" if provider == "openai" else ""),
        api_key="test-key-not-real",  # type: ignore[arg-type]
        responses_api=True if provider == "openai" else None,
    )
    config = GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name="model", deployments=[deployment])], retry=RetryConfig(retries=0)
        ),
        redact=RedactConfig(regex_only=True),
    )
    app = build_app(config, env={})
    prompt = f"Mail {EMAIL} about {SSN}"
    try:
        async with served(app) as base_url:
            client = openai.AsyncOpenAI(
                base_url=f"{base_url}/ai/v1", api_key="test-key-not-real", max_retries=0
            )
            answer = await client.responses.create(model="model", input=prompt, max_output_tokens=64)
            assert answer.output_text == f"Echo: {prompt}"
            async with client.responses.stream(model="model", input=prompt, max_output_tokens=64) as stream:
                deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
                final = await stream.get_final_response()
            assert "".join(deltas) == f"Echo: {prompt}"
            assert final.output_text == f"Echo: {prompt}"
            async with client.responses.stream(
                model="model", input=prompt, tools=[LOOKUP], max_output_tokens=64
            ) as stream:
                called = await stream.get_final_response()
            call = called.output[0]
            assert call.type == "function_call"
            assert json.loads(call.arguments) == {"query": prompt}
            await client.close()
    finally:
        upstream.stop()
    assert len(fake.requests) == 3
    assert b"<EMAIL_ADDRESS_1>" in fake.requests[0].body
    assert_nowhere([r.body for r in fake.requests], {"EMAIL_ADDRESS": EMAIL, "US_SSN": SSN})


# -- refusals in OpenAI's shape ------------------------------------------------------------------------


async def test_block_mode_refuses_in_openais_error_shape_which_the_sdk_reads() -> None:
    inner = ResponsesApp({"id": "resp_1", "object": "response", "output": []})
    app = RedactMiddleware(
        inner, config=RedactConfig(regex_only=True, actions={"US_SSN": "block"}), analyzer=base_analyzer(True)
    )
    async with served(app) as base_url:
        client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="test-key-not-real", max_retries=0)
        items: Any = [
            {"role": "user", "content": "hello"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": json.dumps({"ssn": SSN})},
        ]
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            await client.responses.create(model="m", input=items)
        await client.close()
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "pii_blocked"
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "input[1].arguments.ssn"
    assert "US_SSN in input[1].arguments.ssn" in body["message"]
    assert SSN not in caught.value.response.text
    assert inner.bodies == []  # nothing went upstream


async def test_a_failed_analyzer_is_refused_in_openais_shape() -> None:
    inner = ResponsesApp({"id": "resp_1", "object": "response", "output": []})

    def broken() -> Any:
        raise RuntimeError("model files missing")

    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=broken)
    async with client_for(app) as client:
        response = await client.post(RESPONSES, json={"model": "m", "input": f"mail {EMAIL}"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "redaction_unavailable"
    assert inner.bodies == []


async def test_answer_scan_masks_new_pii_in_output_text_only() -> None:
    answer = {
        "id": "resp_1",
        "object": "response",
        "instructions": "Answer briefly.",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": ENCRYPTED},
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": f"Your SSN is {SSN}, mail <EMAIL_ADDRESS_1>.",
                        "annotations": [],
                    },
                    {"type": "refusal", "refusal": f"Not calling {CANARIES['PHONE_NUMBER']}."},
                ],
            },
        ],
    }
    inner = ResponsesApp(answer)
    app = RedactMiddleware(
        inner, config=RedactConfig(regex_only=True, scan_answer=True), analyzer=base_analyzer(True)
    )
    async with client_for(app) as client:
        response = await client.post(RESPONSES, json={"model": "m", "input": f"mail {EMAIL}"})
    output = response.json()["output"]
    assert output[1]["content"][0]["text"] == f"Your SSN is <US_SSN>, mail {EMAIL}."
    assert output[1]["content"][1]["refusal"] == "Not calling <PHONE_NUMBER>."
    assert output[0]["encrypted_content"] == ENCRYPTED


async def test_the_openai_sdk_reads_held_text_flushed_as_an_added_delta() -> None:
    """Text ending with what could have been a placeholder's start is held, then sent as one more delta
    before its ``.done`` event; the SDK takes the renumbered stream, its deltas and final response whole."""
    text = "Mail <EMAIL_ADDRESS_1> or <EMAIL"
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    response = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "m",
        "output": [message],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    started = {**response, "status": "in_progress", "output": []}
    events = _events(
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": {**message, "content": []}},
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        {"type": "response.output_text.delta", **where, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": response},
    )
    inner = ResponsesApp(events)
    app = RedactMiddleware(inner, config=RedactConfig(regex_only=True), analyzer=base_analyzer(True))
    expected = f"Mail {EMAIL} or <EMAIL"
    async with served(app) as base_url:
        client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="test-key-not-real", max_retries=0)
        async with client.responses.stream(model="m", input=f"Mail {EMAIL}") as stream:
            seen = [event async for event in stream]
            final = await stream.get_final_response()
        await client.close()
    deltas = [e for e in seen if e.type == "response.output_text.delta"]
    assert [e.delta for e in deltas] == [f"Mail {EMAIL} or ", "<EMAIL"]
    assert deltas[-1].snapshot == expected
    assert [e.sequence_number for e in seen] == list(range(len(events) + 1))
    assert final.output_text == expected
