"""FakeProvider speaks Anthropic's, Gemini's and Ollama's wire formats, with the same behaviours."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from asgi_aigw.testing import FakeBehaviour, FakeProvider, StreamingASGITransport

from .support import sse_payloads

#: The Messages API refuses requests without its version header, as the fake does.
VERSION = {"anthropic-version": "2023-06-01"}

ANTHROPIC = {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello there"}]}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}
GEMINI_PATH = "/v1beta/models/gemini-x"
OLLAMA = {"model": "llama", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
async def http(fake: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(fake), base_url="http://fake", headers=VERSION
    ) as client:
        yield client


async def test_anthropic_json_and_stream(http: httpx.AsyncClient) -> None:
    message = (await http.post("/v1/messages", json=ANTHROPIC)).json()
    assert message["type"] == "message"
    assert message["content"] == [{"type": "text", "text": "Echo: Hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 3
    stream = await http.post("/v1/messages", json={**ANTHROPIC, "stream": True})
    names = [line[7:] for line in stream.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == 3


async def test_anthropic_requires_max_tokens(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages", json={k: v for k, v in ANTHROPIC.items() if k != "max_tokens"})
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


async def test_anthropic_errors_and_cut_streams(http: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.enqueue(FakeBehaviour(status=529, error_message="Overloaded"))
    response = await http.post("/v1/messages", json=ANTHROPIC)
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    fake.enqueue(FakeBehaviour(cut_after=1))
    cut = await http.post("/v1/messages", json={**ANTHROPIC, "stream": True})
    assert cut.text.count("content_block_delta\n") == 1
    assert "message_stop" not in cut.text


async def test_gemini_generate_sse_and_json_array(http: httpx.AsyncClient) -> None:
    answer = (await http.post(f"{GEMINI_PATH}:generateContent", json=GEMINI)).json()
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "Echo: Hello there"}]
    assert answer["usageMetadata"]["candidatesTokenCount"] == 3
    sse = await http.post(f"{GEMINI_PATH}:streamGenerateContent?alt=sse", json=GEMINI)
    assert sse.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(sse.text.replace("\r\n", "\n"))
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == "Echo: Hello there"
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    array = await http.post(f"{GEMINI_PATH}:streamGenerateContent", json=GEMINI)
    assert len(orjson.loads(array.content)) == 3


async def test_gemini_errors_blocks_and_embeddings(http: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.enqueue(FakeBehaviour(status=429, error_message="Resource has been exhausted"))
    error = await http.post(f"{GEMINI_PATH}:generateContent", json=GEMINI)
    assert error.status_code == 429
    assert error.json() == {
        "error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}
    }
    fake.enqueue(FakeBehaviour(blocked=True))
    blocked = (await http.post(f"{GEMINI_PATH}:generateContent", json=GEMINI)).json()
    assert blocked["promptFeedback"] == {"blockReason": "SAFETY"}
    one = (
        await http.post("/v1beta/models/e:embedContent", json={"content": {"parts": [{"text": "x"}]}})
    ).json()
    assert len(one["embedding"]["values"]) == 64
    batch = {
        "requests": [
            {"model": "models/e", "content": {"parts": [{"text": t}]}, "outputDimensionality": 8}
            for t in "ab"
        ]
    }
    many = (await http.post("/v1beta/models/e:batchEmbedContents", json=batch)).json()
    assert [len(e["values"]) for e in many["embeddings"]] == [8, 8]


async def test_ollama_streams_by_default(http: httpx.AsyncClient) -> None:
    stream = await http.post("/api/chat", json=OLLAMA)
    assert stream.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in stream.text.splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == "Echo: Hello there"
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert lines[-1]["eval_count"] == 3
    one = (await http.post("/api/chat", json={**OLLAMA, "stream": False})).json()
    assert one["message"]["content"] == "Echo: Hello there"
    assert one["done_reason"] == "stop"


async def test_ollama_errors_and_embeddings(http: httpx.AsyncClient, fake: FakeProvider) -> None:
    fake.enqueue(FakeBehaviour(status=404, error_message='model "llama" not found, try pulling it first'))
    response = await http.post("/api/chat", json=OLLAMA)
    assert response.status_code == 404
    assert response.json() == {"error": 'model "llama" not found, try pulling it first'}
    fake.enqueue(FakeBehaviour(stream_error_after=1))
    failing = await http.post("/api/chat", json=OLLAMA)
    assert failing.text.splitlines()[-1] == '{"error":"an error was encountered while running the model"}'
    embedded = (await http.post("/api/embed", json={"model": "m", "input": ["a b", "c"]})).json()
    assert len(embedded["embeddings"]) == 2
    assert embedded["prompt_eval_count"] == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "Hello there"}]}),
        ("/v1/messages", ANTHROPIC),
        (f"{GEMINI_PATH}:generateContent", GEMINI),
        ("/api/chat", {**OLLAMA, "stream": False}),
    ],
)
async def test_every_format_counts_tokens_the_same(
    http: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    data = (await http.post(path, json=body)).json()
    prompt = (
        data.get("usage", {}).get("prompt_tokens")
        or data.get("usage", {}).get("input_tokens")
        or data.get("usageMetadata", {}).get("promptTokenCount")
        or data.get("prompt_eval_count")
    )
    assert prompt == 2 + 4 + 3
