"""Ollama's native API (``POST /api/chat``, ``POST /api/embed``) to and from the OpenAI format.

Wire format as documented in Ollama's ``docs/api.md``:

- request: ``messages`` of ``{role, content, images, tool_calls}`` (``images`` are base64 strings,
  ``tool_calls[].function.arguments`` an object, tool results ``{"role": "tool", "content",
  "tool_name"}``); ``tools`` in OpenAI's shape; ``format`` (``"json"`` or a JSON schema); sampling in
  ``options`` (``temperature``, ``top_p``, ``top_k``, ``num_predict``, ``stop``, ``seed``, ...);
  ``stream`` defaults to true, so it is always sent; ``think`` (``true``/``false``, or ``"low"``,
  ``"medium"``, ``"high"`` for models with levels); ``logprobs`` and ``top_logprobs`` (0-20, Ollama
  0.12.11 and later);
- answer: ``message`` (with ``thinking``, the thinking text, when the model thought), ``done``,
  ``logprobs`` (when asked: ``{token, logprob, bytes, top_logprobs}`` per generated token),
  ``done_reason`` (``stop``, ``length``, ...), ``prompt_eval_count`` and
  ``eval_count`` (the token counts used as usage);
- stream: newline-delimited JSON objects of the same shape, the last with ``"done": true``;
- errors: ``{"error": "..."}`` with an HTTP status (also as a line of a stream that fails midway).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError
from ..kernel.models import ChatCompletionRequest, ChatMessage, EmbeddingRequest
from . import _logprobs as lp
from . import _reasoning as r
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


#: Ollama's ``options`` names for the OpenAI sampling parameters it takes.
_OPTIONS: dict[t.SamplingParameter, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_tokens": "num_predict",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def _format(request: ChatCompletionRequest) -> Any:
    response_format = request.response_format
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return "json"
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if spec is not None and not isinstance(spec, dict):
            raise InvalidRequest(
                "response_format json_schema must be an object with the JSON Schema in its schema field.",
                param="response_format",
            )
        schema = (spec or {}).get("schema")
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


class _LineDecoder:
    """Cuts an NDJSON stream into its non-blank lines, whatever the chunk boundaries."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed_data(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return list(filter(bytes.strip, lines))  # blank lines carry nothing


class OllamaStreamTranslator(t.NativeStreamTranslator):
    """``/api/chat`` NDJSON lines in, OpenAI chunks out."""

    __slots__ = ("_calls", "_ids", "_logprobs")

    not_json = "ollama sent a stream line that is not valid JSON."
    terminator = b"\n"

    def __init__(self, out: t.ChunkStream, ids: t.IdFactory, *, logprobs: bool = False) -> None:
        super().__init__(out, _LineDecoder())
        self._ids = ids
        self._calls = 0
        #: the client asked for log probabilities: each line carries those of its tokens
        self._logprobs = logprobs

    def _event(self, data: Any, out: list[bytes]) -> None:
        if not isinstance(data, dict):
            return
        if "error" in data:
            raise _error_line(data)
        stream = self._out
        message = data.get("message")
        if isinstance(message, dict):
            if isinstance(thinking := message.get("thinking"), str):
                stream.reasoning(out, thinking)
            text = str(message.get("content") or "")
            if self._logprobs and (content := lp.from_ollama(data.get("logprobs"))):
                stream.text_logprobs(out, text, lp.choice_logprobs(content))
            else:
                stream.text(out, text)
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


class OllamaAdapter(t.NativeAdapter):
    name = "ollama"
    default_base_url = "http://localhost:11434"
    # a key is sent as a bearer token, for an Ollama behind an authenticating proxy (or ollama.com)
    requires_api_key = False
    reads = frozenset(
        {
            "temperature",
            "top_p",
            "stop",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "tools",
            "tool_choice",
            "response_format",
            "keep_alive",
            "n",
            "reasoning_effort",
            "logprobs",
            "top_logprobs",
        }
    )

    def _dropped_values(self, request: ChatCompletionRequest) -> list[str]:
        # Ollama has no tool_choice: "auto" is what it does, "none" leaves the tools out; forcing a call
        # ("required", or one named function) cannot be asked for
        choice = request.tool_choice
        return ["tool_choice"] if request.tools and choice not in (None, "auto", "none") else []

    def native_chat(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> dict[str, Any]:
        """The ``/api/chat`` request body for ``request``."""
        if (request.n or 1) > 1:
            # /api/chat answers once per request: n choices would be billed for one
            raise InvalidRequest(
                "Ollama returns one choice per request: send n = 1 (or leave it out) and make several "
                "requests for several answers.",
                param="n",
            )
        payload: dict[str, Any] = {"model": deployment.model, "messages": _messages(request)}
        if request.tools and request.tool_choice != "none":
            payload["tools"] = body.get("tools") or [
                tool.model_dump(exclude_none=True) for tool in request.tools
            ]
        if (fmt := _format(request)) is not None:
            payload["format"] = fmt
        if options := t.sampling(request, body, _OPTIONS):
            payload["options"] = options
        if "keep_alive" in body:
            payload["keep_alive"] = body["keep_alive"]
        if (effort := r.effort(body)) is not None:
            payload["think"] = r.OLLAMA_THINK[effort]
        logprobs, top = lp.requested(request)
        if logprobs:
            payload["logprobs"] = True
            if top is not None:
                payload["top_logprobs"] = top
        payload["stream"] = stream
        return payload

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        payload = self.native_chat(deployment, request, body, stream=stream)
        return self._post(f"{deployment.base_url}/api/chat", deployment, payload)

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
        thinking = message.get("thinking")
        reasoning = thinking if isinstance(thinking, str) else None
        tokens = lp.choice_logprobs(lp.from_ollama(data.get("logprobs"))) if request.logprobs else None
        choices = [t.choice(0, str(message.get("content") or ""), calls or None, finish, reasoning, tokens)]
        model = t.text_or(data.get("model"), deployment.model)
        # Ollama's answers carry no id: the gateway makes one
        return self._answer(None, model, choices, _usage(data))

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> OllamaStreamTranslator:
        return OllamaStreamTranslator(
            self._chunks(deployment, include_usage=include_usage), self._ids, logprobs=bool(request.logprobs)
        )

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
        return self._post(f"{deployment.base_url}/api/embed", deployment, payload)

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
        message = t.upstream_error_message(t.error_body(content))
        return error_from_status(self.name, status, message, headers=headers)
