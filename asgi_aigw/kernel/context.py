"""The per-request :class:`RequestContext`, shared by every layer through ``scope["state"]``.

One context per request, created by the outermost layer that needs it. A layer records what it learned
(tenant, parsed body, token estimate, cache outcome, provider, usage, timings) so its neighbours need not
recompute it; a layer running alone finds an empty context and falls back to the wire.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .types import Scope
from .unique_ids import IdSource

if TYPE_CHECKING:
    from .body import JSONBody
    from .gate import BudgetGate
    from .tracing import AttemptTracer

STATE_KEY = "asgi_aigw"

#: The context of the request being handled, for log records and code far from the ASGI scope.
current_context: ContextVar[RequestContext | None] = ContextVar("asgi_aigw_context", default=None)
#: The tenant of the request being handled (set by TenantMiddleware), for log records.
current_tenant: ContextVar[str | None] = ContextVar("asgi_aigw_tenant", default=None)


#: Request ids: unique without a syscall per request.
_IDS = IdSource(6)


def new_request_id() -> str:
    return f"{_IDS.prefix}{_IDS.next_number():012x}"


@dataclass(slots=True)
class Usage:
    """Token usage as the provider reported it (OpenAI's field names)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    #: Input tokens read from the provider's prompt cache (included in ``prompt_tokens``).
    cached_tokens: int = 0
    #: True when the figures were counted or estimated by the gateway, not reported by the provider.
    estimated: bool = False
    #: Input tokens written to the provider's prompt cache (Anthropic's ``cache_creation_input_tokens``,
    #: included in ``prompt_tokens``; priced above plain input).
    cache_write_tokens: int = 0
    #: Output tokens spent thinking (OpenAI's ``completion_tokens_details.reasoning_tokens``, Gemini's
    #: ``thoughtsTokenCount``), included in ``completion_tokens`` and priced as output.
    reasoning_tokens: int = 0
    #: Of ``cache_write_tokens``, those written with a 1-hour lifetime (Anthropic's
    #: ``cache_creation.ephemeral_1h_input_tokens``), priced above 5-minute writes.
    cache_write_1h_tokens: int = 0

    def copy(self) -> Usage:
        """Another object with the same figures."""
        return Usage(
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cached_tokens,
            self.estimated,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.cache_write_1h_tokens,
        )

    @classmethod
    def from_openai(cls, data: Any) -> Usage | None:
        """Read an OpenAI ``usage`` object; ``None`` when absent or malformed."""
        if not isinstance(data, dict):
            return None
        try:
            prompt = int(data.get("prompt_tokens") or 0)
            completion = int(data.get("completion_tokens") or 0)
            total = int(data.get("total_tokens") or prompt + completion)
            details = data.get("prompt_tokens_details")
            if not isinstance(details, dict):
                details = {}
            cached = int(details.get("cached_tokens") or 0)
            # OpenAI reports prompt-cache writes here too (priced apart where a provider charges them)
            written = int(details.get("cache_write_tokens") or 0)
            output = data.get("completion_tokens_details")
            reasoning = int(output.get("reasoning_tokens") or 0) if isinstance(output, dict) else 0
        except (TypeError, ValueError):
            return None
        return cls(prompt, completion, total, cached, cache_write_tokens=written, reasoning_tokens=reasoning)

    @classmethod
    def from_anthropic(cls, data: Any) -> Usage | None:
        """Read an Anthropic ``usage`` object. Its ``input_tokens`` excludes cache reads and writes;
        ``prompt_tokens`` here includes both, as OpenAI's does."""
        if not isinstance(data, dict):
            return None
        try:
            read = int(data.get("cache_read_input_tokens") or 0)
            write = int(data.get("cache_creation_input_tokens") or 0)
            # the writes by lifetime (``cache_creation``), beside their total: an answer may carry either
            split = data.get("cache_creation")
            if not isinstance(split, dict):
                split = {}
            hour = int(split.get("ephemeral_1h_input_tokens") or 0)
            write = write or hour + int(split.get("ephemeral_5m_input_tokens") or 0)
            prompt = int(data.get("input_tokens") or 0) + read + write
            completion = int(data.get("output_tokens") or 0)
        except (TypeError, ValueError):
            return None
        return cls(
            prompt,
            completion,
            prompt + completion,
            read,
            cache_write_tokens=write,
            cache_write_1h_tokens=min(max(hour, 0), write),
        )

    def to_anthropic(self) -> dict[str, Any]:
        """Anthropic's ``usage`` object for these figures."""
        out: dict[str, Any] = {
            "input_tokens": max(0, self.prompt_tokens - self.cached_tokens - self.cache_write_tokens),
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cached_tokens,
            "output_tokens": self.completion_tokens,
        }
        if self.cache_write_tokens:
            # the writes by lifetime, so a replayed answer is priced as the first one was
            out["cache_creation"] = {
                "ephemeral_5m_input_tokens": max(0, self.cache_write_tokens - self.cache_write_1h_tokens),
                "ephemeral_1h_input_tokens": self.cache_write_1h_tokens,
            }
        return out

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


#: ``ctx.extra`` key, true once a before-hook changed the request body: the answer is then to the body
#: the hook sent, which may depend on who asked, not to the client's body the cache is keyed by.
BODY_CHANGED_BY_HOOK = "hooks.body_changed"


@dataclass(slots=True, eq=False)
class RequestContext:
    """What the layers know about one request. Values, never PII: the redaction map stays in Redact."""

    request_id: str = field(default_factory=new_request_id)
    #: Wall-clock start (seconds since the epoch) and a monotonic start for durations.
    started_at: float = field(default_factory=time.time)
    started_perf: float = field(default_factory=time.perf_counter)

    #: "chat", "messages", "count_tokens", "responses", "embeddings", "models" or None for requests the
    #: gateway does not handle.
    route: str | None = None
    #: Who pays (the budget and cache key) and who asked (recorded in the log); see :class:`Identity`.
    tenant_id: str | None = None
    user_id: str | None = None
    #: Where the identity came from: "app" (the host app's own login), "jwt", "api_key", "header",
    #: "default"; None before TenantMiddleware or an in-app adapter ran.
    identity_source: str | None = None
    #: The id of the gateway API key that identified the request (its public part, never the secret);
    #: None when no key did.
    key_id: str | None = None
    #: The request body, read and parsed once (see :mod:`asgi_aigw.kernel.body`).
    body: JSONBody | None = None
    #: The model the client asked for, and whether it asked for a stream.
    model: str | None = None
    stream: bool = False

    #: Prompt tokens + max output tokens as estimated before the call (BudgetMiddleware).
    token_estimate: int | None = None
    #: Remaining budget figures after this request's reservation, by window name.
    budget_remaining: dict[str, float] = field(default_factory=dict)
    #: What BudgetMiddleware decided: "allowed", "refused" (over a limit: 429), "invalid" (refused for
    #: another reason: no valid tenant, a bad output cap, an unpriced model), "error" (its store failed
    #: closed), "unmetered" (its store failed open); None when no budget ran.
    budget_decision: str | None = None
    #: PII entity types found in the request and how many of each (never the values).
    pii_entities: dict[str, int] = field(default_factory=dict)
    #: True once RedactMiddleware scanned the body and rewrote what it found: only then may the
    #: request log store the body (a request refused before, or without, redaction is logged without).
    body_redacted: bool = False
    #: "hit-exact", "hit-semantic", "miss", "bypass" or None when no cache ran.
    cache_status: str | None = None
    cache_score: float | None = None
    #: True when the cache left this answer out of its semantic layer (too many stores under way).
    cache_store_skipped: bool = False

    #: Who answered: provider name ("openai", "anthropic", ...), upstream model, deployment id.
    provider: str | None = None
    upstream_model: str | None = None
    deployment: str | None = None
    attempts: int = 0
    usage: Usage | None = None
    cost: float | None = None

    #: The HTTP status sent to the client, and the error code if the answer was an error.
    status: int | None = None
    error_code: str | None = None
    #: Set when the client went away before the answer was complete.
    client_disconnected: bool = False
    #: Monotonic instants (time.perf_counter) of the first body byte sent and the end of the response.
    first_byte_at: float | None = None
    finished_at: float | None = None

    #: Starts a span per upstream attempt when TraceMiddleware traces this request (else None).
    tracer: AttemptTracer | None = None
    #: Set by BudgetMiddleware when the cache inside it is to look before it reserves (see
    #: :mod:`asgi_aigw.kernel.gate`); None otherwise.
    budget_gate: BudgetGate | None = None

    #: Free space for layers and applications, namespaced by the writer ("cache.key", ...).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_perf) * 1000.0

    @property
    def ttfb_ms(self) -> float | None:
        if self.first_byte_at is None:
            return None
        return (self.first_byte_at - self.started_perf) * 1000.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: ``tenant`` pays (budgets and cache are keyed by it), ``user`` asked (per-user
    limits, log rows). The host app's authentication returns one; a bare string means a tenant."""

    tenant: str
    user: str | None = None


def set_identity(ctx: RequestContext, identity: Identity, source: str) -> None:
    """Record a verified identity in the context, for every layer after this one."""
    ctx.tenant_id = identity.tenant
    ctx.user_id = identity.user
    ctx.identity_source = source


def get_context(scope: Scope) -> RequestContext | None:
    """The request's context if a layer created one, else ``None``."""
    state = scope.get("state")
    if state is None:
        return None
    ctx = state.get(STATE_KEY)
    return ctx if isinstance(ctx, RequestContext) else None


def ensure_context(scope: Scope) -> tuple[Scope, RequestContext]:
    """Return the request's context, creating it (and ``scope["state"]``) when no layer has yet.

    The server's ``scope["state"]`` is already a per-request copy (ASGI spec), so the context is put
    into it; when there is none, the scope is copied rather than mutated and the copy is returned.
    """
    state = scope.get("state")
    if state is not None:
        ctx = state.get(STATE_KEY)
        if isinstance(ctx, RequestContext):
            return scope, ctx
        ctx = RequestContext()
        state[STATE_KEY] = ctx
    else:
        ctx = RequestContext()
        scope = {**scope, "state": {STATE_KEY: ctx}}
    current_context.set(ctx)
    return scope, ctx
