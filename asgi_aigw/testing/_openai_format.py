"""The fake's OpenAI wire format: Chat Completions (JSON and SSE), Embeddings, Models."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.types import Receive, Send

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest

_FINGERPRINT = "fp_fake0001"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


def is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 families), which refuse ``max_tokens``."""
    return re.match(r"(o\d|gpt-5)(\b|-|$)", model) is not None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _parts_problem(messages: list[Any]) -> str | None:
    """OpenAI's 400 for a text part whose text is not a string (its wording, from the API's answers)."""
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for c, part in enumerate(content if isinstance(content, list) else ()):
            text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else ""
            if not isinstance(text, str):
                got = "null" if text is None else type(text).__name__
                return (
                    f"Invalid type for 'messages[{m}].content[{c}].text': expected a string, "
                    f"but got {got} instead."
                )
    return None


def _error_payload(status: int, message: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": "rate_limit_exceeded" if status == 429 else None,
        }
    }


@dataclass(frozen=True)
class Flavour:
    """Where an OpenAI-compatible server's wire format departs from OpenAI's own."""

    #: The server's error body for a status and message.
    error: Callable[[int, str], dict[str, Any]] = _error_payload
    #: The model answers name (Azure: the deployment's model); unset: the request's ``model``.
    model: str | None = None
    #: Whether the body must name a ``model`` (Azure's deployment URLs name it instead).
    model_required: bool = True
    #: Body fields the server refuses, and its answer to one: ``(status, body)``.
    refused_fields: tuple[str, ...] = ()
    refusal: Callable[[str, Any], tuple[int, dict[str, Any]]] | None = None
    #: Whether the server refuses a message's ``name`` and ``n`` other than 1 (with ``refusal``).
    refuses_names: bool = False
    single_choice: bool = False
    #: Azure's content filter verdicts: ``prompt_filter_results`` and each choice's
    #: ``content_filter_results``, and a stream that opens with the prompt's verdicts.
    filter_results: bool = False
    #: Usage on a stream's finish chunk whatever the request asked (Mistral).
    usage_on_finish: bool = False


OPENAI = Flavour()

#: What Azure's content filter says of text it let through, and of text it stopped.
SAFE_VERDICTS: dict[str, Any] = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}
FILTERED_VERDICTS: dict[str, Any] = {**SAFE_VERDICTS, "violence": {"filtered": True, "severity": "high"}}


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def chat(
    fake: FakeProvider,
    request: ReceivedRequest,
    behaviour: FakeBehaviour,
    receive: Receive,
    send: Send,
    flavour: Flavour = OPENAI,
) -> None:
    body = request.json if isinstance(request.json, dict) else {}
    problem = (
        None
        if isinstance(body.get("messages"), list) and (body.get("model") or not flavour.model_required)
        else "Invalid body: 'model' and 'messages' are required."
    )
    model = flavour.model or str(body.get("model"))
    if problem is None:
        problem = _parts_problem(body["messages"])
    if problem is None and "max_tokens" in body and is_reasoning_model(model):
        problem = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    if await _refused_field(fake, send, body, flavour):
        return
    if await fake.refuse(send, behaviour, flavour.error, problem):
        return
    if flavour.filter_results and behaviour.content_filter == "prompt":
        await fake.send_json(send, 400, azure_prompt_filtered())
        return
    messages = [
        (str(m.get("role")), _text(m.get("content"))) for m in body["messages"] if isinstance(m, dict)
    ]
    tools = []
    if body.get("tools") and body.get("tool_choice") != "none":
        tools = [t["function"]["name"] for t in body["tools"] if isinstance(t, dict) and "function" in t]
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    turn = fake.plan_turn(messages, tools, behaviour, cap)
    completion_id = fake.new_id("chatcmpl-")
    created = fake.now()
    tool_calls: list[dict[str, Any]] | None = None
    if turn.tool_call is not None:
        tool_calls = [
            {
                "id": fake.new_id("call_"),
                "type": "function",
                "function": {
                    "name": turn.tool_call["name"],
                    "arguments": orjson.dumps(turn.tool_call["arguments"]).decode(),
                },
            }
        ]
    finish = "tool_calls" if tool_calls else "length" if turn.truncated else "stop"
    # Azure's filter on the answer: all of it withheld, or stopped part way
    withheld = flavour.filter_results and behaviour.content_filter == "completion"
    if flavour.filter_results and behaviour.content_filter in ("completion", "partial"):
        keep = 0 if withheld else max(1, len(turn.pieces) // 2)
        turn.pieces = turn.pieces[:keep]
        turn.text = "".join(turn.pieces)
        tool_calls = None
        finish = "content_filter"

    def verdicts(last: bool = False) -> dict[str, Any]:
        return FILTERED_VERDICTS if last and finish == "content_filter" else SAFE_VERDICTS

    if not body.get("stream"):
        if behaviour.malformed:
            await fake.send_raw(
                send, 200, b'{"id": "' + completion_id.encode() + b'", "choices": [', b"application/json"
            )
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool_calls or withheld else turn.text,
            "refusal": None,
            "annotations": [],
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        answer_choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish,
        }
        if flavour.filter_results:
            answer_choice["content_filter_results"] = verdicts(last=True)
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [answer_choice],
            "usage": _usage(turn.prompt_tokens, turn.completion_tokens),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        if flavour.filter_results:
            payload["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE_VERDICTS}]
        await fake.send_json(send, 200, payload, [(b"x-request-id", f"req_{completion_id[9:]}".encode())])
        return

    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    envelope = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        if flavour.filter_results:
            opening = delta.get("role") is not None
            choice["content_filter_results"] = {} if opening else verdicts(last=finish_reason is not None)
        data: dict[str, Any] = {**envelope, "choices": [choice]}
        if include_usage:
            data["usage"] = None
        if flavour.usage_on_finish and finish_reason is not None:
            data["usage"] = _usage(turn.prompt_tokens, turn.completion_tokens)
        return b"data: " + orjson.dumps(data) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "" if not tool_calls else None, "refusal": None})]
    head = 1
    if flavour.filter_results:
        # Azure opens a stream with the prompt's verdicts, in a chunk with no id, model or choices
        opening = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE_VERDICTS}],
        }
        events.insert(0, b"data: " + orjson.dumps(opening) + b"\n\n")
        head = 2
    if tool_calls:
        call = tool_calls[0]
        events.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        events.append(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]})
        )
        content_events = 2
    else:
        events.extend(chunk({"content": piece}) for piece in turn.pieces)
        content_events = len(turn.pieces)
    if behaviour.malformed:
        events.insert(head + 1, b"data: {this is not json\n\n")
    events.append(chunk({}, finish))
    if include_usage:
        usage_chunk = {
            **envelope,
            "choices": [],
            "usage": _usage(turn.prompt_tokens, turn.completion_tokens),
        }
        events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    await fake.stream(
        send,
        receive,
        behaviour,
        b"text/event-stream; charset=utf-8",
        events,
        content_events=content_events,
        head=head,
    )


async def _refused_field(fake: FakeProvider, send: Send, body: dict[str, Any], flavour: Flavour) -> bool:
    """Answer the server's refusal of a body field it does not take; True if it answered."""
    if flavour.refusal is None:
        return False
    refused = next((name for name in flavour.refused_fields if name in body), None)
    messages = body.get("messages")
    named = isinstance(messages, list) and any(isinstance(m, dict) and "name" in m for m in messages)
    if refused is None and flavour.refuses_names and named:
        refused = "messages[].name"
    if refused is None and flavour.single_choice and body.get("n", 1) != 1:
        refused = "n"
    if refused is None:
        return False
    status, payload = flavour.refusal(refused, body.get(refused))
    await fake.send_json(send, status, payload)
    return True


def azure_error(status: int, message: str) -> dict[str, Any]:
    """Azure OpenAI's error body: a code (often the status as a string) and a message."""
    code = {400: "BadRequest", 404: "404", 429: "429"}.get(status, str(status))
    return {"error": {"code": code, "message": message}}


def azure_prompt_filtered() -> dict[str, Any]:
    """Azure's answer to a prompt its content filter blocks, as its API returns it."""
    return {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our content "
            "filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    **SAFE_VERDICTS,
                    "hate": {"filtered": True, "severity": "high"},
                    "jailbreak": {"filtered": False, "detected": False},
                },
            },
        }
    }


def mistral_extra_field(name: str, value: Any) -> tuple[int, dict[str, Any]]:
    """Mistral's 422 for a body field its API does not take."""
    detail = {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted"}
    return 422, {
        "object": "error",
        "message": {"detail": [{**detail, "input": value}]},
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def groq_unsupported(name: str, value: Any) -> tuple[int, dict[str, Any]]:
    """Groq's 400 for a field its OpenAI compatibility page lists as unsupported."""
    detail = (
        "'n' : number must be at most 1" if name == "n" else f"'{name}' : property '{name}' is unsupported"
    )
    return 400, {"error": {"message": detail, "type": "invalid_request_error"}}


GROQ = Flavour(
    refused_fields=("logprobs", "top_logprobs", "logit_bias"),
    refusal=groq_unsupported,
    refuses_names=True,
    single_choice=True,
)

MISTRAL = Flavour(
    refused_fields=("stream_options", "max_completion_tokens"),
    refusal=mistral_extra_field,
    usage_on_finish=True,
)


async def embeddings(
    fake: FakeProvider,
    request: ReceivedRequest,
    behaviour: FakeBehaviour,
    send: Send,
    flavour: Flavour = OPENAI,
) -> None:
    from ._fake_text import count_tokens, embedding_base64, embedding_size, fake_embedding

    body = request.json if isinstance(request.json, dict) else {}
    raw_input = body.get("input")
    well_formed = raw_input is not None and (body.get("model") or not flavour.model_required)
    problem = None if well_formed else "Invalid body: 'model' and 'input' are required."
    malformed = b'{"object": "list", "data": ['
    if await fake.refuse(send, behaviour, flavour.error, problem, malformed=malformed):
        return
    texts = [raw_input] if isinstance(raw_input, str) else [str(item) for item in raw_input or ()]
    dimensions = embedding_size(body.get("dimensions"))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = fake_embedding(text, dimensions)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_base64(vector) if as_base64 else vector,
            }
        )
    tokens = sum(count_tokens(t) for t in texts)
    payload = {
        "object": "list",
        "data": data,
        "model": flavour.model or body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    await fake.send_json(send, 200, payload)


async def models(fake: FakeProvider, send: Send) -> None:
    created = 1_700_000_000
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "fake"}
        for name in (fake.default_model, "fake-embedding")
    ]
    await fake.send_json(send, 200, {"object": "list", "data": data})
