"""Azure OpenAI through the gateway, against FakeProvider speaking Azure's format on its Azure paths:
deployment URLs with ``api-version``, the ``api-key`` header, the v1 API, Azure's errors and both kinds
of content filter; and the fake itself checked with the official SDK's Azure client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from asgi_aigw.kernel.errors import ConfigError
from asgi_aigw.router import ProviderRouter
from asgi_aigw.router.config import DeploymentConfig, ModelConfig, RouterConfig
from asgi_aigw.router.registry import ModelRegistry
from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

ENDPOINT = "http://fake-azure.test"
KEY = "azure-test-key-not-real-0000"
HELLO = [{"role": "user", "content": "Hello there"}]


def azure(model: str, deployment: str, **fields: Any) -> ModelConfig:
    fields.setdefault("base_url", ENDPOINT)
    fields.setdefault("api_key", KEY)
    return ModelConfig(
        name=model, deployments=[DeploymentConfig(provider="azure", model=deployment, **fields)]
    )


def config() -> RouterConfig:
    return RouterConfig(
        models=[
            azure("gpt", "prod-gpt4o"),
            azure("gpt-v1", "prod-gpt4o", api_version="v1"),
            azure(
                "gpt-preview", "prod-gpt4o", api_version="2025-04-01-preview", base_url=ENDPOINT + "/openai"
            ),
            azure("embed", "prod-embed"),
        ]
    )


@pytest.fixture
async def gateway(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    router = ProviderRouter(config(), transports={ENDPOINT: StreamingASGITransport(fake)}, env={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        yield c
    await router.aclose()


def chunks(text: str) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE answer (``[DONE]`` checked and left out)."""
    datas = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    return [orjson.loads(d) for d in datas[:-1]]


# -- requests as Azure takes them -----------------------------------------------------------------------


async def test_chat_goes_to_the_deployment_url_with_the_api_key_header(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    sent = fake.last_request
    assert sent.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent.query == "api-version=2024-10-21"
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    body = answer.json()
    assert body["choices"][0]["message"]["content"] == "Echo: Hello there"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["id"].startswith("chatcmpl-")
    # Azure's filter verdicts reach clients that read them
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert body["usage"]["completion_tokens"] == 3
    assert answer.headers["x-aigw-provider"] == "azure"


async def test_a_configured_api_version_and_an_endpoint_with_its_openai_path(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt-preview", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    assert fake.last_request.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert fake.last_request.query == "api-version=2025-04-01-preview"


async def test_the_v1_api_names_the_deployment_as_the_model(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt-v1", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    sent = fake.last_request
    assert (sent.path, sent.query) == ("/openai/v1/chat/completions", "")
    assert sent.json["model"] == "prod-gpt4o"
    assert sent.headers["api-key"] == KEY


async def test_a_stream_carries_one_chatcmpl_id_in_every_chunk(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    body = {"model": "gpt", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    answer = await gateway.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    assert fake.last_request.json["stream_options"] == {"include_usage": True}
    events = chunks(answer.text)
    ids = {event["id"] for event in events}
    assert len(ids) == 1
    assert ids.pop().startswith("chatcmpl-")
    # Azure's opening chunk (the prompt's verdicts, no id of its own) is kept, stamped with the stream's
    assert "prompt_filter_results" in events[0]
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[0]["model"] == "prod-gpt4o"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "Echo: Hello there"
    assert events[-1]["usage"]["prompt_tokens"] > 0


async def test_the_usage_chunk_is_left_out_when_the_client_did_not_ask(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    answer = await gateway.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": HELLO, "stream": True}
    )
    assert answer.status_code == 200, answer.text
    assert fake.last_request.json["stream_options"] == {"include_usage": True}  # asked for the log
    assert all("usage" not in e or e["usage"] is None for e in chunks(answer.text))


async def test_embeddings_go_to_the_deployment_url(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    answer = await gateway.post("/v1/embeddings", json={"model": "embed", "input": ["one", "two"]})
    assert answer.status_code == 200, answer.text
    sent = fake.last_request
    assert (sent.path, sent.query) == ("/openai/deployments/prod-embed/embeddings", "api-version=2024-10-21")
    assert sent.headers["api-key"] == KEY
    data = answer.json()["data"]
    assert [item["index"] for item in data] == [0, 1]
    assert answer.json()["usage"]["prompt_tokens"] == 2


async def test_the_openai_sdk_through_the_gateway(gateway: httpx.AsyncClient) -> None:
    client = openai.AsyncOpenAI(
        base_url="http://testserver/v1", api_key="sk-test-not-a-real-key", http_client=gateway
    )
    answer = await client.chat.completions.create(model="gpt", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: Hello there"
    stream = await client.chat.completions.create(model="gpt", messages=HELLO, stream=True)  # type: ignore[arg-type]
    pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "Echo: Hello there"


# -- content filter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_blocked_prompt_is_a_400_content_filter(
    gateway: httpx.AsyncClient, fake: FakeProvider, stream: bool
) -> None:
    fake.behaviour = FakeBehaviour(content_filter="prompt")
    answer = await gateway.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": HELLO, "stream": stream}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "content_filter"
    assert error["type"] == "invalid_request_error"
    assert "blocked the prompt (filtered: hate)" in error["message"]
    assert len(fake.requests) == 1  # not retried: the same prompt would be blocked again


async def test_a_blocked_prompt_in_the_anthropic_dialect(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(content_filter="prompt")
    body = {"model": "gpt", "max_tokens": 50, "messages": HELLO}
    answer = await gateway.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "error"
    assert "content filter blocked the prompt" in answer.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_answer_withheld_whole_is_a_400_content_filter(
    gateway: httpx.AsyncClient, fake: FakeProvider, stream: bool
) -> None:
    fake.behaviour = FakeBehaviour(content_filter="completion")
    answer = await gateway.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": HELLO, "stream": stream}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "content_filter"
    assert "withheld the answer (filtered: violence)" in error["message"]


async def test_an_answer_stopped_part_way_ends_with_content_filter(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.behaviour = FakeBehaviour(content_filter="partial")
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt", "messages": HELLO})
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == "Echo:"
    assert choice["content_filter_results"]["violence"]["filtered"] is True

    answer = await gateway.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": HELLO, "stream": True}
    )
    assert answer.status_code == 200, answer.text
    events = chunks(answer.text)
    assert len({e["id"] for e in events}) == 1
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "Echo:"


# -- errors --------------------------------------------------------------------------------------------


async def test_an_unknown_deployment_is_azures_404(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.azure_deployments = {"other": "gpt-4o-2024-08-06"}
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt", "messages": HELLO})
    assert answer.status_code == 404, answer.text
    error = answer.json()["error"]
    assert error["code"] == "DeploymentNotFound"
    assert "deployment for this resource does not exist" in error["message"]


async def test_answers_name_the_model_behind_the_deployment(
    gateway: httpx.AsyncClient, fake: FakeProvider
) -> None:
    fake.azure_deployments = {"prod-gpt4o": "gpt-4o-2024-08-06"}
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt", "messages": HELLO})
    assert answer.json()["model"] == "gpt-4o-2024-08-06"
    assert answer.headers["x-aigw-model"] == "gpt-4o-2024-08-06"


async def test_a_rate_limit_keeps_its_retry_after(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    config = RouterConfig(models=[azure("gpt", "prod-gpt4o")], retry={"retries": 0})  # type: ignore[arg-type]
    router = ProviderRouter(config, transports={ENDPOINT: StreamingASGITransport(fake)}, env={})
    fake.behaviour = FakeBehaviour(status=429, retry_after="7", error_message="Rate limit is exceeded.")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(router), base_url="http://testserver") as c:
        answer = await c.post("/v1/chat/completions", json={"model": "gpt", "messages": HELLO})
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert "Rate limit is exceeded." in answer.json()["error"]["message"]


async def test_the_key_never_comes_back_in_an_error(gateway: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.behaviour = FakeBehaviour(status=400, error_message=f"bad key {KEY}")
    answer = await gateway.post("/v1/chat/completions", json={"model": "gpt", "messages": HELLO})
    assert answer.status_code == 400
    assert KEY not in answer.text


# -- the fake speaks Azure's format -------------------------------------------------------------------


async def test_the_fake_answers_the_official_azure_client(fake: FakeProvider) -> None:
    http = httpx.AsyncClient(transport=StreamingASGITransport(fake))
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=ENDPOINT, api_key=KEY, api_version="2024-10-21", http_client=http
    )
    answer = await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: Hello there"
    assert fake.last_request.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert fake.last_request.headers["api-key"] == KEY
    fake.behaviour = FakeBehaviour(content_filter="prompt")
    with pytest.raises(openai.BadRequestError) as blocked:
        await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)  # type: ignore[arg-type]
    assert blocked.value.code == "content_filter"
    await http.aclose()


@pytest.mark.parametrize(
    ("path", "headers", "status", "code", "message"),
    [
        ("/openai/deployments/d/chat/completions?api-version=2024-10-21", {}, 401, "401", "Access denied"),
        ("/openai/deployments/d/chat/completions", {"api-key": KEY}, 404, "404", "Resource not found"),
        ("/openai/deployments/d/chat/completions?api-version=latest", {"api-key": KEY}, 400, "BadRequest", "API version not supported"),
        ("/openai/v1/chat/completions?api-version=2024-10-21", {"api-key": KEY}, 400, "BadRequest", "API version not supported"),
    ],
)  # fmt: skip
async def test_the_fake_refuses_what_azure_refuses(
    fake: FakeProvider, path: str, headers: dict[str, str], status: int, code: str, message: str
) -> None:
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url=ENDPOINT) as client:
        answer = await client.post(path, json={"model": "d", "messages": HELLO}, headers=headers)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == code
    assert message in error["message"]


# -- configuration -------------------------------------------------------------------------------------


def test_azure_needs_an_endpoint_and_a_key() -> None:
    with pytest.raises(ConfigError, match=r"no base_url.*AZURE_OPENAI_ENDPOINT"):
        ModelRegistry(RouterConfig(models=[azure("gpt", "d", base_url=None)]), env={})
    with pytest.raises(ConfigError, match=r"no API key.*AZURE_OPENAI_API_KEY"):
        ModelRegistry(RouterConfig(models=[azure("gpt", "d", api_key=None)]), env={})
    # an Entra ID token stands in for the key
    token = {"Authorization": "Bearer entra-test-token-not-real"}
    registry = ModelRegistry(RouterConfig(models=[azure("gpt", "d", api_key=None, headers=token)]), env={})
    assert registry.resolve("gpt").deployments[0].api_key is None


def test_api_version_is_azures_alone_and_checked() -> None:
    openai_model = ModelConfig(
        name="gpt",
        deployments=[DeploymentConfig(model="gpt-4o", api_key="sk-test-not-a-real-key", api_version="v1")],
    )
    with pytest.raises(ConfigError, match="only azure"):
        ModelRegistry(RouterConfig(models=[openai_model]), env={})
    with pytest.raises(ValueError, match="api_version"):
        azure("gpt", "d", api_version="yesterday")


def test_the_azure_sdk_variables_configure_it() -> None:
    env = {
        "AZURE_OPENAI_API_KEY": KEY,
        "AZURE_OPENAI_ENDPOINT": "https://example-resource.openai.azure.com/",
        "OPENAI_API_VERSION": "2025-04-01-preview",
    }
    deployment = ModelRegistry(RouterConfig(), env=env).resolve("azure/prod-gpt4o").deployments[0]
    assert (deployment.base_url, deployment.api_key) == ("https://example-resource.openai.azure.com", KEY)
    assert deployment.api_version == "2025-04-01-preview"
    # a key without an endpoint offers nothing
    registry = ModelRegistry(RouterConfig(), env={"AZURE_OPENAI_API_KEY": KEY})
    assert "azure" not in registry.prefix_providers()
    with pytest.raises(ConfigError, match="OPENAI_API_VERSION"):
        ModelRegistry(RouterConfig(), env={**env, "OPENAI_API_VERSION": "soon"})


async def test_top_k_from_an_anthropic_client_is_refused_as_for_openai(gateway: httpx.AsyncClient) -> None:
    body = {"model": "gpt", "max_tokens": 50, "messages": HELLO, "top_k": 5}
    answer = await gateway.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 400, answer.text
    assert "top_k has no equivalent at azure" in answer.json()["error"]["message"]


# -- the stream translator on Azure's recorded shapes ------------------------------------------------------

_ENV = '"created":1750697159,"id":"chatcmpl-BleatwEUn3D8","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"'
_OPENING = '{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}'
_ROLE = (
    '{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],'
    + _ENV
    + "}"
)
_PIECE = (
    '{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hi"},"finish_reason":null,"index":0}],'
    + _ENV
    + "}"
)
_STOP = '{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0}],' + _ENV + "}"
#: An asynchronous filter's annotation: a choice with offsets and verdicts, no delta, no id.
_ANNOTATION = '{"choices":[{"content_filter_offsets":{"check_offset":2,"start_offset":0,"end_offset":2},"content_filter_results":{"custom_blocklists":[{"filtered":true,"id":"list1"}]},"finish_reason":"content_filter","index":0}],"created":0,"id":"","model":"","object":""}'
_WITHHELD = (
    '{"choices":[{"content_filter_results":{"violence":{"filtered":true,"severity":"high"}},"delta":{},"finish_reason":"content_filter","index":0}],'
    + _ENV
    + "}"
)


def sse(*datas: str) -> bytes:
    return b"".join(b"data: " + d.encode() + b"\n\n" for d in datas) + b"data: [DONE]\n\n"


def translate(raw: bytes, step: int = 7) -> list[dict[str, Any]]:
    from asgi_aigw.providers.azure import AzureStreamTranslator

    translator = AzureStreamTranslator(include_usage=False)
    out: list[bytes] = []
    for i in range(0, len(raw), step):
        out.extend(translator.feed(raw[i : i + step]))
    out.extend(translator.close())
    assert translator.done
    assert out[-1] == b"data: [DONE]\n\n"
    return chunks(b"".join(out).decode())


def test_filter_chunks_take_the_streams_id_and_a_delta() -> None:
    events = translate(sse(_OPENING, _ROLE, _PIECE, _ANNOTATION))
    assert [e["id"] for e in events] == ["chatcmpl-BleatwEUn3D8"] * 4
    assert events[0]["prompt_filter_results"][0]["prompt_index"] == 0
    assert events[0]["model"] == "gpt-4o-2024-08-06"
    annotation = events[-1]
    assert annotation["object"] == "chat.completion.chunk"
    assert annotation["created"] == 1750697159
    assert annotation["choices"][0]["delta"] == {}
    # stopped part way by the asynchronous filter: the finish is kept, what was written stays written
    assert annotation["choices"][0]["finish_reason"] == "content_filter"


def test_an_answer_withheld_before_its_first_piece_raises_content_filter() -> None:
    from asgi_aigw.providers._translate import ContentFiltered

    with pytest.raises(ContentFiltered, match=r"filtered: violence"):
        translate(sse(_OPENING, _ROLE, _WITHHELD))
    with pytest.raises(ContentFiltered, match=r"filtered: custom_blocklists"):
        translate(sse(_OPENING, _ROLE, _ANNOTATION))


def test_a_plain_stream_passes_byte_for_byte_once_the_answer_flows() -> None:
    from asgi_aigw.providers.azure import AzureStreamTranslator

    translator = AzureStreamTranslator(include_usage=False)
    out = translator.feed(sse(_OPENING, _ROLE, _PIECE, _PIECE, _STOP))
    assert out[2:5] == [b"data: " + d.encode() + b"\n\n" for d in (_PIECE, _PIECE, _STOP)]
