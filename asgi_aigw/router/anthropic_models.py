"""``GET /v1/models`` and ``GET /v1/models/{model}`` for Anthropic's clients, in Anthropic's shape.

Anthropic's SDKs and Claude Code call the same paths as OpenAI's SDK but read another answer: a
``ModelInfo`` (``{"type": "model", "id", "display_name", "created_at"}``) and a page of them with
``first_id``, ``last_id`` and ``has_more``, paged by ``limit`` (1-1000, default 20), ``before_id`` and
``after_id`` (docs.anthropic.com "List Models"). A request is an Anthropic client's when it sends the
``anthropic-version`` header, which those clients send on every call and OpenAI's never does.

The models listed are the OpenAI listing's (:meth:`ModelRegistry.model_ids`), in the same order, so both
kinds of client see the same names; errors are Anthropic's (``not_found_error`` for a name not served).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..kernel.context import RequestContext
from ..kernel.dialects import MESSAGES
from ..kernel.errors import GatewayError, InvalidRequest, clip, send_error
from ..kernel.http import send_json_bytes
from ..kernel.types import Scope, Send
from .registry import ModelRegistry

#: The header every Anthropic client sends (the API refuses a call without it).
VERSION_HEADER = b"anthropic-version"
#: Anthropic's ``created_at`` is a release date, "an epoch value if the release date is unknown": the
#: gateway knows no release date for its aliases, so it says so rather than invent one.
UNKNOWN_RELEASE = "1970-01-01T00:00:00Z"
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
#: ``lifecycle`` filter values Anthropic defines; every model the gateway routes is ``active``.
LIFECYCLES = frozenset({"active", "deprecated", "retired"})


def is_anthropic_client(scope: Scope) -> bool:
    """Whether the request carries ``anthropic-version`` (Anthropic's SDKs, Claude Code)."""
    return any(name == VERSION_HEADER for name, _ in scope.get("headers") or ())


def model_info(model_id: str) -> dict[str, Any]:
    """Anthropic's ``ModelInfo`` for a name this gateway routes."""
    provider, _, rest = model_id.partition("/")
    # a prefix-routing entry (``openai/*``) stands for any model of its provider
    display = f"Any {provider} model ({provider}/MODEL)" if rest == "*" else model_id
    return {
        "type": "model",
        "id": model_id,
        "display_name": display,
        "created_at": UNKNOWN_RELEASE,
        "lifecycle": "active",
    }


class AnthropicModels:
    """Answers the models routes for an Anthropic client; every refusal in Anthropic's error shape."""

    __slots__ = ("_registry",)

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    async def serve(self, scope: Scope, send: Send, ctx: RequestContext, model_id: str | None) -> None:
        """The list (``model_id`` None) or one model; a refusal is sent here, not raised, as the router
        would answer it in OpenAI's shape."""
        try:
            if model_id is None:
                body = self.page(scope.get("query_string") or b"")
            else:
                ctx.model = model_id
                body = self.retrieve(model_id)
        except GatewayError as exc:
            ctx.error_code = exc.code
            ctx.status = exc.status
            await send_error(send, exc, dialect=MESSAGES)
            return
        ctx.status = 200
        await send_json_bytes(send, 200, orjson.dumps(body))

    def retrieve(self, model_id: str) -> dict[str, Any]:
        """One model, or the registry's 404 (which names the models served)."""
        self._registry.resolve(model_id)
        return model_info(model_id)

    def page(self, query: bytes) -> dict[str, Any]:
        """A page of the listing, as the query's ``limit``, ``before_id`` and ``after_id`` ask."""
        params = _params(query)
        limit = _limit(params.get("limit"))
        before, after = _one(params, "before_id"), _one(params, "after_id")
        if before is not None and after is not None:
            raise InvalidRequest("Send before_id or after_id, not both.", param="before_id")
        lifecycles = params.get("lifecycle")
        if lifecycles is not None and "active" not in lifecycles:
            # every model served is active: a filter for the others finds none
            return {"data": [], "first_id": None, "last_id": None, "has_more": False}
        ids = [model_id for model_id, _ in self._registry.model_ids()]
        if before is not None:
            end = _position(ids, before, "before_id")
            start = max(0, end - limit)
            has_more = start > 0
        else:
            start = _position(ids, after, "after_id") + 1 if after is not None else 0
            end = min(len(ids), start + limit)
            has_more = end < len(ids)
        data = [model_info(model_id) for model_id in ids[start:end]]
        return {
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }


def _params(query: bytes) -> dict[str, list[str]]:
    """The query's parameters; ``lifecycle[]=`` (how Anthropic's SDKs send a list) read as ``lifecycle``."""
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        params.setdefault(name.removesuffix("[]"), []).append(value)
    for value in params.get("lifecycle", ()):
        if value not in LIFECYCLES:
            raise InvalidRequest(
                f"lifecycle: '{clip(value)}' is not one of active, deprecated, retired.", param="lifecycle"
            )
    return params


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _limit(values: list[str] | None) -> int:
    if not values:
        return DEFAULT_LIMIT
    raw = values[-1]
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit: '{clip(raw)}' is not a whole number from 1 to {MAX_LIMIT}.", param="limit"
        )
    return limit


def _position(ids: list[str], cursor: str, name: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise InvalidRequest(
            f"{name}: '{clip(cursor)}' is not a model this gateway lists.", param=name
        ) from None
