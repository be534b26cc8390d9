"""Ollama's native API (``POST /api/chat``, ``POST /api/embed``) to and from the OpenAI format.

Wire format as documented in Ollama's ``docs/api.md``:

- request: ``messages`` of ``{role, content, images, tool_calls}`` (``images`` are base64 strings,
  ``tool_calls[].function.arguments`` an object, tool results ``{"role": "tool", "content",
  "tool_name"}``); ``tools`` in OpenAI's shape; ``format`` (``"json"`` or a JSON schema); sampling in
  ``options`` (``temperature``, ``top_p``, ``top_k``, ``num_predict``, ``stop``, ``seed``, ...);
  ``stream`` defaults to true, so it is always sent;
- answer: ``message``, ``done``, ``done_reason`` (``stop``, ``length``, ...), ``prompt_eval_count`` and
  ``eval_count`` (the token counts used as usage);
- stream: newline-delimited JSON objects of the same shape, the last with ``"done": true``;
- errors: ``{"error": "..."}`` with an HTTP status (also as a line of a stream that fails midway).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..context import Usage
from ..errors import GatewayError, InvalidRequest, UpstreamError
from ..models import ChatCompletionRequest, ChatMessage, EmbeddingRequest
from . import _translate as t
from .base import Deployment, TranslatedResponse, UpstreamRequest
from .errors import error_from_status

_DONE_REASONS = {"stop": "stop", "length": "length"}


def _user_message(message: ChatMessage) -> dict[str, Any]:
    content = message.content
    if content is None or isinstance(content, str):
        return {"role": "user", "content": content or ""}
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "image_url" and part.image_url is not None:
            inline = t.parse_data_url(part.image_url.url)
            if inline is None:
                raise InvalidRequest(
                    "Ollama takes images as base64 data, not URLs: send image_url parts as "
                    "data:<media type>;base64,<data>.",
                    param="messages",
                )
            images.append(inline[1])
        else:
            raise InvalidRequest(
                f"Content parts of type '{part.type}' cannot be sent to Ollama through this gateway; "
                "use text and image_url parts.",
                param="messages",
            )
    out: dict[str, Any] = {"role": "user", "content": "\n".join(texts)}
    if images:
        out["images"] = images
    return out


def _messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    names = t.tool_names_by_id(request.messages)
    out: list[dict[str, Any]] = []
    for message in request.messages:
        role = message.role
        if role in ("system", "developer"):
            out.append({"role": "system", "content": message.text()})
        elif role in ("tool", "function"):
            result: dict[str, Any] = {"role": "tool", "content": message.text()}
            if name := names.get(message.tool_call_id or "") or message.name:
                result["tool_name"] = name
            out.append(result)
        elif role == "assistant":
            assistant: dict[str, Any] = {"role": "assistant", "content": message.text()}
            if message.tool_calls:
                assistant["tool_calls"] = [
                    {
                        "function": {
                            "name": call.function.name,
                            "arguments": t.tool_arguments(call.function.arguments, call.function.name),
                        }
                    }
                    for call in message.tool_calls
                ]
            out.append(assistant)
        else:
            out.append(_user_message(message))
    return out


def _options(request: ChatCompletionRequest, body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if isinstance(body.get("top_k"), int):
        options["top_k"] = body["top_k"]
    if request.output_limit is not None:
        options["num_predict"] = request.output_limit
    if (stop := t.stop_list(request)) is not None:
        options["stop"] = stop
    if request.seed is not None:
        options["seed"] = request.seed
    if request.presence_penalty is not None:
        options["presence_penalty"] = request.presence_penalty
    if request.frequency_penalty is not None:
        options["frequency_penalty"] = request.frequency_penalty
    return options


def _format(request: ChatCompletionRequest) -> Any:
    response_format = request.response_format
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return "json"
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def _usage(data: dict[str, Any]) -> Usage | None:
    if "prompt_eval_count" not in data and "eval_count" not in data:
        return None
    try:
        prompt = int(data.get("prompt_eval_count") or 0)
        completion = int(data.get("eval_count") or 0)
    except (TypeError, ValueError):
        return None
    return Usage(prompt, completion, prompt + completion)


def _error_line(data: dict[str, Any]) -> GatewayError:
    return UpstreamError(
        f"ollama failed while answering: {t.upstream_error_message(data) or 'unknown error'}"
    )


class OllamaStreamTranslator:
    """``/api/chat`` NDJSON lines in, OpenAI chunks out."""

    __slots__ = ("_buffer", "_calls", "_ids", "_out")

    def __init__(self, out: t.ChunkStream, ids: t.IdFactory) -> None:
        self._out = out
        self._ids = ids
        self._buffer = b""
        self._calls = 0

    @property
    def usage(self) -> Usage | None:
        return self._out.usage

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._out.usage = value

    @property
    def done(self) -> bool:
        return self._out.done

    @done.setter
    def done(self, value: bool) -> None:
        self._out.done = value

    @property
    def upstream_model(self) -> str:
        """The model the stream reported (the deployment's until it does)."""
        return self._out.model

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\n" not in buffer:
            self._buffer = buffer
            return []
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        out: list[bytes] = []
        for line in lines:
            if line.strip() and not self._out.done:
                self._line(line, out)
        return out

    def close(self) -> list[bytes]:
        out: list[bytes] = []
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self._out.done:
            self._line(rest, out)
        return out

    def _line(self, line: bytes, out: list[bytes]) -> None:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UpstreamError("ollama sent a stream line that is not valid JSON.") from None
        if not isinstance(data, dict):
            return
        if "error" in data:
            raise _error_line(data)
        stream = self._out
        message = data.get("message")
        if isinstance(message, dict):
            stream.text(out, str(message.get("content") or ""))
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict):
                    continue
                position = self._calls
                self._calls += 1
                arguments = function.get("arguments")
                encoded = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
                call_id = str(call.get("id") or self._ids("call_"))
                stream.tool_call_start(out, position, call_id, str(function.get("name") or ""), encoded)
        if data.get("done"):
            stream.usage = _usage(data)
            reason = "tool_calls" if self._calls else _DONE_REASONS.get(str(data.get("done_reason")), "stop")
            stream.finish(out, reason)
            stream.end(out)


class OllamaAdapter:
    name = "ollama"
    default_base_url = "http://localhost:11434"
    requires_api_key = False

    def __init__(self, *, clock: t.Clock = t.default_clock, ids: t.IdFactory = t.random_id) -> None:
        self._clock = clock
        self._ids = ids

    def _headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if deployment.api_key:  # Ollama behind an authenticating proxy (or ollama.com)
            headers["authorization"] = f"Bearer {deployment.api_key}"
        headers.update(deployment.headers)
        return headers

    def native_chat(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        """The ``/api/chat`` request body for ``request``."""
        payload: dict[str, Any] = {"model": deployment.model, "messages": _messages(request)}
        if request.tools and request.tool_choice != "none":
            payload["tools"] = body.get("tools") or [
                tool.model_dump(exclude_none=True) for tool in request.tools
            ]
        if (fmt := _format(request)) is not None:
            payload["format"] = fmt
        if options := _options(request, body):
            payload["options"] = options
        if "keep_alive" in body:
            payload["keep_alive"] = body["keep_alive"]
        payload["stream"] = stream
        return payload

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        payload = self.native_chat(deployment, request, body, stream=stream)
        return UpstreamRequest(
            "POST", f"{deployment.base_url}/api/chat", self._headers(deployment), orjson.dumps(payload)
        )

    def chat_response(
        self, deployment: Deployment, request: ChatCompletionRequest, content: bytes
    ) -> TranslatedResponse:
        data = t.loads_object(content, "a chat response")
        if "error" in data:
            raise _error_line(data)
        message = data.get("message")
        if not isinstance(message, dict):
            raise UpstreamError("ollama answered with JSON that is not a chat response.")
        calls = []
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                call_id = str(call.get("id") or self._ids("call_"))
                calls.append(
                    t.tool_call(call_id, str(function.get("name") or ""), function.get("arguments") or {})
                )
        finish = "tool_calls" if calls else _DONE_REASONS.get(str(data.get("done_reason")), "stop")
        usage = _usage(data)
        model = t.text_or(data.get("model"), deployment.model)
        body = t.completion(
            id=self._ids("chatcmpl-"),
            created=t.now_int(self._clock),
            model=model,
            choices=[t.choice(0, str(message.get("content") or ""), calls or None, finish)],
            usage=usage,
        )
        return TranslatedResponse(body, usage, model)

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> OllamaStreamTranslator:
        out = t.ChunkStream(
            id=self._ids("chatcmpl-"),
            model=deployment.model,
            created=t.now_int(self._clock),
            include_usage=include_usage,
        )
        return OllamaStreamTranslator(out, self._ids)

    def native_embeddings(self, deployment: Deployment, request: EmbeddingRequest) -> dict[str, Any]:
        if isinstance(request.input, list) and request.input and not isinstance(request.input[0], str):
            raise InvalidRequest("Ollama embeds text only; send strings, not token ids.", param="input")
        payload: dict[str, Any] = {"model": deployment.model, "input": request.input}
        if request.dimensions:
            payload["dimensions"] = request.dimensions
        return payload

    def embeddings_request(
        self, deployment: Deployment, request: EmbeddingRequest, body: dict[str, Any]
    ) -> UpstreamRequest:
        payload = self.native_embeddings(deployment, request)
        return UpstreamRequest(
            "POST", f"{deployment.base_url}/api/embed", self._headers(deployment), orjson.dumps(payload)
        )

    def embeddings_response(
        self, deployment: Deployment, request: EmbeddingRequest, content: bytes
    ) -> TranslatedResponse:
        data = t.loads_object(content, "an embeddings response")
        if "error" in data:
            raise _error_line(data)
        embeddings = data.get("embeddings")
        if not isinstance(embeddings, list):
            raise UpstreamError("ollama answered with JSON that is not an embeddings response.")
        usage = _usage(data)
        model = t.text_or(data.get("model"), deployment.model)
        body = t.embeddings_body(
            [list(v) for v in embeddings],
            model,
            base64_encoded=request.encoding_format == "base64",
            usage=usage,
        )
        return TranslatedResponse(body, usage, model)

    def error(self, status: int, content: bytes, headers: dict[str, str]) -> GatewayError:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            data = None
        return error_from_status(self.name, status, t.upstream_error_message(data), headers=headers)
