"""Provider fidelity (issue 20): what the gateway sends is what each provider's real API accepts, and
what it cannot send is refused or reported, never silently lost.

Every request goes through ProviderRouter to FakeProvider, which refuses what the real APIs refuse
(Gemini's Schema keywords, Anthropic's temperature with top_p, unknown Anthropic fields).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from asgi_aigw.providers._gemini_schema import gemini_schema
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

#: The Messages API refuses requests without its version header, as the fake does.
VERSION = {"anthropic-version": "2023-06-01"}

ANTHROPIC_URL = "http://fake-anthropic.test"
GEMINI_URL = "http://fake-gemini.test"
OLLAMA_URL = "http://fake-ollama.test"
OPENAI_URL = "http://fake-openai.test/v1"

DEPLOYMENTS = {
    "claude": ("anthropic", "claude-test-1", ANTHROPIC_URL, "test-anthropic-key-0000"),
    "gemini": ("gemini", "gemini-test-flash", GEMINI_URL, "test-gemini-key-0000"),
    "gemini3": ("gemini", "gemini-3-test-pro", GEMINI_URL, "test-gemini-key-0000"),
    "llama": ("ollama", "llama-test:8b", OLLAMA_URL, None),
    "gpt": ("openai", "gpt-test-mini", OPENAI_URL, "test-openai-key-0000"),
}


def router_config() -> RouterConfig:
    return RouterConfig(
        models=[
            ModelConfig(
                name=alias,
                deployments=[DeploymentConfig(provider=provider, model=model, base_url=url, api_key=key)],  # type: ignore[arg-type]
            )
            for alias, (provider, model, url, key) in DEPLOYMENTS.items()
        ]
    )


@pytest.fixture
async def gateway(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    transport = StreamingASGITransport(fake)
    router = ProviderRouter(
        router_config(), transports={url: transport for _, _, url, _ in DEPLOYMENTS.values()}, env={}
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        yield c
    await router.aclose()


async def chat(client: httpx.AsyncClient, model: str, **fields: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello there"}], **fields}
    return await client.post("/v1/chat/completions", json=body)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    return dict(error)


# -- 1. Gemini tool schemas ---------------------------------------------------------------------------


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")  # additionalProperties: false, as strict clients send

    street: str
    city: str | None = None


class Booking(BaseModel):
    """Book a table."""

    model_config = ConfigDict(extra="forbid")

    name: str
    guests: int | None = None
    address: Address
    previous: list[Address] = []
    note: str | None = None


def booking_schema() -> dict[str, Any]:
    """What pydantic v2 writes for the model, with ``$schema`` as several clients add it."""
    schema = Booking.model_json_schema()
    assert "$defs" in schema
    assert schema["additionalProperties"] is False
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def tool(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "book", "description": "Book.", "parameters": schema}}]


async def test_the_fake_refuses_a_pydantic_schema_as_gemini_does(fake: FakeProvider) -> None:
    """The check is real: the raw pydantic schema in ``parameters`` is a 400 INVALID_ARGUMENT."""
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "book", "parameters": booking_schema()}]}],
    }
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url=GEMINI_URL) as client:
        answer = await client.post("/v1beta/models/gemini-test-flash:generateContent", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "Unknown name" in answer.json()["error"]["message"]


async def test_gemini_takes_pydantic_tool_schemas(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await chat(gateway, "gemini", tools=tool(booking_schema()))
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].json["tools"][0]["functionDeclarations"][0]["parameters"]
    assert sent == {
        "type": "object",
        "title": "Booking",
        "description": "Book a table.",
        "properties": {
            "name": {"type": "string", "title": "Name"},
            "guests": {"type": "integer", "title": "Guests", "nullable": True},
            "address": {
                "type": "object",
                "title": "Address",
                "properties": {
                    "street": {"type": "string", "title": "Street"},
                    "city": {"type": "string", "title": "City", "nullable": True},
                },
                "required": ["street"],
            },
            "previous": {
                "type": "array",
                "title": "Previous",
                "items": {
                    "type": "object",
                    "title": "Address",
                    "properties": {
                        "street": {"type": "string", "title": "Street"},
                        "city": {"type": "string", "title": "City", "nullable": True},
                    },
                    "required": ["street"],
                },
            },
            "note": {"type": "string", "title": "Note", "nullable": True},
        },
        "required": ["name", "address"],
    }


def test_type_lists_unions_and_consts_map_to_the_subset() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": ["string", "integer"]},
            "c": {"oneOf": [{"type": "string"}, {"type": "integer"}], "discriminator": {"propertyName": "x"}},
            "d": {"const": "fixed"},
            "e": {"allOf": [{"type": "number", "exclusiveMinimum": 0}], "description": "positive"},
        },
    }
    assert gemini_schema(schema, param="p")["properties"] == {
        "a": {"type": "string", "nullable": True},
        "b": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "c": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "d": {"enum": ["fixed"], "type": "string"},
        "e": {"type": "number", "description": "positive"},
    }


class Node(BaseModel):
    value: int
    children: list[Node] = []


async def test_a_recursive_schema_is_a_clear_400(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await chat(gateway, "gemini", tools=tool(Node.model_json_schema()))
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["param"] == "tools[0].function.parameters"
    assert "recursive" in error["message"]
    assert fake.requests == []  # refused before anything was sent


# -- 2. Anthropic temperature and top_p ---------------------------------------------------------------


async def test_the_fake_refuses_temperature_with_top_p_as_anthropic_does(fake: FakeProvider) -> None:
    body = {
        "model": "claude-test-1",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "top_p": 0.9,
    }
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(fake), base_url=ANTHROPIC_URL, headers=VERSION
    ) as client:
        answer = await client.post("/v1/messages", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_anthropic_gets_temperature_alone_when_both_are_given(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await chat(gateway, "claude", temperature=0.3, top_p=0.9)
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].json
    assert sent["temperature"] == 0.3
    assert "top_p" not in sent
    assert answer.headers["x-aigw-dropped-params"] == "top_p"


async def test_anthropic_gets_top_p_when_it_comes_alone(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await chat(gateway, "claude", top_p=0.9)
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1].json["top_p"] == 0.9
    assert "x-aigw-dropped-params" not in answer.headers


async def test_anthropic_temperature_above_one_is_a_400(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await chat(gateway, "claude", temperature=1.5)
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["param"] == "temperature"
    assert "between 0 and 1" in error["message"]
    assert fake.requests == []


# -- 3. response_format -------------------------------------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str
    population: int | None


async def test_gemini_json_schema_becomes_a_response_schema(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "strict": True, "schema": Answer.model_json_schema()},
    }
    answer = await chat(gateway, "gemini", response_format=response_format)
    assert answer.status_code == 200, answer.text
    config = fake.requests[-1].json["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "title": "Answer",
            "properties": {
                "city": {"type": "string", "title": "City"},
                "population": {"type": "integer", "title": "Population", "nullable": True},
            },
            "required": ["city", "population"],
        },
    }


async def test_gemini_json_object_is_json_mode(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await chat(gateway, "gemini", response_format={"type": "json_object"})
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1].json["generationConfig"] == {"responseMimeType": "application/json"}


async def test_anthropic_json_object_is_a_400_not_a_silent_drop(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await chat(gateway, "claude", response_format={"type": "json_object"})
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["param"] == "response_format"
    assert "no schema-less JSON mode" in error["message"]
    assert fake.requests == []


class Stop(BaseModel):
    city: str = Field(description="Where", max_length=40)
    nights: int = Field(ge=1)
    kind: Literal["hotel", "camping"]


class Trip(BaseModel):
    title: str
    stops: list[Stop]
    note: str | None = None


async def test_anthropic_json_schema_becomes_structured_outputs(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    # a pydantic model as the openai SDK sends it without strict: no additionalProperties, numeric and
    # string constraints, $defs: the fake refuses all three as Anthropic does unless converted
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "trip", "schema": Trip.model_json_schema()},
    }
    answer = await chat(gateway, "claude", response_format=response_format)
    assert answer.status_code == 200, answer.text
    assert "x-aigw-dropped-params" not in answer.headers
    sent = fake.requests[-1].json["output_config"]
    assert sent == {
        "format": {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "title": "Trip",
                "properties": {
                    "title": {"type": "string", "title": "Title"},
                    "stops": {"type": "array", "title": "Stops", "items": {"$ref": "#/$defs/Stop"}},
                    "note": {
                        "anyOf": [{"type": "string"}, {"type": "null"}],
                        "title": "Note",
                        "description": "{default: null}",
                    },
                },
                "additionalProperties": False,
                "required": ["title", "stops"],
                "$defs": {
                    "Stop": {
                        "type": "object",
                        "title": "Stop",
                        "properties": {
                            "city": {
                                "type": "string",
                                "description": "Where\n\n{maxLength: 40}",
                                "title": "City",
                            },
                            "nights": {"type": "integer", "title": "Nights", "description": "{minimum: 1}"},
                            "kind": {"enum": ["hotel", "camping"], "type": "string", "title": "Kind"},
                        },
                        "additionalProperties": False,
                        "required": ["city", "nights", "kind"],
                    }
                },
            },
        }
    }
    Trip.model_validate_json(answer.json()["choices"][0]["message"]["content"])


class Tagged(BaseModel):
    tags: dict[str, int]


class Tree(BaseModel):
    children: list[Tree]


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        (Tagged.model_json_schema(), "#/properties/tags, the object allows keys beyond its properties"),
        (Tree.model_json_schema(), "refers to itself"),
        ({}, "the schema has no type"),
    ],
)
async def test_anthropic_schemas_it_cannot_express_are_a_400(
    gateway: httpx.AsyncClient, fake: FakeProvider, schema: dict[str, Any], said: str
) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    answer = await chat(gateway, "claude", response_format=response_format)
    assert answer.status_code == 400
    error = error_of(answer)
    assert error["param"] == "response_format"
    assert said in error["message"]
    assert fake.requests == []


async def test_openai_sdk_parse_gets_a_parsed_answer_from_anthropic(fake: FakeProvider) -> None:
    transport = StreamingASGITransport(fake)
    router = ProviderRouter(
        router_config(), transports={url: transport for _, _, url, _ in DEPLOYMENTS.values()}, env={}
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(router))
    client = openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key="sk-test-not-a-real-key", http_client=http
    )
    async with http:
        completion = await client.chat.completions.parse(
            model="claude", messages=[{"role": "user", "content": "Plan a trip"}], response_format=Trip
        )
    await router.aclose()
    trip = completion.choices[0].message.parsed
    assert isinstance(trip, Trip)
    assert trip.stops == []
    # the SDK's strict schema (every object closed, every field required) went out converted
    assert fake.requests[-1].json["output_config"]["format"]["schema"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("tier", "sent"), [("auto", "auto"), ("default", "standard_only"), ("flex", None), ("priority", None)]
)
async def test_anthropic_service_tier_is_mapped_or_dropped_with_the_header(
    gateway: httpx.AsyncClient, fake: FakeProvider, tier: str, sent: str | None
) -> None:
    answer = await chat(gateway, "claude", service_tier=tier)
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1].json.get("service_tier") == sent
    assert ("service_tier" in answer.headers.get("x-aigw-dropped-params", "")) is (sent is None)


async def test_a_text_response_format_is_no_change(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await chat(gateway, "claude", response_format={"type": "text"})
    assert answer.status_code == 200, answer.text
    assert "x-aigw-dropped-params" not in answer.headers


# -- 4. n > 1 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude", "llama"])
async def test_n_above_one_is_a_400_where_one_choice_comes_back(
    gateway: httpx.AsyncClient, fake: FakeProvider, model: str
) -> None:
    answer = await chat(gateway, model, n=2)
    assert answer.status_code == 400
    assert error_of(answer)["param"] == "n"
    assert fake.requests == []


async def test_gemini_answers_n_choices(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await chat(gateway, "gemini", n=3)
    assert answer.status_code == 200, answer.text
    assert [c["index"] for c in answer.json()["choices"]] == [0, 1, 2]
    assert fake.requests[-1].json["generationConfig"]["candidateCount"] == 3


async def test_a_gemini_stream_with_n_above_one_is_a_400(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await chat(gateway, "gemini", n=2, stream=True)
    assert answer.status_code == 400
    assert error_of(answer)["param"] == "n"
    assert fake.requests == []


# -- 6. dropped parameters are named ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_fields_are_named_in_a_header(
    gateway: httpx.AsyncClient, fake: FakeProvider, stream: bool
) -> None:
    answer = await chat(gateway, "gemini", user="u-1", service_tier="flex", seed=3, stream=stream)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-dropped-params"] == "user,service_tier"
    sent = fake.requests[-1].json
    assert sent["generationConfig"]["seed"] == 3
    assert not {"user", "service_tier"} & set(sent)


async def test_anthropic_names_what_it_drops(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    messages = [{"role": "user", "content": "Hello there", "name": "alice"}]
    answer = await chat(gateway, "claude", messages=messages, seed=1, metadata={"k": "v"}, user="u-1")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-dropped-params"] == "seed,metadata,name"
    assert fake.requests[-1].json["metadata"] == {"user_id": "u-1"}


async def test_nothing_is_named_when_nothing_is_dropped(gateway: httpx.AsyncClient) -> None:
    for model in ("gpt", "gemini", "claude", "llama"):
        answer = await chat(gateway, model, temperature=0.5, logprobs=False, parallel_tool_calls=True)
        assert answer.status_code == 200, answer.text
        assert "x-aigw-dropped-params" not in answer.headers, model
    answer = await chat(gateway, "gpt", logprobs=True, service_tier="flex")
    assert "x-aigw-dropped-params" not in answer.headers  # OpenAI takes them as sent


async def test_ollama_names_a_tool_choice_it_cannot_force(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await chat(gateway, "llama", tools=tool({"type": "object"}), tool_choice="required")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-dropped-params"] == "tool_choice"


async def test_field_names_from_the_client_never_reach_a_header_raw(gateway: httpx.AsyncClient) -> None:
    answer = await chat(gateway, "gemini", **{"bad\r\nx-injected: 1": True, "ok_field": 1})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-dropped-params"] == "?,ok_field"
    assert "x-injected" not in answer.headers


# -- 5. GET /v1/models/{model} ------------------------------------------------------------------------


async def test_retrieve_a_model_with_the_openai_sdk(fake: FakeProvider) -> None:
    import openai

    router = ProviderRouter(router_config(), transports={}, env={})
    http = httpx.AsyncClient(transport=httpx.ASGITransport(router))
    client = openai.AsyncOpenAI(base_url="http://testserver/v1", api_key="test-key-0000", http_client=http)
    model = await client.models.retrieve("claude")
    assert (model.id, model.object, model.owned_by) == ("claude", "model", "anthropic")
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"
    await http.aclose()


@pytest.mark.parametrize("path", ["/v1/models/gemini", "/models/gemini"])
async def test_retrieve_a_model(gateway: httpx.AsyncClient, path: str) -> None:
    answer = await gateway.get(path)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"id", "object", "created", "owned_by"}
    assert (body["id"], body["object"], body["owned_by"]) == ("gemini", "model", "gemini")


async def test_an_unknown_model_is_a_404_in_the_openai_shape(gateway: httpx.AsyncClient) -> None:
    answer = await gateway.get("/v1/models/no-such-model")
    assert answer.status_code == 404
    error = error_of(answer)
    assert error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error"
    assert "no-such-model" in error["message"]


def test_a_retrieve_model_path_is_a_gateway_route() -> None:
    from asgi_aigw.kernel.routes import classify

    assert classify({"type": "http", "method": "GET", "path": "/ai/v1/models/claude"}) == "models"
    assert classify({"type": "http", "method": "GET", "path": "/shop/models/5"}) is None


# -- 7. client headers forwarded by an allow-list -----------------------------------------------------


async def test_beta_headers_reach_the_upstream(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    headers = {"anthropic-beta": "prompt-caching-2024-07-31", "x-other": "no", "x-api-key": "client-key-0000"}
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    answer = await gateway.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    received = fake.requests[-1].headers
    assert received["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "x-other" not in received
    assert received["x-api-key"] == "test-anthropic-key-0000"  # the client can never set credentials


async def test_forwarding_is_configurable_and_deployment_headers_win(fake: FakeProvider) -> None:
    config = RouterConfig(
        models=[
            ModelConfig(
                name="claude",
                deployments=[
                    DeploymentConfig(
                        provider="anthropic",
                        model="claude-test-1",
                        base_url=ANTHROPIC_URL,
                        api_key="test-anthropic-key-0000",  # type: ignore[arg-type]
                        headers={"X-Team": "ops"},
                    )
                ],
            )
        ],
        forward_headers=["X-Team", "X-Trace"],
    )
    seen: list[list[str]] = []

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get_list("x-team"))
            return await StreamingASGITransport(fake).handle_async_request(request)

    router = ProviderRouter(config, transports={ANTHROPIC_URL: Recording()}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-team": "client", "x-trace": "t-1", "anthropic-beta": "b"}
        answer = await c.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    received = fake.requests[-1].headers
    assert (received["x-team"], received["x-trace"]) == ("ops", "t-1")
    assert seen == [["ops"]]  # one x-team header, not the client's and the deployment's
    assert "anthropic-beta" not in received  # not on this router's list


def test_credentials_cannot_be_forwarded() -> None:
    with pytest.raises(ValueError, match="authorization"):
        RouterConfig(forward_headers=["Authorization"])


class NoArguments(BaseModel):
    pass


@pytest.mark.parametrize(
    "parameters",
    [NoArguments.model_json_schema(), {"type": "object", "properties": {}}, {"type": "object"}],
)
async def test_a_function_without_parameters_sends_none(
    gateway: httpx.AsyncClient, fake: FakeProvider, parameters: dict[str, Any]
) -> None:
    """Gemini refuses an empty object schema ("should be non-empty for OBJECT type")."""
    answer = await chat(gateway, "gemini", tools=tool(parameters))
    assert answer.status_code == 200, answer.text
    assert "parameters" not in fake.requests[-1].json["tools"][0]["functionDeclarations"][0]


async def test_properties_only_on_objects(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    """MCP servers' schemas put properties on strings and leave the type off objects."""
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "properties": {"x": {"type": "string"}}, "required": ["x"]},
            "b": {"properties": {"y": {"type": "integer"}}},
        },
    }
    answer = await chat(gateway, "gemini", tools=tool(schema))
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].json["tools"][0]["functionDeclarations"][0]["parameters"]["properties"]
    assert sent == {
        "a": {"type": "string"},
        "b": {"type": "object", "properties": {"y": {"type": "integer"}}},
    }


# -- answer ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["claude", "gemini", "llama"])
async def test_translated_answers_carry_chat_completion_ids(
    gateway: httpx.AsyncClient, fake: FakeProvider, model: str, stream: bool
) -> None:
    answer = await chat(gateway, model, stream=stream)
    assert answer.status_code == 200, answer.text
    if stream:
        events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: {")]
        ids = {orjson.loads(event)["id"] for event in events}
    else:
        ids = {answer.json()["id"]}
    assert len(ids) == 1
    (answer_id,) = ids
    assert answer_id.startswith("chatcmpl-")
    if model == "claude":
        assert answer_id.startswith("chatcmpl-msg_")  # Anthropic's own id kept, for tracing


# -- Anthropic prompt caching -------------------------------------------------------------------------

EPHEMERAL = {"type": "ephemeral"}


async def test_cache_breakpoints_reach_anthropic(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    messages = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "A long manual.", "cache_control": EPHEMERAL},
            ],
        },
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "Hello there", "cache_control": EPHEMERAL}]},
    ]
    answer = await chat(gateway, "claude", messages=messages)
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].json
    assert sent["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "A long manual.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "Be kind."},
    ]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello there", "cache_control": EPHEMERAL}]}
    ]


async def test_a_system_prompt_without_breakpoints_stays_a_string(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "A."}]},
        {"role": "system", "content": "B."},
        {"role": "user", "content": "Hello there"},
    ]
    answer = await chat(gateway, "claude", messages=messages)
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1].json["system"] == "A.\n\nB."


async def test_too_many_breakpoints_are_refused_as_anthropic_does(gateway: httpx.AsyncClient) -> None:
    part = {"type": "text", "text": "x", "cache_control": EPHEMERAL}
    answer = await chat(gateway, "claude", messages=[{"role": "user", "content": [part] * 5}])
    assert answer.status_code == 400
    assert "maximum of 4 blocks with cache_control" in error_of(answer)["message"]


# -- Gemini 3 thought signatures ----------------------------------------------------------------------

LOOKUP_TOOL = tool({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]})


async def test_the_fake_refuses_an_unsigned_function_call_as_gemini_3_does(fake: FakeProvider) -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "Find cats"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "book", "args": {"query": "cats"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "book", "response": {"output": "3"}}}]},
        ]
    }
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url=GEMINI_URL) as client:
        answer = await client.post("/v1beta/models/gemini-3-test-pro:generateContent", json=body)
    assert answer.status_code == 400
    assert "missing a thought_signature" in answer.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_thought_signatures_round_trip_in_the_tool_call_id(
    gateway: httpx.AsyncClient, fake: FakeProvider, stream: bool
) -> None:
    first = await chat(gateway, "gemini3", tools=LOOKUP_TOOL, stream=stream)
    assert first.status_code == 200, first.text
    if stream:
        events = [orjson.loads(line[6:]) for line in first.text.splitlines() if line.startswith("data: {")]
        calls = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls") or []]
    else:
        calls = first.json()["choices"][0]["message"]["tool_calls"]
    call = calls[0]
    assert "__thought__" in call["id"]
    assert all(c.isalnum() or c in "_-" for c in call["id"])  # an id any provider accepts
    messages = [
        {"role": "user", "content": "Hello there"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call["id"], "type": "function", "function": call["function"]}],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "3 cats"},
    ]
    second = await chat(gateway, "gemini3", tools=LOOKUP_TOOL, messages=messages)
    assert second.status_code == 200, second.text
    signature = fake.requests[-1].json["contents"][1]["parts"][0]["thoughtSignature"]
    assert base64.b64decode(signature, validate=True).startswith(b"\xfb\xff\xfe")


async def test_empty_nested_objects_and_stray_required_names(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    """Gemini refuses ``properties: {}`` at any depth and ``required`` names its properties lack."""
    schema = {
        "type": "object",
        "properties": {
            "options": {"type": "object", "properties": {}, "required": ["ghost"]},
            "query": {"type": "string"},
        },
        "required": ["query", "missing"],
    }
    answer = await chat(gateway, "gemini", tools=tool(schema))
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].json["tools"][0]["functionDeclarations"][0]["parameters"]
    assert sent == {
        "type": "object",
        "properties": {"options": {"type": "object"}, "query": {"type": "string"}},
        "required": ["query"],
    }
