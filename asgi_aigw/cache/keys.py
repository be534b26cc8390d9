"""Cache keys: the exact key, the semantic scope, and the question the vector is made of.

- The **exact key** hashes the canonical JSON of the tenant and the whole request minus the fields that
  cannot change the answer (``stream``, ``stream_options``, ``user``, ``metadata``, ``store``): model, every
  message, every parameter (temperature, top_p, tools, response_format, seed, stop, max_tokens, and any field
  the gateway does not know, to be safe). A streamed and a non-streamed request share one entry.
- The **scope** hashes the same thing with the last message left out: tenant, model, parameters, system
  prompt and all earlier turns. Only requests with the same scope can match semantically.
- The **question** is the text of the last message, which must be a user message with text only.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

#: Request fields that do not change the answer: left out of keys so that, for example, a stream and a
#: JSON request for the same thing share an entry.
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "metadata", "store"})


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: equal requests give equal bytes whatever the client's key order."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


@functools.lru_cache(maxsize=4096)
def tenant_tag(tenant: str) -> str:
    """A fixed-width tag for a tenant in store keys (tenant ids may hold any character)."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


def message_text(message: Any) -> str | None:
    """The text of a message whose content is a string or text parts only; ``None`` otherwise."""
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
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                return None  # an image or a file: the text alone does not say what is asked
            texts.append(part["text"])
        return "\n".join(texts)
    return None


class CacheKeys:
    """The keys of one request; the scope and question are worked out only when the semantic layer
    needs them (an exact hit never does)."""

    __slots__ = ("_max_question_chars", "_request", "_semantic", "exact", "tenant")

    def __init__(self, tenant: str, request: dict[str, Any], *, max_question_chars: int) -> None:
        self.tenant = tenant
        self._request = request
        self._max_question_chars = max_question_chars
        self._semantic: tuple[str | None, str | None] | None = None
        #: Key of the exact layer (without the store's prefix): ``<tenant tag>:<sha256>``.
        self.exact = f"{tenant_tag(tenant)}:{_digest({'tenant': tenant, 'request': request})}"

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
        messages = request.get("messages") or []
        last = messages[-1] if messages else None
        question = message_text(last) if isinstance(last, dict) and last.get("role") == "user" else None
        if question is None or not question.strip() or len(question) > self._max_question_chars:
            return None, None
        # The last message's other fields (a "name", say) stay in the scope: only its text may differ.
        last_rest = {k: v for k, v in last.items() if k != "content"} if isinstance(last, dict) else {}
        scope_request = {**request, "messages": messages[:-1], "last_message": last_rest}
        scope = f"{tenant_tag(self.tenant)}:{_digest({'tenant': self.tenant, 'request': scope_request})}"
        return scope, question.strip()


def cache_keys(body: dict[str, Any], tenant: str, *, max_question_chars: int) -> CacheKeys:
    """The keys of a validated chat request ``body`` for ``tenant``."""
    request = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    return CacheKeys(tenant, request, max_question_chars=max_question_chars)
