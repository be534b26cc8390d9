"""The fake's Gemini wire format (ai.google.dev, Gemini API): ``models/{model}:generateContent``,
``:streamGenerateContent`` (SSE with ``alt=sse``, else a JSON array), ``:embedContent`` and
``:batchEmbedContents``."""

from __future__ import annotations

import base64
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from ..kernel.types import Receive, Send
from ._fake_text import TokenLogprob, fake_logprobs

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_payload(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}


#: The fields of Gemini's Schema object (ai.google.dev/api/caching#Schema), the OpenAPI 3.0 subset
#: ``functionDeclarations[].parameters`` and ``generationConfig.responseSchema`` take. The real API
#: answers anything else with 400 INVALID_ARGUMENT ``Unknown name "..."``.
_SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "propertyOrdering",
        "example",
    }
)
_SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})


def schema_problem(schema: Any, where: str) -> str | None:
    """What the real API says about the first thing ``schema`` has that a Schema object refuses."""
    if not isinstance(schema, dict):
        return f"Invalid value at '{where}': not a Schema object."
    if ("properties" in schema or "required" in schema) and str(schema.get("type", "")).lower() != "object":
        return f"* GenerateContentRequest.{where}.properties: only allowed for OBJECT type"
    if schema.get("properties") == {}:
        return f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
    for i, name in enumerate(schema.get("required") or []):
        if name not in (schema.get("properties") or {}):
            return f"* GenerateContentRequest.{where}.required[{i}]: property is not defined"
    for key, value in schema.items():
        here = f"{where}.{key}"
        if key not in _SCHEMA_FIELDS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
        if key == "type" and (not isinstance(value, str) or value.lower() not in _SCHEMA_TYPES):
            return f"Invalid value at '{here}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type)"
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                if problem := schema_problem(sub, f"{here}[{name}]"):
                    return problem
        elif key == "items" and (problem := schema_problem(value, here)):
            return problem
        elif key == "anyOf":
            for i, sub in enumerate(value if isinstance(value, list) else [value]):
                if problem := schema_problem(sub, f"{here}[{i}]"):
                    return problem
    return None


#: What the fake's thought signatures start with (decoded): base64 of it has ``+`` and ``/``, as real
#: signatures do, so a client that mangles base64 is caught.
_SIGNATURE_MAGIC = b"\xfb\xff\xfe"


def thought_signature(response_id: str) -> str:
    return base64.b64encode(_SIGNATURE_MAGIC + response_id.encode()).decode()


def _signed(part: dict[str, Any]) -> bool:
    try:
        return base64.b64decode(part.get("thoughtSignature") or "", validate=True).startswith(
            _SIGNATURE_MAGIC
        )
    except ValueError:
        return False


def signature_problem(contents: list[Any]) -> str | None:
    """Gemini 3's check (ai.google.dev, "Thought signatures"): in the current turn (since the last user
    content with text), the first function call of every model step carries the signature it came with."""
    start = 0
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if content.get("role") == "user" and any(isinstance(p, dict) and "text" in p for p in parts or []):
            start = i
    for position, content in enumerate(contents[start:], start):
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts") or [] if isinstance(p, dict) and "functionCall" in p]
        if calls and not _signed(calls[0]):
            name = calls[0]["functionCall"].get("name")
            return (
                "Function call is missing a thought_signature in functionCall parts. This is required for "
                "tools to work correctly, and missing thought_signature may lead to degraded model "
                f"performance. Additional data, function call `default_api:{name}` , position "
                f"{position + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                "for more details."
            )
    return None


def request_problem(body: dict[str, Any], model: str = "") -> str | None:
    """The 400 message of the real API for a generateContent body, or ``None``."""
    if not isinstance(body.get("contents"), list) or not body["contents"]:
        return "* GenerateContentRequest.contents: contents is not specified"
    if model.startswith("gemini-3") and (problem := signature_problem(body["contents"])):
        return problem
    for t, tool in enumerate(body.get("tools") or []):
        for d, declaration in enumerate(
            tool.get("functionDeclarations") or [] if isinstance(tool, dict) else []
        ):
            if "parameters" in declaration:
                where = f"tools[{t}].function_declarations[{d}].parameters"
                if problem := schema_problem(declaration["parameters"], where):
                    return problem
                if not declaration["parameters"].get("properties"):
                    return f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
    config = body.get("generationConfig")
    if isinstance(config, dict) and (problem := _thinking_problem(config.get("thinkingConfig"), model)):
        return problem
    if isinstance(config, dict) and (problem := _logprobs_problem(config)):
        return problem
    if isinstance(config, dict) and "responseSchema" in config:
        if config.get("responseMimeType") != "application/json":
            return (
                "* GenerateContentRequest.generation_config.response_mime_type: must be "
                "application/json when response_schema is set"
            )
        if problem := schema_problem(config["responseSchema"], "generation_config.response_schema"):
            return problem
    return None


_THINKING_LEVELS = frozenset({"minimal", "low", "medium", "high"})


def _logprobs_problem(config: dict[str, Any]) -> str | None:
    """The real API's checks of ``generationConfig.logprobs`` (ai.google.dev, GenerationConfig: "Only
    valid if responseLogprobs=True ... The number must be in the range of [0, 20]")."""
    if "logprobs" not in config:
        return None
    value = config["logprobs"]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 20:
        return "Invalid value at 'generation_config.logprobs': logprobs must be in the range of [0, 20]."
    if config.get("responseLogprobs") is not True:
        return "logprobs is only valid if response_logprobs is true."
    return None


def logprobs_result(tokens: list[TokenLogprob], top: int) -> dict[str, Any]:
    """A candidate's ``logprobsResult`` for ``tokens``, in the API's proto3 JSON: a
    ``logProbability`` of 0 is left out, as are ``topCandidates`` when no alternatives were asked."""
    chosen: list[dict[str, Any]] = []
    tops: list[dict[str, Any]] = []
    total = 0.0
    for token, logprob, alternatives in tokens:
        chosen.append(_token(token, logprob))
        tops.append({"candidates": [_token(alt, alt_logprob) for alt, alt_logprob in alternatives]})
        total += logprob
    result: dict[str, Any] = {"chosenCandidates": chosen}
    if top:
        result["topCandidates"] = tops
    if total:
        result["logProbabilitySum"] = total
    return result


def _token(token: str, logprob: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"token": token, "tokenId": zlib.crc32(token.encode()) % 256_000}
    if logprob:
        entry["logProbability"] = logprob
    return entry


def _thinking_problem(config: Any, model: str) -> str | None:
    """The real API's checks of ``thinkingConfig`` (ai.google.dev, "Gemini thinking")."""
    if config is None:
        return None
    if not isinstance(config, dict):
        return "Invalid value at 'generation_config.thinking_config': not a ThinkingConfig object."
    for key in config:
        if key not in ("thinkingBudget", "thinkingLevel", "includeThoughts"):
            return (
                f'Invalid JSON payload received. Unknown name "{key}" at '
                "'generation_config.thinking_config': Cannot find field."
            )
    if "thinkingBudget" in config and "thinkingLevel" in config:
        return "You can only set only one of thinking budget and thinking level."
    level = config.get("thinkingLevel")
    if level is not None and (not model.startswith("gemini-3") or str(level).lower() not in _THINKING_LEVELS):
        return "Thinking level is not supported for this model."
    budget = config.get("thinkingBudget")
    if budget is not None and (not isinstance(budget, int) or budget < -1):
        return "Invalid value at 'generation_config.thinking_config.thinking_budget'."
    return None


def _thinks(config: Any) -> bool:
    """Whether the request asked for thought summaries (and thinking is not turned off)."""
    thinking = config.get("thinkingConfig") if isinstance(config, dict) else None
    return (
        isinstance(thinking, dict)
        and bool(thinking.get("includeThoughts"))
        and thinking.get("thinkingBudget") != 0
    )


def _response_text(response: Any) -> str:
    if isinstance(response, dict) and isinstance(response.get("output"), str):
        return str(response["output"])
    return orjson.dumps(response).decode()


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    """``(role, text)`` pairs as the OpenAI format would count them."""
    out: list[tuple[str, str]] = []
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        out.append(
            (
                "system",
                "\n".join(str(p.get("text", "")) for p in system.get("parts") or [] if isinstance(p, dict)),
            )
        )
    for content in body["contents"]:
        if not isinstance(content, dict):
            continue
        role = "assistant" if content.get("role") == "model" else "user"
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
        results = [p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)]
        out.extend(("tool", _response_text(r.get("response"))) for r in results)
        texts = [str(p["text"]) for p in parts if "text" in p]
        if texts or not results:
            out.append((role, "\n".join(texts)))
    return out


async def dispatch(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
) -> None:
    resource, _, method = request.path.rpartition(":")
    model = resource.rsplit("/", 1)[-1]
    if method in ("generateContent", "streamGenerateContent"):
        await _generate(
            fake, request, behaviour, receive, send, model, stream=method == "streamGenerateContent"
        )
    elif method in ("embedContent", "batchEmbedContents"):
        await _embed(fake, request, behaviour, send, batch=method == "batchEmbedContents")
    else:
        await fake.send_json(send, 404, error_payload(404, f"Method {method} not found."))


async def _generate(
    fake: FakeProvider,
    request: ReceivedRequest,
    behaviour: FakeBehaviour,
    receive: Receive,
    send: Send,
    model: str,
    *,
    stream: bool,
) -> None:
    body = request.json if isinstance(request.json, dict) else {}
    problem = request_problem(body, model)
    if await fake.refuse(send, behaviour, error_payload, problem):
        return
    tools: list[str] = []
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    if body.get("tools") and mode != "NONE":
        for tool in body["tools"]:
            for declaration in tool.get("functionDeclarations") or [] if isinstance(tool, dict) else []:
                tools.append(str(declaration.get("name")))
    generation = body.get("generationConfig")
    cap = generation.get("maxOutputTokens") if isinstance(generation, dict) else None
    messages = conversation(body)
    # thoughts count against maxOutputTokens: the cap bounds thinking and answer together
    thought, thought_pieces = fake.thinking(messages) if _thinks(generation) else ("", [])
    if isinstance(cap, int) and thought:
        cap = max(cap - len(thought_pieces), 1)
    turn = fake.plan_turn(messages, tools, behaviour, cap)
    finish_reason = "MAX_TOKENS" if turn.truncated else "STOP"
    response_id = fake.new_id("")
    prompt = turn.prompt_tokens
    thoughts = len(thought_pieces)
    final_usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": turn.completion_tokens,
        "totalTokenCount": prompt + turn.completion_tokens + thoughts,
    }
    if thoughts:
        final_usage["thoughtsTokenCount"] = thoughts
    thought_part = [{"text": thought, "thought": True}] if thought else []
    # token log probabilities of the answer's pieces, when asked (the number of alternatives with them)
    logprobs = isinstance(generation, dict) and generation.get("responseLogprobs") is True
    top = int(generation.get("logprobs") or 0) if logprobs and isinstance(generation, dict) else 0
    scored = fake_logprobs(turn.pieces, top) if logprobs else []

    def response(
        parts: list[dict[str, Any]] | None,
        finish: str | None,
        usage: dict[str, Any],
        tokens: list[TokenLogprob] | None = None,
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"index": 0}
        if parts is not None:
            candidate["content"] = {"parts": parts, "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        if logprobs and tokens:
            candidate["logprobsResult"] = logprobs_result(tokens, top)
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id,
        }

    call_part: dict[str, Any] | None = (
        {"functionCall": {"name": turn.tool_call["name"], "args": turn.tool_call["arguments"]}}
        if turn.tool_call
        else None
    )
    if call_part is not None and model.startswith("gemini-3"):
        # Gemini 3 signs every function call step; the signature must come back with the call
        call_part["thoughtSignature"] = thought_signature(response_id)
    if behaviour.blocked:
        blocked: dict[str, Any] = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
            "modelVersion": model,
            "responseId": response_id,
        }
        responses = [blocked]
    elif call_part is not None:
        responses = [response([*thought_part, call_part], "STOP", final_usage)]
    else:
        pieces = turn.pieces
        running = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        # the thought summary comes first, in an event of its own, as Gemini streams it
        responses = [response(thought_part, None, running)] if thought_part else []
        responses.extend(
            response(
                [{"text": piece}],
                finish_reason if i == len(pieces) - 1 else None,
                final_usage if i == len(pieces) - 1 else running,
                scored[i : i + 1],
            )
            for i, piece in enumerate(pieces)
        )

    if not stream:
        if behaviour.malformed:
            await fake.send_raw(send, 200, b'{"candidates": [', b"application/json")
            return
        payload = responses[0]
        if call_part is None and not behaviour.blocked:
            payload = response([*thought_part, {"text": turn.text}], finish_reason, final_usage, scored)
            # candidateCount answers: one candidate each, all billed (candidatesTokenCount counts them all)
            count = (body.get("generationConfig") or {}).get("candidateCount") or 1
            if count > 1:
                candidate = payload["candidates"][0]
                payload["candidates"] = [{**candidate, "index": i} for i in range(count)]
                completion = turn.completion_tokens * count
                payload["usageMetadata"] = {
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": completion,
                    "totalTokenCount": prompt + completion,
                }
        await fake.send_json(send, 200, payload)
        return

    sse = "alt=sse" in request.query or parse_qs(request.query).get("alt") == ["sse"]
    if sse:
        events = [b"data: " + orjson.dumps(r) + b"\r\n\r\n" for r in responses]
        if behaviour.malformed:
            events.insert(1, b"data: {this is not json\r\n\r\n")
        if behaviour.stream_error_after is not None:
            events = events[: behaviour.stream_error_after]
            overloaded = error_payload(503, "The model is overloaded. Please try again later.")
            events.append(b"data: " + orjson.dumps(overloaded) + b"\r\n\r\n")
        content_type = b"text/event-stream"
    else:
        # without alt=sse the stream is one JSON array, written element by element
        events = [(b"[" if i == 0 else b",\r\n") + orjson.dumps(r) for i, r in enumerate(responses)] + [b"]"]
        content_type = b"application/json; charset=UTF-8"
    await fake.stream(send, receive, behaviour, content_type, events, content_events=len(responses), head=0)


async def _embed(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, send: Send, *, batch: bool
) -> None:
    from ._fake_text import embedding_size, fake_embedding

    body = request.json if isinstance(request.json, dict) else None
    items = (body.get("requests") if batch else [body]) if body else None
    well_formed = (
        isinstance(items, list)
        and items
        and all(isinstance(i, dict) and isinstance(i.get("content"), dict) for i in items)
    )
    problem = None if well_formed else "* EmbedContentRequest.content: content is not specified"
    if await fake.refuse(send, behaviour, error_payload, problem, malformed=b'{"embedding": {'):
        return
    vectors = []
    for item in items or ():
        text = "\n".join(
            str(p.get("text", "")) for p in item["content"].get("parts") or [] if isinstance(p, dict)
        )
        size = embedding_size(item.get("outputDimensionality"))
        vectors.append({"values": fake_embedding(text, size)})
    await fake.send_json(send, 200, {"embeddings": vectors} if batch else {"embedding": vectors[0]})
