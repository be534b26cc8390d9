"""The fake's Ollama wire format (Ollama's docs/api.md): ``POST /api/chat`` (NDJSON stream by default,
one object with ``"stream": false``) and ``POST /api/embed``."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.types import Receive, Send
from ._fake_text import TokenLogprob, fake_logprobs

if TYPE_CHECKING:
    from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest

_NDJSON = b"application/x-ndjson"
#: The ``think`` levels Ollama takes besides ``true`` and ``false``.
_LEVELS = ("low", "medium", "high")


def _error_payload(status: int, message: str) -> dict[str, Any]:
    return {"error": message}


def _created_at() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def logprobs_problem(body: dict[str, Any]) -> str | None:
    """Ollama's checks (server/routes.go, api/types.go): ``logprobs`` decodes as a bool and
    ``top_logprobs`` is 0-20 (applied only with ``logprobs``)."""
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        return "json: cannot unmarshal into Go struct field ChatRequest.logprobs of type bool"
    if top is not None and (not isinstance(top, int) or isinstance(top, bool)):
        return "json: cannot unmarshal into Go struct field ChatRequest.top_logprobs of type int"
    if isinstance(top, int) and not 0 <= top <= 20:
        return "top_logprobs must be between 0 and 20"
    return None


def logprobs_list(tokens: list[TokenLogprob]) -> list[dict[str, Any]]:
    """The ``logprobs`` of a chat response for ``tokens``, as Ollama encodes them: ``bytes`` and
    ``top_logprobs`` left out when empty."""
    out: list[dict[str, Any]] = []
    for token, logprob, alternatives in tokens:
        entry: dict[str, Any] = {"token": token, "logprob": logprob, "bytes": list(token.encode())}
        if alternatives:
            entry["top_logprobs"] = [
                {"token": alt, "logprob": alt_logprob, "bytes": list(alt.encode())}
                for alt, alt_logprob in alternatives
            ]
        out.append(entry)
    return out


def conversation(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(m.get("role")), str(m.get("content") or "")) for m in body["messages"] if isinstance(m, dict)
    ]


async def chat(
    fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, receive: Receive, send: Send
) -> None:
    body = request.json if isinstance(request.json, dict) else {}
    well_formed = body.get("model") and isinstance(body.get("messages"), list)
    problem = None if well_formed else "model and messages are required"
    think = body.get("think")
    if problem is None and think is not None and not isinstance(think, bool) and think not in _LEVELS:
        problem = f'invalid think value: {think!r} (must be true, false, "low", "medium" or "high")'
    problem = problem or logprobs_problem(body)
    if await fake.refuse(send, behaviour, _error_payload, problem):
        return
    model = str(body["model"])
    tools = [
        str(t["function"]["name"])
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    options = body.get("options")
    cap = options.get("num_predict") if isinstance(options, dict) else None
    messages = conversation(body)
    # thinking is generated first and counted in eval_count: num_predict bounds both
    thought, thought_pieces = fake.thinking(messages) if think else ("", [])
    if isinstance(cap, int) and thought:
        cap = max(cap - len(thought_pieces), 1)
    turn = fake.plan_turn(messages, tools, behaviour, cap)
    created_at = _created_at()
    stats = {
        "total_duration": 1_000_000,
        "load_duration": 10_000,
        "prompt_eval_count": turn.prompt_tokens,
        "prompt_eval_duration": 200_000,
        "eval_count": turn.completion_tokens + len(thought_pieces),
        "eval_duration": 700_000,
    }
    calls = (
        [{"function": {"name": turn.tool_call["name"], "arguments": turn.tool_call["arguments"]}}]
        if turn.tool_call
        else None
    )

    # the answer's token log probabilities, when asked (top_logprobs applies only with logprobs)
    tokens = fake_logprobs(turn.pieces, int(body.get("top_logprobs") or 0)) if body.get("logprobs") else []

    def line(message: dict[str, Any], done: bool, logprobs: list[TokenLogprob] | None = None) -> bytes:
        data: dict[str, Any] = {"model": model, "created_at": created_at, "message": message}
        if logprobs:
            data["logprobs"] = logprobs_list(logprobs)
        if done:
            data.update({"done_reason": "length" if turn.truncated else "stop", "done": True, **stats})
        else:
            data["done"] = False
        return orjson.dumps(data) + b"\n"

    if body.get("stream") is False:
        if behaviour.malformed:
            await fake.send_raw(
                send, 200, b'{"model": "' + model.encode() + b'", "message": {', b"application/json"
            )
            return
        message: dict[str, Any] = {"role": "assistant", "content": "" if calls else turn.text}
        if thought:
            message["thinking"] = thought
        if calls:
            message["tool_calls"] = calls
        answer = line(message, True, None if calls else tokens)
        await fake.send_raw(send, 200, answer.rstrip(b"\n"), b"application/json; charset=utf-8")
        return

    events = [line({"role": "assistant", "content": "", "thinking": p}, False) for p in thought_pieces]
    if calls:
        events.append(line({"role": "assistant", "content": "", "tool_calls": calls}, False))
    else:
        events.extend(
            line({"role": "assistant", "content": piece}, False, tokens[i : i + 1])
            for i, piece in enumerate(turn.pieces)
        )
    content_events = len(events)
    if behaviour.malformed:
        events.insert(1, b"{this is not json\n")
    if behaviour.stream_error_after is not None:
        events = events[: behaviour.stream_error_after]
        events.append(b'{"error":"an error was encountered while running the model"}\n')
    else:
        events.append(line({"role": "assistant", "content": ""}, True))
    await fake.stream(send, receive, behaviour, _NDJSON, events, content_events=content_events, head=0)


async def embed(fake: FakeProvider, request: ReceivedRequest, behaviour: FakeBehaviour, send: Send) -> None:
    from ._fake_text import count_tokens, embedding_size, fake_embedding

    body = request.json if isinstance(request.json, dict) else {}
    raw = body.get("input")
    problem = None if raw is not None and body.get("model") else "model and input are required"
    if await fake.refuse(send, behaviour, _error_payload, problem, malformed=b'{"embeddings": ['):
        return
    texts = [raw] if isinstance(raw, str) else [str(item) for item in raw or ()]
    dimensions = embedding_size(body.get("dimensions"))
    payload = {
        "model": body["model"],
        "embeddings": [fake_embedding(text, dimensions) for text in texts],
        "total_duration": 14_143_917,
        "load_duration": 1_019_500,
        "prompt_eval_count": sum(count_tokens(t) for t in texts),
    }
    await fake.send_json(send, 200, payload)
