"""Which requests the gateway handles: classification by method and path suffix.

Middlewares wrap a whole application (Django's, say), so each one acts only on the OpenAI-format routes
and passes everything else through untouched. Matching is by suffix, so the router can be mounted at any
prefix and clients may include ``/v1`` or not.
"""

from __future__ import annotations

from typing import Literal

from .types import Scope

Route = Literal["chat", "messages", "count_tokens", "responses", "embeddings", "models"]

#: Routes that generate an answer (budgeted, redacted both ways, cached, logged with usage).
GENERATION_ROUTES = frozenset({"chat", "messages", "responses"})
#: Routes whose request is sent upstream with the client's prompt in it (redacted).
PROMPT_ROUTES = frozenset({"chat", "messages", "count_tokens", "responses"})


def is_generation(route: str | None) -> bool:
    """Whether ``route`` generates an answer in one of the dialects (chat, messages, responses)."""
    return route in GENERATION_ROUTES


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (Starlette keeps ``root_path`` inside ``path``)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


def classify(scope: Scope) -> Route | None:
    """``"chat"``, ``"messages"``, ``"count_tokens"``, ``"responses"``, ``"embeddings"`` or ``"models"``
    (the list, or one model) for gateway routes, ``None`` for anything else.

    Anthropic's routes and OpenAI's Responses API are recognised only under ``/v1`` (``/v1/messages``,
    ``/v1/responses``, which the SDKs always send): a host app's own ``/messages`` or ``/responses`` is
    far more likely to be its own.
    """
    if scope.get("type") != "http":
        return None
    path: str = scope.get("path", "").rstrip("/")
    method = scope.get("method")
    if method == "POST":
        if path.endswith("/chat/completions"):
            return "chat"
        if path.endswith("/embeddings"):
            return "embeddings"
        if path.endswith("/v1/messages"):
            return "messages"
        if path.endswith("/v1/messages/count_tokens"):
            return "count_tokens"
        if path.endswith("/v1/responses"):
            return "responses"
    elif method == "GET" and (path.endswith("/models") or "/v1/models/" in path):
        # a retrieve-model call (/v1/models/{model}); only under /v1, as a host app's own /models/... is
        # far more likely to be its own route
        return "models"
    return None
