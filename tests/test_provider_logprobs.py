"""Golden tests: token log probabilities to and from Gemini (``responseLogprobs``/``logprobs``,
``logprobsResult``) and Ollama (``logprobs``/``top_logprobs``), and FakeProvider's side of both."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.providers.gemini import GeminiAdapter
from asgi_aigw.providers.ollama import OllamaAdapter
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .golden import CLOCK, TEXT, chunk, deployment, gemini_sse, ids, ndjson, request, run_stream

GEMINI = deployment("gemini", "gemini-2.5-flash", "https://generativelanguage.googleapis.com", "test-key-0")
OLLAMA = deployment("ollama", "llama3.2", "http://localhost:11434")

#: "Hi" then " thère" (two bytes for è: bytes are UTF-8, not characters).
HI = [72, 105]
HELLO = list(b"Hello")
THERE = list(" thère".encode())


def gemini() -> GeminiAdapter:
    return GeminiAdapter(clock=lambda: CLOCK, ids=ids())


def ollama() -> OllamaAdapter:
    return OllamaAdapter(clock=lambda: CLOCK, ids=ids())


def entry(token: str, logprob: float, raw: list[int], *alternatives: dict[str, Any]) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": raw, "top_logprobs": list(alternatives)}


def alt(token: str, logprob: float, raw: list[int]) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": raw}


#: The OpenAI ``logprobs`` of "Hi thère" asked with ``top_logprobs: 2``.
HI_THERE = [
    entry("Hi", 0.0, HI, alt("Hi", 0.0, HI), alt("Hello", -2.5, HELLO)),
    entry(" thère", -0.25, THERE, alt(" thère", -0.25, THERE), alt(" you", -1.75, list(b" you"))),
]


def choice_logprobs(*content: dict[str, Any]) -> dict[str, Any]:
    return {"content": list(content), "refusal": None}


def logprob_chunk(id: str, model: str, text: str, logprobs: dict[str, Any]) -> dict[str, Any]:
    out = chunk(id, model, {"content": text})
    out["choices"][0]["logprobs"] = logprobs
    return out


# -- requests -----------------------------------------------------------------------------------------


def test_gemini_request_asks_for_logprobs_and_alternatives() -> None:
    req, body = request(TEXT, logprobs=True, top_logprobs=2)
    config = orjson.loads(gemini().chat_request(GEMINI, req, body, stream=False).content)["generationConfig"]
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 2)
    assert gemini().dropped_params(req, body) == []
    # logprobs alone: no alternatives asked (Gemini takes `logprobs` only with responseLogprobs)
    req, body = request(TEXT, logprobs=True)
    config = orjson.loads(gemini().chat_request(GEMINI, req, body, stream=True).content)["generationConfig"]
    assert config["responseLogprobs"] is True
    assert "logprobs" not in config


def test_ollama_request_sends_both_fields() -> None:
    req, body = request(TEXT, logprobs=True, top_logprobs=3)
    payload = orjson.loads(ollama().chat_request(OLLAMA, req, body, stream=True).content)
    assert (payload["logprobs"], payload["top_logprobs"]) == (True, 3)
    assert ollama().dropped_params(req, body) == []


ADAPTERS = [(gemini, GEMINI), (ollama, OLLAMA)]


@pytest.mark.parametrize(("adapter", "dep"), ADAPTERS)
def test_logprobs_false_asks_for_nothing(adapter: Any, dep: Any) -> None:
    req, body = request(TEXT, logprobs=False, top_logprobs=0)
    payload = orjson.loads(adapter().chat_request(dep, req, body, stream=False).content)
    assert "logprobs" not in payload
    assert not {"responseLogprobs", "logprobs"} & set(payload.get("generationConfig", {}))


@pytest.mark.parametrize(("adapter", "dep"), ADAPTERS)
def test_top_logprobs_without_logprobs_is_a_400(adapter: Any, dep: Any) -> None:
    req, body = request(TEXT, top_logprobs=2)
    with pytest.raises(InvalidRequest, match="needs logprobs: true") as refused:
        adapter().chat_request(dep, req, body, stream=False)
    assert refused.value.param == "top_logprobs"


# -- Gemini answers -----------------------------------------------------------------------------------


def gemini_tokens(*steps: tuple[str, float, list[tuple[str, float]]]) -> dict[str, Any]:
    """A ``logprobsResult`` as Gemini's proto3 JSON writes it: a ``logProbability`` of 0 left out."""

    def token(text: str, logprob: float) -> dict[str, Any]:
        out: dict[str, Any] = {"token": text, "tokenId": len(text)}
        if logprob:
            out["logProbability"] = logprob
        return out

    return {
        "topCandidates": [{"candidates": [token(t, p) for t, p in alts]} for _, _, alts in steps],
        "chosenCandidates": [token(t, p) for t, p, _ in steps],
    }


HI_STEP = ("Hi", 0.0, [("Hi", 0.0), ("Hello", -2.5)])
THERE_STEP = (" thère", -0.25, [(" thère", -0.25), (" you", -1.75)])


def gemini_answer(*candidates_tokens: dict[str, Any]) -> dict[str, Any]:
    candidates = [
        {
            "content": {"parts": [{"text": "Hi thère"}], "role": "model"},
            "finishReason": "STOP",
            "index": index,
            "logprobsResult": tokens,
            "avgLogprobs": -0.125,
        }
        for index, tokens in enumerate(candidates_tokens)
    ]
    return {
        "candidates": candidates,
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-lp",
    }


def test_gemini_answer_logprobs_become_openai_logprobs() -> None:
    req, _ = request(TEXT, logprobs=True, top_logprobs=2)
    native = gemini_answer(gemini_tokens(HI_STEP, THERE_STEP))
    body = orjson.loads(gemini().chat_response(GEMINI, req, orjson.dumps(native)).body)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi thère"},
            "logprobs": choice_logprobs(*HI_THERE),
            "finish_reason": "stop",
        }
    ]


def test_gemini_logprobs_without_alternatives_and_per_candidate() -> None:
    req, _ = request(TEXT, logprobs=True, n=2)
    only_chosen = {"chosenCandidates": gemini_tokens(HI_STEP)["chosenCandidates"]}
    other = {"chosenCandidates": gemini_tokens(THERE_STEP)["chosenCandidates"]}
    native = gemini_answer(only_chosen, other)
    choices = orjson.loads(gemini().chat_response(GEMINI, req, orjson.dumps(native)).body)["choices"]
    assert [c["logprobs"] for c in choices] == [
        choice_logprobs(entry("Hi", 0.0, HI)),
        choice_logprobs(entry(" thère", -0.25, THERE)),
    ]


def test_gemini_logprobs_not_asked_are_not_returned() -> None:
    req, _ = request(TEXT)
    native = gemini_answer(gemini_tokens(HI_STEP, THERE_STEP))
    body = orjson.loads(gemini().chat_response(GEMINI, req, orjson.dumps(native)).body)
    assert body["choices"][0]["logprobs"] is None


def gemini_event(text: str, step: tuple[str, float, list[tuple[str, float]]] | None, finish: bool) -> Any:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if step is not None:
        candidate["logprobsResult"] = gemini_tokens(step)
    if finish:
        candidate["finishReason"] = "STOP"
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "resp-s"}


@pytest.mark.parametrize("split", [None, 7])
def test_gemini_stream_writes_each_events_logprobs_on_its_chunk(split: int | None) -> None:
    native = gemini_sse(gemini_event("Hi", HI_STEP, False), gemini_event(" thère", THERE_STEP, True))
    req, _ = request(TEXT, stream=True, logprobs=True, top_logprobs=2)
    translator = gemini().chat_stream(GEMINI, req, include_usage=False)
    model, id = "gemini-2.5-flash", "chatcmpl-resp-s"
    assert run_stream(translator, native, split) == [
        chunk(id, model, {"role": "assistant", "content": ""}),
        logprob_chunk(id, model, "Hi", choice_logprobs(HI_THERE[0])),
        logprob_chunk(id, model, " thère", choice_logprobs(HI_THERE[1])),
        chunk(id, model, {}, "stop"),
        "[DONE]",
    ]


def test_gemini_stream_without_logprobs_asked_keeps_the_plain_chunks() -> None:
    native = gemini_sse(gemini_event("Hi", HI_STEP, False), gemini_event(" thère", THERE_STEP, True))
    req, _ = request(TEXT, stream=True)
    events = run_stream(gemini().chat_stream(GEMINI, req, include_usage=False), native)
    assert [e["choices"][0]["logprobs"] for e in events[:-1]] == [None] * 4
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["Hi", " thère"]


# -- Ollama answers -----------------------------------------------------------------------------------

#: Ollama's ``logprobs``: the second entry as Ollama encodes it with nothing in bytes and alternatives.
OLLAMA_LOGPROBS = [
    {
        "token": "Hi",
        "logprob": 0.0,
        "bytes": HI,
        "top_logprobs": [alt("Hi", 0.0, HI), alt("Hello", -2.5, HELLO)],
    },
    {"token": " thère", "logprob": -0.25},
]
OLLAMA_CONTENT = [HI_THERE[0], entry(" thère", -0.25, THERE)]


def test_ollama_answer_logprobs_become_openai_logprobs() -> None:
    native = {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "Hi thère"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 4,
        "eval_count": 2,
        "logprobs": OLLAMA_LOGPROBS,
    }
    req, _ = request(TEXT, logprobs=True, top_logprobs=2)
    choice = orjson.loads(ollama().chat_response(OLLAMA, req, orjson.dumps(native)).body)["choices"][0]
    assert choice["logprobs"] == choice_logprobs(*OLLAMA_CONTENT)
    assert choice["message"]["content"] == "Hi thère"


def test_ollama_stream_writes_each_lines_logprobs_on_its_chunk() -> None:
    def line(content: str, logprobs: list[dict[str, Any]] | None, **more: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"model": "llama3.2", "message": {"role": "assistant", "content": content}}
        if logprobs is not None:
            out["logprobs"] = logprobs
        return {**out, "done": False, **more}

    native = ndjson(
        line("Hi", OLLAMA_LOGPROBS[:1]),
        line(" thère", OLLAMA_LOGPROBS[1:]),
        line("", None, done=True, done_reason="stop", prompt_eval_count=4, eval_count=2),
    )
    req, _ = request(TEXT, stream=True, logprobs=True)
    events = run_stream(ollama().chat_stream(OLLAMA, req, include_usage=False), native, 5)
    model, id = "llama3.2", "chatcmpl-1"
    assert events == [
        chunk(id, model, {"role": "assistant", "content": ""}),
        logprob_chunk(id, model, "Hi", choice_logprobs(OLLAMA_CONTENT[0])),
        logprob_chunk(id, model, " thère", choice_logprobs(OLLAMA_CONTENT[1])),
        chunk(id, model, {}, "stop"),
        "[DONE]",
    ]


# -- FakeProvider -------------------------------------------------------------------------------------


async def post(fake: FakeProvider, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(transport=StreamingASGITransport(fake), base_url="http://fake.test") as c:
        return await c.post(path, json=body)


GENERATE = "/v1beta/models/gemini-test:generateContent"
CONTENTS = [{"role": "user", "parts": [{"text": "Hello there, friend"}]}]


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ({"logprobs": 2}, "only valid if response_logprobs is true"),
        ({"responseLogprobs": False, "logprobs": 2}, "only valid if response_logprobs is true"),
        ({"responseLogprobs": True, "logprobs": 21}, "range of [0, 20]"),
        ({"responseLogprobs": True, "logprobs": -1}, "range of [0, 20]"),
    ],
)
async def test_fake_gemini_refuses_what_gemini_refuses(config: dict[str, Any], said: str) -> None:
    answer = await post(FakeProvider(), GENERATE, {"contents": CONTENTS, "generationConfig": config})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert said in error["message"]


async def test_fake_gemini_returns_a_logprobs_result_when_asked() -> None:
    config = {"responseLogprobs": True, "logprobs": 2}
    answer = await post(FakeProvider(), GENERATE, {"contents": CONTENTS, "generationConfig": config})
    assert answer.status_code == 200, answer.text
    result = answer.json()["candidates"][0]["logprobsResult"]
    chosen = result["chosenCandidates"]
    assert [c["token"] for c in chosen] == ["Echo:", " Hello", " there,", " friend"]
    # proto3 JSON: the first token's logProbability of 0 is left out
    assert "logProbability" not in chosen[0]
    assert chosen[1]["logProbability"] == -1.0
    assert [len(step["candidates"]) for step in result["topCandidates"]] == [2, 2, 2, 2]
    plain = await post(FakeProvider(), GENERATE, {"contents": CONTENTS})
    assert "logprobsResult" not in plain.json()["candidates"][0]


async def test_fake_gemini_stream_events_carry_their_own_tokens() -> None:
    body = {"contents": CONTENTS, "generationConfig": {"responseLogprobs": True}}
    answer = await post(FakeProvider(), "/v1beta/models/gemini-test:streamGenerateContent?alt=sse", body)
    events = [orjson.loads(line[6:]) for line in answer.text.split("\r\n\r\n") if line.startswith("data: ")]
    for event in events:
        candidate = event["candidates"][0]
        tokens = [c["token"] for c in candidate["logprobsResult"]["chosenCandidates"]]
        assert tokens == [candidate["content"]["parts"][0]["text"]]
        assert "topCandidates" not in candidate["logprobsResult"]  # no alternatives asked
    assert len(events) == 4


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be between 0 and 20"),
        ({"logprobs": "yes"}, "ChatRequest.logprobs of type bool"),
    ],
)
async def test_fake_ollama_refuses_what_ollama_refuses(fields: dict[str, Any], said: str) -> None:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hello"}], **fields}
    answer = await post(FakeProvider(), "/api/chat", body)
    assert answer.status_code == 400
    assert said in answer.json()["error"]


@pytest.mark.parametrize("stream", [False, True])
async def test_fake_ollama_returns_logprobs_when_asked(stream: bool) -> None:
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "Hello there"}],
        "logprobs": True,
        "top_logprobs": 1,
        "stream": stream,
    }
    answer = await post(FakeProvider(), "/api/chat", body)
    assert answer.status_code == 200, answer.text
    lines = [orjson.loads(line) for line in answer.text.splitlines() if line.strip()]
    entries = [e for line in lines for e in line.get("logprobs") or ()]
    assert [e["token"] for e in entries] == ["Echo:", " Hello", " there"]
    assert entries[1] == {
        "token": " Hello",
        "logprob": -1.0,
        "bytes": list(b" Hello"),
        "top_logprobs": [{"token": " Hello", "logprob": -1.0, "bytes": list(b" Hello")}],
    }


def test_ollama_thinking_line_tokens_go_on_an_empty_content_chunk() -> None:
    thought = {"token": "Hmm", "logprob": -0.5, "bytes": list(b"Hmm")}
    native = ndjson(
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": "", "thinking": "Hmm"},
            "done": False,
        }
        | {"logprobs": [thought]},
        {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True},
    )
    req, _ = request(TEXT, stream=True, logprobs=True, reasoning_effort="low")
    events = run_stream(ollama().chat_stream(OLLAMA, req, include_usage=False), native)
    model, id = "llama3.2", "chatcmpl-1"
    assert events[1:3] == [
        chunk(id, model, {"reasoning_content": "Hmm"}),
        logprob_chunk(id, model, "", choice_logprobs({**thought, "top_logprobs": []})),
    ]
