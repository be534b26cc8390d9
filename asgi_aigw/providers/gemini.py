"""Google Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``, ``embedContent``,
``batchEmbedContents``) to and from the OpenAI format.

Wire format as documented at ai.google.dev (Gemini API reference, "Generating content", "Embeddings"):

- request: ``contents`` of ``{role: user|model, parts}``, parts ``text``, ``inlineData``,
  ``fileData``, ``functionCall`` and ``functionResponse``; ``systemInstruction``;
  ``tools[].functionDeclarations``; ``toolConfig.functionCallingConfig.mode`` (AUTO, ANY, NONE);
  ``generationConfig`` (temperature, topP, topK, candidateCount, maxOutputTokens, stopSequences,
  ``thinkingConfig`` with ``thinkingBudget`` for Gemini 2.5, ``thinkingLevel`` for Gemini 3 and
  ``includeThoughts``, ``responseLogprobs`` and ``logprobs`` (0-20, only with ``responseLogprobs``),
  ...);
- answer: ``candidates[].content.parts`` (thought summaries are parts with ``thought: true``),
  ``candidates[].logprobsResult`` when asked (in a stream, each event's holds its own tokens),
  ``candidates[].finishReason`` (STOP, MAX_TOKENS, SAFETY,
  RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, ...), ``promptFeedback.blockReason`` when the prompt
  itself was blocked, ``usageMetadata`` (promptTokenCount, candidatesTokenCount, thoughtsTokenCount,
  cachedContentTokenCount, totalTokenCount);
- stream: with ``alt=sse`` every SSE ``data`` is a complete GenerateContentResponse holding the next
  parts; there is no end marker, the finishReason is the last word;
- errors: ``{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED"}}``.

The API key travels in the ``x-goog-api-key`` header, never in the URL, so it cannot leak into logs that
record URLs.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any

import orjson

from ..kernel.context import Usage
from ..kernel.errors import GatewayError, InvalidRequest, UpstreamError, clip
from ..kernel.models import ChatCompletionRequest, ContentPart, EmbeddingRequest, Tool
from ..kernel.sse import SSEDecoder
from . import _logprobs as lp
from . import _reasoning as r
from . import _translate as t
from ._gemini_schema import gemini_parameters, gemini_schema
from .base import Deployment, TranslatedResponse, UpstreamRequest
from .errors import error_from_status

API_VERSION = "v1beta"

#: Finish reasons that mean the answer was withheld or cut for safety or policy reasons.
_BLOCKED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}
)
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(_BLOCKED, t.CONTENT_FILTER)}


def _model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def _image_part(url: str) -> dict[str, Any]:
    inline = t.parse_data_url(url)
    if inline is not None:
        media_type, data = inline
        return {"inlineData": {"mimeType": media_type, "data": data}}
    # fileData takes a URI Gemini can fetch (Files API or a public URL); its MIME type is required
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: str | list[ContentPart] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            parts.append({"text": part.text or ""})
        elif part.type == "image_url" and part.image_url is not None:
            parts.append(_image_part(part.image_url.url))
        else:
            raise InvalidRequest(
                f"Content parts of type '{part.type}' cannot be sent to Gemini through this gateway; "
                "use text and image_url parts.",
                param="messages",
            )
    return parts


def _contents(request: ChatCompletionRequest) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    names = t.tool_names_by_id(request.messages)
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] | None = None  # function responses answering one model turn
    for message in request.messages:
        role = message.role
        if role in ("system", "developer"):
            system.append({"text": message.text()})
            continue
        if role in ("tool", "function"):
            name = names.get(message.tool_call_id or "") or message.name
            if not name:
                raise InvalidRequest(
                    "A tool message's tool_call_id matches no earlier assistant tool call; Gemini needs the "
                    "function's name to take its result.",
                    param="messages",
                )
            part = {"functionResponse": {"name": name, "response": {"output": message.text()}}}
            if responses is None:
                responses = [part]
                contents.append({"role": "user", "parts": responses})
            else:
                responses.append(part)
            continue
        responses = None
        if role == "assistant":
            parts: list[dict[str, Any]] = [{"text": text}] if (text := message.text()) else []
            for call in message.tool_calls or ():
                args = t.tool_arguments(call.function.arguments, call.function.name)
                call_part: dict[str, Any] = {"functionCall": {"name": call.function.name, "args": args}}
                if (signature := split_call_id(call.id)[1]) is not None:
                    call_part[_SIGNATURE] = signature  # back on the part it came with, as Gemini requires
                parts.append(call_part)
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        else:
            contents.append({"role": "user", "parts": _parts(message.content)})
    return ({"parts": system} if system else None), contents


def _tool_config(request: ChatCompletionRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "required":
        config = {"mode": "ANY"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config = {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}
    else:
        raise InvalidRequest(
            f"tool_choice {clip(repr(choice))} cannot be sent to Gemini.", param="tool_choice"
        )
    return {"functionCallingConfig": config}


#: ``generationConfig`` names for the OpenAI sampling parameters.
_GENERATION_CONFIG: dict[t.SamplingParameter, str] = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "n": "candidateCount",
    "max_tokens": "maxOutputTokens",
    "stop": "stopSequences",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}


def _response_format(config: dict[str, Any], response_format: dict[str, Any] | None) -> None:
    """``json_object`` → JSON mode; ``json_schema`` → JSON mode held to the schema (in Gemini's subset)."""
    kind = response_format.get("type") if response_format else None
    if kind in (None, "text"):
        return
    if kind not in ("json_object", "json_schema"):
        raise InvalidRequest(
            f"response_format type {clip(repr(kind))} is not one of text, json_object, json_schema.",
            param="response_format",
        )
    config["responseMimeType"] = "application/json"
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format json_schema needs json_schema.schema, a JSON Schema object.",
                param="response_format",
            )
        config["responseSchema"] = gemini_schema(schema, param="response_format")


def _thinking_config(model: str, effort: r.Effort | None) -> dict[str, Any] | None:
    """``generationConfig.thinkingConfig`` for ``effort``: a level for Gemini 3 models, a token budget
    for earlier ones (the two are exclusive: Gemini refuses both), thought summaries asked for unless
    thinking is off. ``maxOutputTokens`` counts thinking, so the cap still bounds what is spent."""
    if effort is None:
        return None
    config: dict[str, Any]
    if _GEMINI_3.search(model):
        config = {"thinkingLevel": r.GEMINI_LEVEL[effort]}
    else:
        config = {"thinkingBudget": r.GEMINI_BUDGET[effort]}
    config["includeThoughts"] = effort != "none"
    return config


#: Gemini 3 models (``gemini-3-pro-preview``, ``models/gemini-3.1-flash``...) take ``thinkingLevel``.
_GEMINI_3 = re.compile(r"(?:^|/)gemini-(?:[3-9]|\d{2,})(?:[.-]|$)")


def _generation_config(request: ChatCompletionRequest, body: dict[str, Any], model: str) -> dict[str, Any]:
    config = t.sampling(request, body, _GENERATION_CONFIG)
    _response_format(config, request.response_format)
    if (thinking := _thinking_config(model, r.effort(body))) is not None:
        config["thinkingConfig"] = thinking
    logprobs, top = lp.requested(request)
    if logprobs:
        # Gemini takes the number of alternatives (0-20) only along with responseLogprobs
        config["responseLogprobs"] = True
        if top is not None:
            config["logprobs"] = top
    return config


def _declaration(tool: Tool, index: int) -> dict[str, Any]:
    function = tool.function
    declaration: dict[str, Any] = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    parameters = gemini_parameters(function.parameters, param=f"tools[{index}].function.parameters")
    if parameters is not None:
        declaration["parameters"] = parameters
    return declaration


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    try:
        prompt = int(data.get("promptTokenCount") or 0)
        # thinking tokens are billed as output, as OpenAI counts reasoning tokens in completion_tokens
        completion = int(data.get("candidatesTokenCount") or 0) + int(data.get("thoughtsTokenCount") or 0)
        total = int(data.get("totalTokenCount") or prompt + completion)
        cached = int(data.get("cachedContentTokenCount") or 0)
        thoughts = int(data.get("thoughtsTokenCount") or 0)
    except (TypeError, ValueError):
        return None
    return Usage(prompt, completion, total, cached, reasoning_tokens=thoughts)


def _blocked_prompt(data: dict[str, Any]) -> t.ContentFiltered | None:
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not reason:
        return None
    return t.ContentFiltered(
        f"Gemini blocked the prompt (blockReason: {reason}). Rephrase the request or adjust the "
        "deployment's safety settings."
    )


def _blocked_answer(reason: str) -> t.ContentFiltered:
    return t.ContentFiltered(
        f"Gemini withheld the answer (finishReason: {reason}). Rephrase the request or adjust the "
        "deployment's safety settings."
    )


def _error_from_body(data: dict[str, Any]) -> GatewayError:
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return error_from_status("gemini", status, t.upstream_error_message(data, "status"))


def _split_parts(parts: Any) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """Texts, function calls and thought summaries; a call keeps its part's ``thoughtSignature``
    (see :func:`call_id`)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thoughts: list[str] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("thought"):
            # a thought summary: the client's reasoning_content, not the answer
            if isinstance(part.get("text"), str):
                thoughts.append(part["text"])
            continue
        if "text" in part:
            texts.append(str(part["text"]))
        elif isinstance(call := part.get("functionCall"), dict):
            signature = part.get("thoughtSignature")
            calls.append({**call, _SIGNATURE: signature} if isinstance(signature, str) else call)
    return texts, calls, thoughts


#: Between a tool call's id and the thought signature carried in it.
SIGNATURE_SEPARATOR = "__thought__"
_SIGNATURE = "thoughtSignature"


def call_id(base: str, signature: Any) -> str:
    """The OpenAI tool call id for a Gemini function call: ``base``, then the part's thought signature.

    Gemini 3 refuses a conversation whose function calls come back without the ``thoughtSignature``
    it gave them (400 "Function call is missing a thought_signature"), and the Chat Completions format
    has no field for it: the id is the one thing every client sends back unchanged. The signature is
    re-encoded base64url so the id stays ``[A-Za-z0-9_-]`` (what Anthropic accepts for tool ids too).
    """
    if not isinstance(signature, str) or not signature:
        return base
    return f"{base}{SIGNATURE_SEPARATOR}{signature.replace('+', '-').replace('/', '_').rstrip('=')}"


def split_call_id(value: str) -> tuple[str, str | None]:
    """``(id, thought signature or None)`` of a tool call id made by :func:`call_id`."""
    base, separator, encoded = value.partition(SIGNATURE_SEPARATOR)
    if not separator or not encoded:
        return value, None
    standard = encoded.replace("-", "+").replace("_", "/")
    return base, standard + "=" * (-len(standard) % 4)


class GeminiStreamTranslator(t.NativeStreamTranslator):
    """``streamGenerateContent?alt=sse`` events in, OpenAI chunks out (first candidate)."""

    __slots__ = ("_calls", "_ids", "_logprobs", "_reason", "_usage")

    not_json = "gemini sent a stream event that is not valid JSON."

    def __init__(self, out: t.ChunkStream, ids: t.IdFactory, *, logprobs: bool = False) -> None:
        super().__init__(out, SSEDecoder())
        self._ids = ids
        #: the client asked for log probabilities: each event's candidate carries those of its tokens
        self._logprobs = logprobs
        self._calls = 0
        self._reason: str | None = None
        #: the latest ``usageMetadata`` (every event repeats the running figures): read once, at the end
        self._usage: Any = None

    @property
    def usage(self) -> Usage | None:
        if self._out.usage is None and self._usage is not None:
            self._out.usage = _usage(self._usage)
        return self._out.usage

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._out.usage = value

    def _ended(self, out: list[bytes]) -> None:
        # there is no end marker: a finish reason is the last word
        if self._reason is not None:
            self._out.usage = self.usage
            self._out.end(out)

    def _event(self, data: Any, out: list[bytes]) -> None:
        # the common event, a candidate with one text part, takes the short way
        try:
            candidate = data["candidates"][0]
            parts = candidate["content"]["parts"]
            part = parts[0]
            text = part["text"] if len(parts) == 1 and len(part) == 1 and not self._logprobs else None
        except (KeyError, IndexError, TypeError):
            text = None
        if text.__class__ is not str:
            text = None
            if not isinstance(data, dict):
                return
            if "error" in data:
                raise _error_from_body(data)
            if (blocked := _blocked_prompt(data)) is not None:
                raise blocked
        stream = self._out
        if not stream.opened:
            stream.identify(data.get("responseId"), data.get("modelVersion"))
        usage = data.get("usageMetadata")
        if usage is not None:
            self._usage = usage
        if text is not None:
            stream.text(out, text)
            if "finishReason" in candidate:
                self._finish(candidate["finishReason"], out)
        else:
            self._candidate(data.get("candidates"), out)

    def _candidate(self, candidates: Any, out: list[bytes]) -> None:
        """The first candidate of an event, whatever its parts (texts, function calls)."""
        if not candidates or not isinstance(candidates, list) or not isinstance(candidates[0], dict):
            return
        candidate = candidates[0]
        content = candidate.get("content")
        texts, calls, thoughts = _split_parts(content.get("parts") if isinstance(content, dict) else None)
        stream = self._out
        for thought in thoughts:
            stream.reasoning(out, thought)
        if self._logprobs and (content := lp.from_gemini(candidate.get("logprobsResult"))):
            # the event's tokens, on one chunk with its text
            stream.text_logprobs(out, "".join(texts), lp.choice_logprobs(content))
        else:
            for text in texts:
                stream.text(out, text)
        for call in calls:
            position = self._calls
            self._calls += 1
            arguments = orjson.dumps(call.get("args") or {}).decode()
            identifier = call_id(str(call.get("id") or self._ids("call_")), call.get(_SIGNATURE))
            stream.tool_call_start(out, position, identifier, str(call.get("name") or ""), arguments)
        if reason := candidate.get("finishReason"):
            self._finish(reason, out)

    def _finish(self, reason: str, out: list[bytes]) -> None:
        if not reason or reason == "FINISH_REASON_UNSPECIFIED":
            return
        self._reason = reason
        stream = self._out
        if reason in _BLOCKED and not stream.opened:
            # nothing of the answer was written: a clear error rather than an empty answer
            raise _blocked_answer(reason)
        finish = "tool_calls" if self._calls and reason == "STOP" else _FINISH.get(reason, "stop")
        stream.finish(out, finish)


class GeminiAdapter(t.NativeAdapter):
    name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    requires_api_key = True
    # in a header, never in the URL (where logs would keep it)
    key_header = "x-goog-api-key"
    key_prefix = ""
    reads = frozenset(
        {
            "temperature",
            "top_p",
            "n",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "tools",
            "tool_choice",
            "response_format",
            "safety_settings",
            "reasoning_effort",
            "logprobs",
            "top_logprobs",
        }
    )

    def _url(self, deployment: Deployment, method: str) -> str:
        return f"{t.versioned(deployment.base_url, API_VERSION)}/{_model_path(deployment.model)}:{method}"

    def native_chat(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The generateContent request body for ``request``."""
        system, contents = _contents(request)
        payload: dict[str, Any] = {"contents": contents}
        if system is not None:
            payload["systemInstruction"] = system
        if request.tools:
            payload["tools"] = [
                {"functionDeclarations": [_declaration(tool, i) for i, tool in enumerate(request.tools)]}
            ]
        if (tool_config := _tool_config(request)) is not None:
            payload["toolConfig"] = tool_config
        if generation := _generation_config(request, body, deployment.model):
            payload["generationConfig"] = generation
        if isinstance(body.get("safety_settings"), list):
            payload["safetySettings"] = body["safety_settings"]
        return payload

    def chat_request(
        self, deployment: Deployment, request: ChatCompletionRequest, body: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        if stream and (request.n or 1) > 1:
            # the stream translator writes one choice; n candidates would be billed, one returned
            raise InvalidRequest(
                "Gemini streams through this gateway return one choice: send n > 1 without stream, "
                "or n = 1 with stream.",
                param="n",
            )
        payload = self.native_chat(deployment, request, body)
        url = self._url(deployment, "streamGenerateContent?alt=sse" if stream else "generateContent")
        return self._post(url, deployment, payload)

    def chat_response(
        self, deployment: Deployment, request: ChatCompletionRequest, content: bytes
    ) -> TranslatedResponse:
        data = t.loads_object(content, "a generateContent response")
        if "error" in data:
            raise _error_from_body(data)
        if (blocked := _blocked_prompt(data)) is not None:
            raise blocked
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise UpstreamError("gemini answered with no candidates.")
        choices: list[dict[str, Any]] = []
        blocked_reason: str | None = None
        logprobs = bool(request.logprobs)
        for position, candidate in enumerate(candidates):
            if not isinstance(candidate, dict):
                continue
            content_obj = candidate.get("content")
            texts, raw_calls, thoughts = _split_parts(
                content_obj.get("parts") if isinstance(content_obj, dict) else None
            )
            calls = [
                t.tool_call(
                    call_id(str(call.get("id") or self._ids("call_")), call.get(_SIGNATURE)),
                    str(call.get("name") or ""),
                    call.get("args") or {},
                )
                for call in raw_calls
            ]
            reason = str(candidate.get("finishReason") or "STOP")
            if not texts and not calls and reason in _BLOCKED:
                blocked_reason = blocked_reason or reason
            finish = "tool_calls" if calls and reason == "STOP" else _FINISH.get(reason, "stop")
            index = candidate.get("index")
            at = index if isinstance(index, int) else position
            tokens = lp.choice_logprobs(lp.from_gemini(candidate.get("logprobsResult"))) if logprobs else None
            choices.append(t.choice(at, "".join(texts), calls or None, finish, "".join(thoughts), tokens))
        if blocked_reason is not None and all(
            c["message"]["content"] in (None, "") and "tool_calls" not in c["message"] for c in choices
        ):
            raise _blocked_answer(blocked_reason)
        model = t.text_or(data.get("modelVersion"), deployment.model)
        return self._answer(data.get("responseId"), model, choices, _usage(data.get("usageMetadata")))

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> GeminiStreamTranslator:
        return GeminiStreamTranslator(
            self._chunks(deployment, include_usage=include_usage), self._ids, logprobs=bool(request.logprobs)
        )

    def native_embeddings(
        self, deployment: Deployment, request: EmbeddingRequest
    ) -> tuple[str, dict[str, Any]]:
        """``(method, body)``: ``embedContent`` for one input, ``batchEmbedContents`` for several."""
        if isinstance(request.input, list) and request.input and not isinstance(request.input[0], str):
            raise InvalidRequest("Gemini embeds text only; send strings, not token ids.", param="input")
        texts = request.texts()
        extra = {"outputDimensionality": request.dimensions} if request.dimensions else {}
        if isinstance(request.input, str):
            return "embedContent", {"content": {"parts": [{"text": texts[0]}]}, **extra}
        model = _model_path(deployment.model)
        requests = [{"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in texts]
        return "batchEmbedContents", {"requests": requests}

    def embeddings_request(
        self, deployment: Deployment, request: EmbeddingRequest, body: dict[str, Any]
    ) -> UpstreamRequest:
        method, payload = self.native_embeddings(deployment, request)
        return self._post(self._url(deployment, method), deployment, payload)

    def embeddings_response(
        self, deployment: Deployment, request: EmbeddingRequest, content: bytes
    ) -> TranslatedResponse:
        data = t.loads_object(content, "an embeddings response")
        if "error" in data:
            raise _error_from_body(data)
        if isinstance(data.get("embedding"), dict):
            raw = [data["embedding"]]
        elif isinstance(data.get("embeddings"), list):
            raw = data["embeddings"]
        else:
            raise UpstreamError("gemini answered with JSON that is not an embeddings response.")
        vectors = [list(item.get("values") or []) for item in raw if isinstance(item, dict)]
        # Gemini's embedding answers report no token counts: usage is left to the gateway's estimate
        body = t.embeddings_body(
            vectors, deployment.model, base64_encoded=request.encoding_format == "base64", usage=None
        )
        return TranslatedResponse(body, None, deployment.model)

    def error(self, status: int, content: bytes, headers: dict[str, str]) -> GatewayError:
        message = t.upstream_error_message(t.error_body(content), "status")
        return error_from_status(self.name, status, message, headers=headers)
