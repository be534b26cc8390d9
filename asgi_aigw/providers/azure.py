"""Azure OpenAI: the OpenAI wire format at a resource's deployment URLs, with Azure's key header,
API versions, errors and content filter.

As documented in the Azure OpenAI REST API reference and its API version lifecycle page:

- dated API versions: ``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V``
  (and ``/embeddings``); the deployment's ``model`` is the Azure deployment name;
- the v1 API (``api_version: v1``): ``POST {endpoint}/openai/v1/chat/completions`` with the deployment
  name as ``model`` and no ``api-version``;
- the key travels in the ``api-key`` header (an Entra ID token goes in ``authorization`` instead, set
  as a deployment header);
- errors: ``{"error": {"code": "DeploymentNotFound" | "401" | "429" | ..., "message": ...}}``; a
  prompt the content filter blocks is a 400 with ``error.code: "content_filter"`` and the verdicts in
  ``error.innererror.content_filter_result``;
- answers carry ``prompt_filter_results`` and each choice its ``content_filter_results``; a filtered
  answer ends with ``finish_reason: "content_filter"``; a stream opens with a chunk that has no id,
  model or choices (the prompt's verdicts), and an asynchronous filter adds such chunks later.

Answers pass through as the OpenAI adapter passes them, with three exceptions, all as Gemini's safety
blocks are handled: a blocked prompt is a 400 ``content_filter`` error, an answer withheld before any
of it was written is one too, and Azure's id-less filter chunks carry the stream's id, so every chunk
of one stream has the same ``chatcmpl-`` id.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson

from ..kernel.context import Usage
from ..kernel.errors import GatewayError, UpstreamError
from ..kernel.models import ChatCompletionRequest
from ..kernel.sse import DONE_DATA, DONE_EVENT, parse_event
from ._translate import CONTENT_FILTER, ContentFiltered, error_body, loads_object
from .base import Deployment, TranslatedResponse
from .openai import OpenAIAdapter, OpenAIStreamTranslator

#: The latest generally available dated API version (used when a deployment names none).
DEFAULT_API_VERSION = "2024-10-21"
#: ``api_version`` for the v1 API, which takes no dated version.
V1 = "v1"

_ENVELOPE = ("id", "object", "created", "model")
#: Azure's filter chunks, which have an empty id.
_EMPTY_ID = re.compile(rb'"id"\s*:\s*""')


def filtered_categories(results: Any) -> list[str]:
    """The categories a ``content_filter_result(s)`` object says were filtered (``hate``,
    ``jailbreak``, ``custom_blocklists``, ...)."""
    if not isinstance(results, dict):
        return []
    names = []
    for name, verdict in results.items():
        # custom blocklists give a list of verdicts, the other categories one each
        verdicts = verdict if isinstance(verdict, list) else [verdict]
        if any(isinstance(v, dict) and v.get("filtered") is True for v in verdicts):
            names.append(name)
    return names


def _withheld(categories: list[str]) -> ContentFiltered:
    which = f" (filtered: {', '.join(categories)})" if categories else ""
    return ContentFiltered(
        f"Azure OpenAI's content filter withheld the answer{which}. Rephrase the request or adjust the "
        "deployment's content filter."
    )


def _answer_started(choices: list[Any]) -> bool:
    """Whether a chunk carries any of the answer: text, a tool call, a refusal or a finish."""
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(k) for k in ("content", "tool_calls", "refusal")):
            return True
    return False


class AzureStreamTranslator(OpenAIStreamTranslator):
    """Azure's chunks as OpenAI's: every chunk carries the stream's id, and the opening chunks wait
    for the first piece of the answer, so an answer the filter withholds at once is a clean 400."""

    __slots__ = ("_envelope", "_held", "_opened", "_unstamped")

    def __init__(self, *, include_usage: bool) -> None:
        super().__init__(include_usage=include_usage)
        self._envelope: dict[str, Any] | None = None
        #: Events before the first piece of the answer (the role chunk, filter verdicts).
        self._held: list[bytes] = []
        #: Filter chunks that came before any chunk told the stream's id.
        self._unstamped: list[dict[str, Any]] = []
        self._opened = False

    def _event(self, raw: bytes, out: list[bytes]) -> None:
        if self._opened and _EMPTY_ID.search(raw) is None:
            # once the answer is flowing, a chunk with its own id needs only the pass-through's look
            super()._event(raw, out)
            return
        event = parse_event(raw)
        if event.data == DONE_DATA:
            self.done = True
            out.extend(self._held)
            self._held.clear()
            out.append(DONE_EVENT)
            return
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self._release(raw, out)
            return
        if (usage := Usage.from_openai(data.get("usage"))) is not None:
            self.usage = usage
        choices = data.get("choices")
        choices = choices if isinstance(choices, list) else []
        if data.get("id"):
            if self._envelope is None:
                self._envelope = {key: data.get(key) for key in _ENVELOPE}
                for early in self._unstamped:
                    self._held.append(self._stamped(early))
                self._unstamped.clear()
            encoded = raw
        elif self._envelope is None:
            # the prompt's verdicts open the stream before any chunk says its id: stamped later
            self._unstamped.append(data)
            return
        else:
            encoded = self._stamped(data)
        for choice in choices:
            if (
                isinstance(choice, dict)
                and choice.get("finish_reason") == CONTENT_FILTER
                and not self._opened
            ):
                # nothing of the answer was written: a clear error rather than an empty answer
                raise _withheld(filtered_categories(choice.get("content_filter_results")))
        if not choices and not self._include_usage and "usage" in data and data["usage"] is not None:
            return  # the usage chunk the gateway asked for, which the client did not
        if not self._opened and _answer_started(choices):
            self._opened = True
        self._release(encoded, out)

    def _release(self, encoded: bytes, out: list[bytes]) -> None:
        if not self._opened:
            self._held.append(encoded)
            return
        if self._held:
            out.extend(self._held)
            self._held.clear()
        out.append(encoded)

    def _stamped(self, data: dict[str, Any]) -> bytes:
        """An id-less filter chunk with the stream's id, object, created and model."""
        assert self._envelope is not None
        data.update(self._envelope)
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    choice.setdefault("delta", {})
        return b"data: " + orjson.dumps(data) + b"\n\n"


class AzureOpenAIAdapter(OpenAIAdapter):
    """Azure OpenAI deployments (provider ``azure``)."""

    key_header = "api-key"
    key_prefix = ""

    def __init__(self) -> None:
        # no default: every Azure resource has its own endpoint (https://NAME.openai.azure.com)
        super().__init__(name="azure", default_base_url="", requires_api_key=True)

    def url(self, deployment: Deployment, endpoint: str) -> str:
        root = azure_endpoint(deployment.base_url)
        version = deployment.api_version or DEFAULT_API_VERSION
        if version == V1:
            return f"{root}/openai/v1/{endpoint}"
        name = quote(deployment.model, safe="")
        return f"{root}/openai/deployments/{name}/{endpoint}?api-version={version}"

    def chat_response(
        self, deployment: Deployment, request: ChatCompletionRequest, content: bytes
    ) -> TranslatedResponse:
        data = loads_object(content, "a chat completion")
        raw_choices = data.get("choices")
        if not isinstance(raw_choices, list):
            raise UpstreamError("The upstream answered with JSON that is not a chat completion.")
        choices = [c for c in raw_choices if isinstance(c, dict)]
        if choices and all(_withheld_choice(c) for c in choices):
            categories: list[str] = []
            for choice in choices:
                categories.extend(filtered_categories(choice.get("content_filter_results")))
            raise _withheld(list(dict.fromkeys(categories)))
        model = data.get("model")
        # the answer goes on as Azure wrote it, filter verdicts included
        return TranslatedResponse(
            content, Usage.from_openai(data.get("usage")), model if isinstance(model, str) and model else None
        )

    def chat_stream(
        self, deployment: Deployment, request: ChatCompletionRequest, *, include_usage: bool
    ) -> AzureStreamTranslator:
        return AzureStreamTranslator(include_usage=include_usage)

    def error(self, status: int, content: bytes, headers: dict[str, str]) -> GatewayError:
        data = error_body(content)
        error = data.get("error") if isinstance(data, dict) else None
        if status == 400 and isinstance(error, dict) and error.get("code") == CONTENT_FILTER:
            inner = error.get("innererror") or error.get("inner_error")
            verdicts = (
                inner.get("content_filter_result") or inner.get("content_filter_results")
                if isinstance(inner, dict)
                else None
            )
            categories = filtered_categories(verdicts)
            which = f" (filtered: {', '.join(categories)})" if categories else ""
            return ContentFiltered(
                f"Azure OpenAI's content filter blocked the prompt{which}. Rephrase the request or "
                "adjust the deployment's content filter.",
                param="messages",
            )
        return super().error(status, content, headers)


def _withheld_choice(choice: dict[str, Any]) -> bool:
    """A choice the filter stopped before any of it was written."""
    if choice.get("finish_reason") != CONTENT_FILTER:
        return False
    message = choice.get("message")
    if not isinstance(message, dict):
        return True
    return not message.get("content") and not message.get("tool_calls")


def azure_endpoint(base_url: str) -> str:
    """The resource endpoint (``https://NAME.openai.azure.com``) of a base URL given with or without
    the ``/openai`` or ``/openai/v1`` path, as Azure's SDKs and docs write it."""
    root = base_url.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root
