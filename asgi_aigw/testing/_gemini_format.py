"""The fake's Gemini wire format (ai.google.dev, Gemini API): ``models/{model}:generateContent``,
``:streamGenerateContent`` (SSE with ``alt=sse``, else a JSON array), ``:embedContent`` and
``:batchEmbedContents``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from ..kernel.types import Receive, Send

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
    problem = (
        None
        if isinstance(body.get("contents"), list) and body["contents"]
        else "* GenerateContentRequest.contents: contents is not specified"
    )
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
    turn = fake.plan_turn(conversation(body), tools, behaviour, cap)
    finish_reason = "MAX_TOKENS" if turn.truncated else "STOP"
    response_id = fake.new_id("")
    prompt = turn.prompt_tokens
    final_usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": turn.completion_tokens,
        "totalTokenCount": prompt + turn.completion_tokens,
    }

    def response(
        parts: list[dict[str, Any]] | None, finish: str | None, usage: dict[str, Any]
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"index": 0}
        if parts is not None:
            candidate["content"] = {"parts": parts, "role": "model"}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id,
        }

    call_part = (
        {"functionCall": {"name": turn.tool_call["name"], "args": turn.tool_call["arguments"]}}
        if turn.tool_call
        else None
    )
    if behaviour.blocked:
        blocked = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
            "modelVersion": model,
            "responseId": response_id,
        }
        responses = [blocked]
    elif call_part is not None:
        responses = [response([call_part], "STOP", final_usage)]
    else:
        pieces = turn.pieces
        running = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        responses = [
            response(
                [{"text": piece}],
                finish_reason if i == len(pieces) - 1 else None,
                final_usage if i == len(pieces) - 1 else running,
            )
            for i, piece in enumerate(pieces)
        ]

    if not stream:
        if behaviour.malformed:
            await fake.send_raw(send, 200, b'{"candidates": [', b"application/json")
            return
        payload = responses[0]
        if call_part is None and not behaviour.blocked:
            payload = response([{"text": turn.text}], finish_reason, final_usage)
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
