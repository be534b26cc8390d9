"""RedactMiddleware: PII out of the request before the model sees it, back into the answer after."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from ..kernel.body import ClientDisconnect, JSONBody, forward_scope, read_json
from ..kernel.body_memo import BodyMemo
from ..kernel.context import RequestContext, ensure_context
from ..kernel.dialects import dialect_for
from ..kernel.errors import GatewayError, UnprocessableContent, send_error
from ..kernel.http import CONTENT_LENGTH, without_headers
from ..kernel.lifespan import lifespan_passthrough
from ..kernel.response import ResponseTap
from ..kernel.routes import PROMPT_ROUTES, classify
from ..kernel.types import ASGIApp, Message, Receive, Scope, Send
from .config import RedactConfig
from .fields import Scanned, TextField, TextGroup, apply, plan, rewrite
from .placeholders import PlaceholderMap, placeholder_counts, placeholders_in
from .restore import JSONRestorer, StreamRestorer, restore_json_value
from .restore_messages import MessagesJSONRestorer, MessagesStreamRestorer
from .restore_responses import ResponsesJSONRestorer, ResponsesStreamRestorer
from .scanner import Finding, Scanner
from .walk import Walk
from .walk_messages import MessagesWalk
from .walk_responses import ResponsesWalk

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

logger = logging.getLogger("asgi_aigw.redact")


class PIIBlocked(UnprocessableContent):
    """422: the request holds PII of a type configured as ``block``."""

    code = "pii_blocked"


class RedactionUnavailable(GatewayError):
    """503: the PII analyzer failed; the request is refused rather than sent unredacted."""

    status = 503
    type = "server_error"
    code = "redaction_unavailable"


class RedactMiddleware:
    """Find PII with Presidio, replace it with placeholders (or mask it, or refuse the request), and
    restore the placeholders in the answer, JSON or streamed. See docs/redaction.md.

    Every setting is in ``config``. Injected: ``analyzer``, a Presidio ``AnalyzerEngine`` (or a callable
    returning one); by default the process-wide one of ``asgi_aigw.runtime.pii.get_analyzer``.
    """

    #: Spends nothing and passes requests on: a budget outside may let a cache inside look first (see
    #: :mod:`asgi_aigw.kernel.gate`).
    budget_gate = "transparent"

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: RedactConfig | None = None,
        analyzer: AnalyzerEngine | Callable[[], AnalyzerEngine] | None = None,
    ) -> None:
        self.app = app
        self.config = config or RedactConfig()
        self.scanner = Scanner(self.config, analyzer)
        #: Recent bodies in which nothing was found, per tenant and route (see :class:`BodyMemo`).
        self._clean: BodyMemo[bool] = BodyMemo()
        self.max_body_bytes = self.config.max_body_bytes
        self.body_timeout = self.config.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # the engine is built (in a worker thread) before the server takes requests, not in the
            # first one: 0.15 s regex-only, seconds with spaCy's model
            await lifespan_passthrough(self.app, scope, receive, send, on_startup=self.scanner.warm_up)
            return
        route = classify(scope)
        if route in PROMPT_ROUTES or (route == "embeddings" and self.config.scan_embeddings):
            await self._handle(route, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _handle(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        scope, ctx = ensure_context(scope)
        # every refusal in the client's own format (Anthropic's error shape on the Messages routes)
        dialect = dialect_for(route)
        try:
            scope, receive, body = await read_json(
                scope, receive, limit=self.max_body_bytes, time_limit=self.body_timeout
            )
        except ClientDisconnect:
            return
        except GatewayError as exc:
            await send_error(send, exc, dialect=dialect)
            return
        raw, tenant = body.raw, ctx.tenant_id or ""
        tap_answer = route != "embeddings"  # embeddings answers hold vectors, nothing to restore
        if self._clean.get(tenant, route, raw):
            # the tenant sent these very bytes before and nothing was found in them (an exact cache
            # hit, a retry): the same scan would find nothing again
            ctx.body_redacted = True
            await self.app(scope, receive, self._answer_tap(route, send, None) if tap_answer else send)
            return
        data = body.data
        try:
            walk = _walk(route, self.config, data)
        except GatewayError as exc:  # a role the scanner does not know
            await send_error(send, exc, dialect=dialect)
            return
        fields = walk.fields
        try:
            findings = await self.scanner.scan([field.text for field in fields], ctx.tenant_id or "")
        except Exception:
            # never forward what could not be checked
            logger.exception("PII analysis failed; refusing the request")
            await send_error(
                send,
                RedactionUnavailable(
                    "The gateway could not check this request for personal data, so it was not sent. "
                    "Retry later; if it persists, the gateway's PII analyzer needs attention (see its logs)."
                ),
                dialect=dialect,
            )
            return

        try:
            # the lookalikes are looked for only if something was found (a partial, not a closure: a
            # closure's cells would be made for every request)
            mapping = (
                self._redact(fields, findings, partial(_lookalikes, body, walk), ctx)
                if any(findings)
                else None
            )
        except PIIBlocked as exc:
            await send_error(send, exc, dialect=dialect)
            return
        # the body as it now stands may be logged (it was redacted); see logs/row.py
        ctx.body_redacted = True
        if not any(findings):
            self._clean.put(tenant, route, raw, True)
        if mapping is None:  # nothing to change: the client's bytes go on untouched
            await self.app(scope, receive, self._answer_tap(route, send, None) if tap_answer else send)
            return
        for source in walk.sources:
            source.encode()
        body.mark_changed()
        answer = self._answer_tap(route, send, mapping) if tap_answer else send
        await self.app(forward_scope(scope, body), receive, answer)

    def _redact(
        self,
        fields: list[Scanned],
        findings: list[tuple[Finding, ...]],
        lookalikes: Callable[[], set[str]],
        ctx: RequestContext,
    ) -> PlaceholderMap | None:
        """Rewrite the fields in place; the placeholder map, or None when nothing changed."""
        plans = [plan(found, self.config) for found in findings]
        counts: Counter[str] = Counter(item.entity_type for replacements in plans for item in replacements)
        for entity, count in counts.items():
            ctx.pii_entities[entity] = ctx.pii_entities.get(entity, 0) + count
        blocked: dict[str, list[str]] = {}
        for field, replacements in zip(fields, plans, strict=True):
            for item in replacements:
                if item.action == "block":
                    places = blocked.setdefault(item.entity_type, [])
                    if field.location not in places:
                        places.append(field.location)
        if blocked:
            raise _blocked_error(blocked)
        if not counts:
            return None
        mapping = PlaceholderMap(lookalikes())
        changes: list[tuple[TextField, str]] = []
        for field, replacements in zip(fields, plans, strict=True):
            if replacements:
                changes.extend(apply(field, replacements, mapping, self.config))
        # values first: a value is written under its key, which a key change would rename
        for target, text in sorted(changes, key=lambda change: change[0].is_key):
            target.set(text)
        return mapping

    def _answer_tap(self, route: str, send: Send, mapping: PlaceholderMap | None) -> Send:
        scan = self.config.scan_answer and route != "count_tokens"
        if not mapping and not scan:
            return send
        outer: Send = _AnswerScanner(send, self.scanner, self.config, mapping, route) if scan else send
        if not mapping:
            return outer
        if route == "responses":
            restorer = ResponsesStreamRestorer(mapping)
            return ResponseTap(outer, on_json=ResponsesJSONRestorer(mapping), on_event=restorer.on_event)
        if route != "chat":
            events = MessagesStreamRestorer(mapping)
            return ResponseTap(outer, on_json=MessagesJSONRestorer(mapping), on_event=events.on_event)
        stream = StreamRestorer(mapping)
        return ResponseTap(
            outer, on_json=JSONRestorer(mapping), on_event=stream.on_event, on_end=stream.on_end
        )


def _lookalikes(body: JSONBody, walk: Walk) -> set[str]:
    """Placeholder-shaped strings the client wrote itself: never allocated (see placeholders.py);
    looked for only when the raw body could hold one. The scanned texts count too: decoded tool-call
    arguments may hold one that was escaped in the body."""
    raw = body.raw
    if b"<" not in raw and b"\\u003" not in raw:
        return set()
    data, fields = body.data, walk.fields
    if not isinstance(walk, MessagesWalk):
        return placeholders_in(data) | placeholders_in([field.text for field in fields])
    # a signed thinking block's placeholders are the gateway's own from an earlier answer (the
    # provider verifies the signature): reserving them would renumber this turn's values
    counts = placeholder_counts(data)
    counts.subtract(placeholder_counts(walk.signed))
    groups = [field.text for field in fields if isinstance(field, TextGroup)]
    return {name for name, count in counts.items() if count > 0} | placeholders_in(groups)


def _walk(route: str, config: RedactConfig, data: dict[str, Any]) -> Walk:
    """The strings of ``data`` to scan, walked as the route's format defines them."""
    if route == "chat":
        return Walk(config).chat(data)
    if route in ("messages", "count_tokens"):
        return MessagesWalk(config).messages(data)
    if route == "responses":
        return ResponsesWalk(config).responses(data)
    if route == "embeddings":
        return Walk(config).embeddings(data)
    # a route without a walk of its own (a dialect added to the kernel's PROMPT_ROUTES before this
    # module learnt it) is refused, never forwarded half-scanned
    raise GatewayError(
        f"This gateway redacts personal data and cannot yet do so on the {route} route, so the request "
        "was not sent. Use the Chat Completions, Messages or Responses API, or ask the operator to turn "
        "redaction off for this route.",
        status=400,
        type="invalid_request_error",
        code="redaction_unsupported",
    )


def _blocked_error(blocked: dict[str, list[str]]) -> PIIBlocked:
    described = "; ".join(f"{entity} in {', '.join(places)}" for entity, places in sorted(blocked.items()))
    return PIIBlocked(
        f"The request contains personal data this gateway does not forward: {described}. "
        "Remove it (or ask the gateway's operator to change the redact actions) and retry.",
        param=next(iter(sorted(blocked.items())))[1][0],
    )


class _AnswerScanner:
    """A ``send`` that masks PII the request did not contain in a JSON answer (chat's message
    content, a Messages answer's text blocks, a Responses answer's output text and refusals).

    It sits outside the restorer, so it sees the answer with the request's own values already
    restored, and masks only what is new. The JSON answer is held until it is complete (it is
    already, for the restorer) and analysed in a worker thread; streams pass untouched.
    """

    def __init__(
        self,
        send: Send,
        scanner: Scanner,
        config: RedactConfig,
        mapping: PlaceholderMap | None,
        route: str = "chat",
    ) -> None:
        self._send = send
        self._route = route
        self._scanner = scanner
        self._config = config
        #: the request's own values, restored in the answer on purpose: not masked
        self._known = set(mapping.values.values()) if mapping else set()
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", ()))
            if headers.get(b"content-type", b"").startswith(b"application/json"):
                self._start = message
                return
            await self._send(message)
            return
        if message["type"] != "http.response.body" or self._start is None:
            await self._send(message)
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self._chunks)
        masked = await self._mask(body)
        start = self._start
        self._start = None
        if masked is not None:
            body = masked
            kept = without_headers(start.get("headers", ()), CONTENT_LENGTH)
            kept.append((b"content-length", str(len(body)).encode()))
            start = {**start, "headers": kept}
        await self._send(start)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def _mask(self, body: bytes) -> bytes | None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if self._route == "chat":
            fields = _answer_texts(data)
        elif self._route == "responses":
            fields = _output_texts(data)
        else:
            fields = _message_texts(data)
        if not fields:
            return None
        results = await self._scanner.analyze([field.text for field in fields])
        changed = False
        mask_all = self._config.model_copy(update={"actions": {}, "default_action": "mask"})
        for field, found in zip(fields, results, strict=True):
            new = [f for f in found if field.text[f.start : f.end] not in self._known]
            replacements = plan(new, mask_all)
            if replacements:
                field.set(rewrite(field, replacements, PlaceholderMap(), mask_all))
                changed = True
        return orjson.dumps(data) if changed else None


def _answer_texts(data: Any) -> list[TextField]:
    """The message content of each choice of a chat completion."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        return []
    return [
        TextField(message, "content", f"choices[{i}].message.content", message["content"])
        for i, choice in enumerate(choices)
        if isinstance(choice, dict)
        and isinstance(message := choice.get("message"), dict)
        and isinstance(message.get("content"), str)
    ]


def _message_texts(data: Any) -> list[TextField]:
    """The text blocks of a Messages answer (thinking is signed: never rewritten)."""
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        return []
    return [
        TextField(block, "text", f"content[{i}].text", block["text"])
        for i, block in enumerate(content)
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]


def _output_texts(data: Any) -> list[TextField]:
    """The ``output_text`` and ``refusal`` parts of a Responses answer's message items."""
    output = data.get("output") if isinstance(data, dict) else None
    if not isinstance(output, list):
        return []
    fields: list[TextField] = []
    for i, item in enumerate(output):
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for j, part in enumerate(item.get("content") or ()):
            if not isinstance(part, dict):
                continue
            key = "text" if part.get("type") == "output_text" else "refusal"
            if part.get("type") in ("output_text", "refusal") and isinstance(part.get(key), str):
                fields.append(TextField(part, key, f"output[{i}].content[{j}].{key}", part[key]))
    return fields


__all__ = ["PIIBlocked", "RedactMiddleware", "RedactionUnavailable", "restore_json_value"]
