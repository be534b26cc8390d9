"""Golden tests: ``reasoning_effort`` to each provider's thinking configuration, and the thinking text
that comes back as ``reasoning_content`` (JSON answers and stream deltas), with reasoning tokens in usage.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from asgi_aigw.kernel.context import Usage
from asgi_aigw.kernel.errors import InvalidRequest
from asgi_aigw.providers.anthropic import AnthropicAdapter
from asgi_aigw.providers.gemini import GeminiAdapter
from asgi_aigw.providers.ollama import OllamaAdapter

from .golden import (
    CLOCK,
    LOOKUP,
    TOOL_ROUND_TRIP,
    anthropic_sse,
    chunk,
    completion,
    deployment,
    gemini_sse,
    ids,
    ndjson,
    request,
    run_stream,
    usage_chunk,
)

ASK: dict[str, Any] = {"model": "alias", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
CLAUDE = deployment("anthropic", "claude-sonnet-4-5", "https://api.anthropic.com", "sk-ant-test-not-real")
FLASH = deployment("gemini", "gemini-2.5-flash", "https://generativelanguage.googleapis.com", "test-key")
GEMINI_3 = deployment("gemini", "gemini-3-pro-preview", "https://generativelanguage.googleapis.com", "k")
LLAMA = deployment("ollama", "qwen3:8b", "http://localhost:11434")


def anthropic() -> AnthropicAdapter:
    return AnthropicAdapter(clock=lambda: CLOCK, ids=ids())


def gemini() -> GeminiAdapter:
    return GeminiAdapter(clock=lambda: CLOCK, ids=ids())


def ollama() -> OllamaAdapter:
    return OllamaAdapter(clock=lambda: CLOCK, ids=ids())


def native(adapter: Any, dep: Any, body: dict[str, Any]) -> dict[str, Any]:
    req, data = request(body)
    payload: dict[str, Any] = orjson.loads(adapter.chat_request(dep, req, data, stream=False).content)
    return payload


def reasoning_choice(content: str, reasoning: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "index": 0,
        "message": {"role": "assistant", "content": content, "reasoning_content": reasoning},
        "logprobs": None,
        "finish_reason": finish,
    }


# -- Anthropic: requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 2048), ("high", 4096)]
)
def test_anthropic_effort_without_a_cap_thinks_and_keeps_room_for_the_answer(
    effort: str, budget: int
) -> None:
    payload = native(anthropic(), CLAUDE, {**ASK, "reasoning_effort": effort})
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": budget}
    # no cap was set: the default answer room (4096) on top of the thinking budget
    assert payload["max_tokens"] == budget + 4096


def test_anthropic_keeps_the_client_cap_and_thinks_within_half_of_it() -> None:
    payload = native(anthropic(), CLAUDE, {**ASK, "reasoning_effort": "high", "max_tokens": 4096})
    # the cap is what a budget layer reserved: it is never raised, thinking takes at most half
    assert payload["max_tokens"] == 4096
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    payload = native(anthropic(), CLAUDE, {**ASK, "reasoning_effort": "low", "max_completion_tokens": 9000})
    assert payload["max_tokens"] == 9000
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_anthropic_cap_too_small_for_thinking_is_a_400_naming_the_figures() -> None:
    req, body = request({**ASK, "reasoning_effort": "low", "max_tokens": 2000})
    with pytest.raises(InvalidRequest, match="output cap of at least 2048 tokens") as refused:
        anthropic().chat_request(CLAUDE, req, body, stream=False)
    assert refused.value.param == "max_tokens"
    assert "2000" in refused.value.message


def test_anthropic_effort_none_is_mapped_to_no_thinking() -> None:
    body = {**ASK, "reasoning_effort": "none", "temperature": 0.3}
    payload = native(anthropic(), CLAUDE, body)
    assert "thinking" not in payload
    assert payload["max_tokens"] == 4096
    assert payload["temperature"] == 0.3
    # mapped (to no thinking), so not reported as dropped
    req, data = request(body)
    assert anthropic().dropped_params(req, data) == []


def test_unknown_effort_is_a_400() -> None:
    for adapter, dep in ((anthropic(), CLAUDE), (gemini(), FLASH), (ollama(), LLAMA)):
        req, body = request({**ASK, "reasoning_effort": "extreme"})
        with pytest.raises(InvalidRequest, match="reasoning_effort 'extreme' is not one of") as refused:
            adapter.chat_request(dep, req, body, stream=False)
        assert refused.value.param == "reasoning_effort"


def test_anthropic_thinking_drops_the_sampling_fields_it_refuses() -> None:
    body = {**ASK, "reasoning_effort": "low", "temperature": 0.2, "top_p": 0.9, "top_k": 40}
    payload = native(anthropic(), CLAUDE, body)
    assert payload["thinking"]["type"] == "enabled"
    assert not {"temperature", "top_p", "top_k"} & set(payload)
    req, data = request(body)
    assert sorted(anthropic().dropped_params(req, data)) == ["temperature", "top_k", "top_p"]


def test_anthropic_thinking_keeps_temperature_1_and_a_top_p_it_accepts() -> None:
    payload = native(anthropic(), CLAUDE, {**ASK, "reasoning_effort": "low", "top_p": 0.97})
    assert payload["top_p"] == 0.97
    req, data = request({**ASK, "reasoning_effort": "low", "top_p": 0.97})
    assert anthropic().dropped_params(req, data) == []
    payload = native(anthropic(), CLAUDE, {**ASK, "reasoning_effort": "low", "temperature": 1})
    assert payload["temperature"] == 1


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "lookup"}}])
def test_anthropic_thinking_with_a_forced_tool_is_a_400(choice: Any) -> None:
    req, body = request({**ASK, "reasoning_effort": "low", "tools": [LOOKUP], "tool_choice": choice})
    with pytest.raises(InvalidRequest, match="cannot force a tool call while thinking") as refused:
        anthropic().chat_request(CLAUDE, req, body, stream=False)
    assert refused.value.param == "tool_choice"


def test_anthropic_tool_results_without_the_signed_turn_are_sent_without_thinking() -> None:
    body = {**TOOL_ROUND_TRIP, "reasoning_effort": "medium", "temperature": 0.2, "top_p": 0.9}
    payload = native(anthropic(), CLAUDE, body)
    # Anthropic would refuse thinking here (the tool-calling turn lacks its thinking block)
    assert "thinking" not in payload
    assert payload["messages"][1]["content"][0]["type"] == "tool_use"
    # without thinking, the usual rules: temperature wins over top_p
    assert payload["temperature"] == 0.2
    assert "top_p" not in payload
    req, data = request(body)
    assert anthropic().dropped_params(req, data) == ["reasoning_effort", "top_p"]
    # the turn that called the tool (the user's question last) thinks
    asking = {**TOOL_ROUND_TRIP, "messages": TOOL_ROUND_TRIP["messages"][:2], "reasoning_effort": "medium"}
    assert native(anthropic(), CLAUDE, asking)["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    req, data = request(asking)
    assert anthropic().dropped_params(req, data) == []


def test_anthropic_tool_results_with_thinking_blocks_keep_thinking() -> None:
    body = orjson.loads(orjson.dumps(TOOL_ROUND_TRIP))
    signed = {"type": "thinking", "thinking": "Look cats up.", "signature": "c2lnbmVkLWJ5LWNsYXVkZQ=="}
    body["messages"][2]["thinking_blocks"] = [signed]
    body["reasoning_effort"] = "medium"
    payload = native(anthropic(), CLAUDE, body)
    assert payload["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert payload["messages"][1]["content"][0] == signed
    assert payload["messages"][1]["content"][1]["type"] == "tool_use"
    req, data = request(body)
    assert anthropic().dropped_params(req, data) == []
    # without thinking, the blocks are not sent back
    del body["reasoning_effort"]
    payload = native(anthropic(), CLAUDE, body)
    assert payload["messages"][1]["content"][0]["type"] == "tool_use"


# -- Anthropic: answers -------------------------------------------------------------------------------

THINKING_ANSWER = {
    "id": "msg_01Think",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "Rayleigh scattering.", "signature": "EqQBCgIYAhIM"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        {"type": "text", "text": "Short wavelengths scatter more."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 40},
}


def test_anthropic_thinking_blocks_come_back_as_reasoning_content() -> None:
    req, _ = request(ASK)
    translated = anthropic().chat_response(CLAUDE, req, orjson.dumps(THINKING_ANSWER))
    assert orjson.loads(translated.body) == completion(
        "chatcmpl-msg_01Think",
        "claude-sonnet-4-5",
        reasoning_choice("Short wavelengths scatter more.", "Rayleigh scattering."),
        {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52},
    )


def test_anthropic_thinking_deltas_stream_as_reasoning_content() -> None:
    native_stream = anthropic_sse(
        {
            "type": "message_start",
            "message": {
                "id": "msg_01Think",
                "model": "claude-sonnet-4-5",
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Rayleigh"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": " scattering."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQB"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Blue."}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    )
    translator = anthropic().chat_stream(CLAUDE, request(ASK)[0], include_usage=True)
    events = run_stream(translator, native_stream, split=17)
    id, model = "chatcmpl-msg_01Think", "claude-sonnet-4-5"
    assert events == [
        chunk(id, model, {"role": "assistant", "content": ""}),
        chunk(id, model, {"reasoning_content": "Rayleigh"}),
        chunk(id, model, {"reasoning_content": " scattering."}),
        chunk(id, model, {"content": "Blue."}),
        chunk(id, model, {}, "stop"),
        usage_chunk(id, model, {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}),
        "[DONE]",
    ]


# -- Gemini ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "budget"), [("none", 0), ("minimal", 128), ("low", 1024), ("medium", 2048), ("high", 4096)]
)
def test_gemini_25_takes_a_thinking_budget(effort: str, budget: int) -> None:
    assert "generationConfig" not in native(gemini(), FLASH, ASK)  # none without reasoning_effort
    payload = native(gemini(), FLASH, {**ASK, "reasoning_effort": effort, "max_tokens": 8000})
    assert payload["generationConfig"] == {
        "maxOutputTokens": 8000,
        # thought summaries are asked for unless thinking is turned off
        "thinkingConfig": {"thinkingBudget": budget, "includeThoughts": effort != "none"},
    }


@pytest.mark.parametrize(("effort", "level"), [("none", "minimal"), ("low", "low"), ("high", "high")])
def test_gemini_3_takes_a_thinking_level(effort: str, level: str) -> None:
    payload = native(gemini(), GEMINI_3, {**ASK, "reasoning_effort": effort})
    assert payload["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": level,
        "includeThoughts": effort != "none",
    }


GEMINI_THOUGHTS = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "Rayleigh scattering.", "thought": True},
                    {"text": "Short waves scatter."},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 8,
        "candidatesTokenCount": 4,
        "thoughtsTokenCount": 30,
        "totalTokenCount": 42,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-thoughts",
}


def test_gemini_thought_parts_come_back_as_reasoning_content_with_reasoning_tokens() -> None:
    translated = gemini().chat_response(FLASH, request(ASK)[0], orjson.dumps(GEMINI_THOUGHTS))
    assert orjson.loads(translated.body) == completion(
        "chatcmpl-resp-thoughts",
        "gemini-2.5-flash",
        reasoning_choice("Short waves scatter.", "Rayleigh scattering."),
        {
            "prompt_tokens": 8,
            "completion_tokens": 34,
            "total_tokens": 42,
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    )
    assert translated.usage == Usage(8, 34, 42, reasoning_tokens=30)


def test_gemini_thought_parts_stream_as_reasoning_content() -> None:
    usage = GEMINI_THOUGHTS["usageMetadata"]
    native_stream = gemini_sse(
        {
            "candidates": [{"content": {"parts": [{"text": "Rayleigh.", "thought": True}], "role": "model"}}],
            "responseId": "resp-thoughts",
            "modelVersion": "gemini-2.5-flash",
        },
        {
            "candidates": [
                {"content": {"parts": [{"text": "Blue."}], "role": "model"}, "finishReason": "STOP"}
            ],
            "usageMetadata": usage,
        },
    )
    translator = gemini().chat_stream(FLASH, request(ASK)[0], include_usage=True)
    id, model = "chatcmpl-resp-thoughts", "gemini-2.5-flash"
    assert run_stream(translator, native_stream) == [
        chunk(id, model, {"role": "assistant", "content": ""}),
        chunk(id, model, {"reasoning_content": "Rayleigh."}),
        chunk(id, model, {"content": "Blue."}),
        chunk(id, model, {}, "stop"),
        usage_chunk(
            id,
            model,
            {
                "prompt_tokens": 8,
                "completion_tokens": 34,
                "total_tokens": 42,
                "completion_tokens_details": {"reasoning_tokens": 30},
            },
        ),
        "[DONE]",
    ]


# -- Ollama ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "think"),
    [("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high")],
)
def test_ollama_takes_think(effort: str, think: Any) -> None:
    assert "think" not in native(ollama(), LLAMA, ASK)  # none without reasoning_effort
    assert native(ollama(), LLAMA, {**ASK, "reasoning_effort": effort})["think"] == think


def test_ollama_thinking_comes_back_as_reasoning_content() -> None:
    answer = {
        "model": "qwen3:8b",
        "message": {"role": "assistant", "content": "Blue.", "thinking": "Rayleigh scattering."},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 10,
        "eval_count": 25,
    }
    translated = ollama().chat_response(LLAMA, request(ASK)[0], orjson.dumps(answer))
    assert orjson.loads(translated.body) == completion(
        "chatcmpl-1",
        "qwen3:8b",
        reasoning_choice("Blue.", "Rayleigh scattering."),
        {"prompt_tokens": 10, "completion_tokens": 25, "total_tokens": 35},
    )


def test_ollama_thinking_streams_as_reasoning_content() -> None:
    native_stream = ndjson(
        {
            "model": "qwen3:8b",
            "message": {"role": "assistant", "content": "", "thinking": "Rayleigh"},
            "done": False,
        },
        {
            "model": "qwen3:8b",
            "message": {"role": "assistant", "content": "", "thinking": "."},
            "done": False,
        },
        {"model": "qwen3:8b", "message": {"role": "assistant", "content": "Blue."}, "done": False},
        {
            "model": "qwen3:8b",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 10,
            "eval_count": 5,
        },
    )
    translator = ollama().chat_stream(LLAMA, request(ASK)[0], include_usage=False)
    id, model = "chatcmpl-1", "qwen3:8b"
    assert run_stream(translator, native_stream) == [
        chunk(id, model, {"role": "assistant", "content": ""}),
        chunk(id, model, {"reasoning_content": "Rayleigh"}),
        chunk(id, model, {"reasoning_content": "."}),
        chunk(id, model, {"content": "Blue."}),
        chunk(id, model, {}, "stop"),
        "[DONE]",
    ]


# -- Usage ------------------------------------------------------------------------------------------------


def test_openai_usage_reasoning_tokens_read_and_written_back() -> None:
    data = {
        "prompt_tokens": 10,
        "completion_tokens": 50,
        "total_tokens": 60,
        "completion_tokens_details": {"reasoning_tokens": 32, "audio_tokens": 0},
    }
    usage = Usage.from_openai(data)
    assert usage == Usage(10, 50, 60, reasoning_tokens=32)
    assert usage.to_openai() == {
        "prompt_tokens": 10,
        "completion_tokens": 50,
        "total_tokens": 60,
        "completion_tokens_details": {"reasoning_tokens": 32},
    }
    # no reasoning: no details, as before
    assert "completion_tokens_details" not in Usage(1, 2, 3).to_openai()
