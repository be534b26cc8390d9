"""Cache keys: the exact key, the semantic scope, and the question the vector is made of.

- The **exact key** hashes the canonical JSON of the tenant and the whole request minus the fields that
  cannot change the answer (``stream``, ``stream_options``, ``user``, ``metadata``, ``store``): model, every
  message, every parameter (temperature, top_p, tools, response_format, seed, stop, max_tokens, and any field
  the gateway does not know, to be safe). A streamed and a non-streamed request share one entry.
- The **scope** hashes the same thing with the last message left out: tenant, model, parameters, system
  prompt and all earlier turns. Only requests with the same scope can match semantically.
- The **question** is the text of the last message, which must be a user message with text only.
- The **dialect** (``chat``, ``messages``) is part of both hashes, so a Chat Completions request and a
  Messages request with the same text never share an entry. Chat keys hash exactly what they hashed
  before dialects existed (entries stored by earlier versions keep answering); Messages keys add
  ``"dialect": "messages"`` to the hashed object.
- A Messages request is keyed without ``stream``, ``metadata`` (``user_id``) and every ``cache_control``
  (a hint for Anthropic's prompt cache, not a change to the answer), with a string ``content`` or
  ``system`` as the text block it stands for, and with the ``anthropic-version`` and ``anthropic-beta``
  headers (a beta can change what the model may answer).
- A Responses request is keyed without ``stream``, ``stream_options``, ``store``, ``background`` (only
  ``false`` reaches the keys: other values bypass the cache), ``metadata``, ``user``,
  ``safety_identifier``, ``prompt_cache_key`` and ``prompt_cache_retention``, with a string ``input``
  as the one user message it stands for and a message item's string ``content`` as its text part.
  Its question is the last input item when that is a user message of text only; ``instructions`` and
  every earlier item are in its scope.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

#: Request fields that do not change the answer: left out of keys so that, for example, a stream and a
#: JSON request for the same thing share an entry.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store"})
#: The same for Messages requests (``metadata`` holds only ``user_id``; a top-level ``cache_control`` is
#: Anthropic's automatic prompt caching).
MESSAGES_IGNORED_FIELDS = frozenset({"stream", "metadata", "cache_control"})
#: The same for Responses requests (echoed in the response, but a hit echoes the asking request's).
RESPONSES_IGNORED_FIELDS = frozenset(
    {
        "stream",
        "stream_options",
        "store",
        "background",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
#: Request headers of the Messages API that are part of its key.
MESSAGES_KEYED_HEADERS = (b"anthropic-version", b"anthropic-beta")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: equal requests give equal bytes whatever the client's key order."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


@functools.lru_cache(maxsize=4096)
def tenant_tag(tenant: str) -> str:
    """A fixed-width tag for a tenant in store keys (tenant ids may hold any character)."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


def message_text(message: Any, text_type: str = "text") -> str | None:
    """The text of a message whose content is a string or text parts (of type ``text_type``) only;
    ``None`` otherwise."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts: list[str] = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != text_type
                or not isinstance(part.get("text"), str)
            ):
                return None  # an image or a file: the text alone does not say what is asked
            texts.append(part["text"])
        return "\n".join(texts)
    return None


class CacheKeys:
    """The keys of one request; the scope and question are worked out only when the semantic layer
    needs them (an exact hit never does)."""

    __slots__ = ("_dialect", "_max_question_chars", "_request", "_semantic", "exact", "tenant")

    #: Per dialect: the request field holding the turns, and the type of a text part.
    _TURNS = {"responses": ("input", "input_text")}

    def __init__(
        self,
        tenant: str,
        request: dict[str, Any],
        *,
        max_question_chars: int,
        dialect: str = "chat",
        exact: str | None = None,
    ) -> None:
        self.tenant = tenant
        self._request = request
        self._max_question_chars = max_question_chars
        self._dialect = dialect
        self._semantic: tuple[str | None, str | None] | None = None
        #: Key of the exact layer (without the store's prefix): ``<tenant tag>:<sha256>``; ``exact``:
        #: this key as worked out for the same tenant, dialect and request before.
        self.exact = exact or f"{tenant_tag(tenant)}:{_digest(self._hashed(request))}"

    def _hashed(self, request: dict[str, Any]) -> dict[str, Any]:
        # chat's hashed object is the one of the versions before dialects, so their entries stay found
        hashed: dict[str, Any] = {"tenant": self.tenant, "request": request}
        if self._dialect != "chat":
            hashed["dialect"] = self._dialect
        return hashed

    @property
    def scope(self) -> str | None:
        """Hash of everything but the last message; ``None`` when the semantic layer cannot be used."""
        return self._scope_and_question()[0]

    @property
    def question(self) -> str | None:
        """The last user message's text, embedded for the semantic layer."""
        return self._scope_and_question()[1]

    def _scope_and_question(self) -> tuple[str | None, str | None]:
        if self._semantic is None:
            self._semantic = self._compute_semantic()
        return self._semantic

    def _compute_semantic(self) -> tuple[str | None, str | None]:
        request = self._request
        turns, text_type = self._TURNS.get(self._dialect, ("messages", "text"))
        messages = request.get(turns) or []
        last = messages[-1] if messages else None
        question = (
            message_text(last, text_type) if isinstance(last, dict) and last.get("role") == "user" else None
        )
        if question is None or not question.strip() or len(question) > self._max_question_chars:
            return None, None
        # The last message's other fields (a "name", say) stay in the scope: only its text may differ.
        last_rest = {k: v for k, v in last.items() if k != "content"} if isinstance(last, dict) else {}
        scope_request = {**request, turns: messages[:-1], "last_message": last_rest}
        scope = f"{tenant_tag(self.tenant)}:{_digest(self._hashed(scope_request))}"
        return scope, question.strip()


def cache_keys(
    body: dict[str, Any],
    tenant: str,
    *,
    max_question_chars: int,
    dialect: str = "chat",
    headers: Iterable[tuple[bytes, bytes]] = (),
    exact: str | None = None,
) -> CacheKeys:
    """The keys of a validated ``body`` of ``dialect`` (``chat``, ``messages``, ``responses``) for ``tenant``;
    ``headers``: the request's, of which Messages keys take :data:`MESSAGES_KEYED_HEADERS`; ``exact``: the
    exact key of this body as worked out before (not hashed again)."""
    if dialect == "messages":
        request = messages_key_request(body, headers)
    elif dialect == "responses":
        request = responses_key_request(body)
    else:
        request = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    return CacheKeys(tenant, request, max_question_chars=max_question_chars, dialect=dialect, exact=exact)


def memo_kind(route: str, headers: Iterable[tuple[bytes, bytes]]) -> str:
    """What a body's keys are remembered under beside its bytes: the route, and the values of the
    :data:`MESSAGES_KEYED_HEADERS` the request carries (a Messages key holds them)."""
    kind = route
    for header, raw in headers:
        if header in MESSAGES_KEYED_HEADERS:
            kind = f"{kind}\n{header.decode()}={raw.decode('latin-1')}"
    return kind


def messages_key_request(body: dict[str, Any], headers: Iterable[tuple[bytes, bytes]]) -> dict[str, Any]:
    """What of a Messages request its keys hash: the body without :data:`MESSAGES_IGNORED_FIELDS` and
    ``cache_control`` marks, plus the keyed headers (under ``"headers"``, which no body field is)."""
    request: dict[str, Any] = {}
    for name, value in body.items():
        if name in MESSAGES_IGNORED_FIELDS:
            continue
        if name == "system":
            value = _without_cache_control(_as_blocks(value))
        elif name == "tools":
            value = _without_cache_control(value)
        elif name == "messages" and isinstance(value, list):
            value = [
                {**m, "content": _without_cache_control(_as_blocks(m.get("content")))}
                if isinstance(m, dict)
                else m
                for m in value
            ]
        request[name] = value
    keyed: dict[str, list[str]] = {}
    for header, raw in headers:
        if header in MESSAGES_KEYED_HEADERS:
            # anthropic-beta is a comma-separated list: its order and spacing do not matter
            values = [v.strip() for v in raw.decode("latin-1").split(",") if v.strip()]
            keyed.setdefault(header.decode(), []).extend(values)
    request["headers"] = {header: sorted(set(values)) for header, values in keyed.items()}
    return request


def responses_key_request(body: dict[str, Any]) -> dict[str, Any]:
    """What of a Responses request its keys hash: the body without :data:`RESPONSES_IGNORED_FIELDS`,
    ``input`` as a list of items in their long form."""
    request = {k: v for k, v in body.items() if k not in RESPONSES_IGNORED_FIELDS}
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if isinstance(items, list):
        request["input"] = [_input_item(item) for item in items]
    return request


def _input_item(item: Any) -> Any:
    """An input item in its long form: a message item without ``type`` with it (``"message"``, its
    only meaning), a user, system or developer message's string ``content`` as its ``input_text`` part
    (OpenAI documents each pair as the same)."""
    if not isinstance(item, dict) or "role" not in item or item.get("type", "message") != "message":
        return item
    item = {**item, "type": "message"}
    if isinstance(item.get("content"), str) and item["role"] in ("user", "system", "developer"):
        item["content"] = [{"type": "input_text", "text": item["content"]}]
    return item


def _as_blocks(content: Any) -> Any:
    """A string ``content`` or ``system`` as the one text block it is shorthand for (Anthropic documents
    the two as the same); anything else as it is."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _without_cache_control(blocks: Any) -> Any:
    """``blocks`` (a list of content blocks or tools) without their ``cache_control`` marks, tool
    results' nested blocks included; anything else as it is."""
    if not isinstance(blocks, list):
        return blocks
    out: list[Any] = []
    for block in blocks:
        if isinstance(block, dict):
            block = {k: v for k, v in block.items() if k != "cache_control"}
            if block.get("type") == "tool_result":
                block["content"] = _without_cache_control(block.get("content"))
        out.append(block)
    return out
