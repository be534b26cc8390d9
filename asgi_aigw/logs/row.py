"""The request log row: its columns (with their ClickHouse types) and how it is built from a context.

A row is a plain ``dict`` so every sink can take it as is (JSONL writes it, memory keeps it, ClickHouse
inserts it column by column). It holds values and counts, never prompt or answer text, unless the
configuration asks for the request body: then the body as RedactMiddleware left it, and only when it
ran to the end (no body for requests it did not scan).
"""

from __future__ import annotations

from typing import Any

from ..kernel.context import RequestContext
from ..kernel.dialects import DIALECTS

LogRow = dict[str, Any]

#: Column name and ClickHouse type, in table order. ``timestamp`` is the request start in ms since the
#: epoch (UTC); ``latency_ms`` runs to the last byte sent, ``ttfb_ms`` to the first body byte.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "DateTime64(3, 'UTC')"),
    ("request_id", "String"),
    ("tenant", "LowCardinality(String)"),
    # who asked (the tenant pays); many more values than tenants, so not LowCardinality. Tables made
    # before this column get it added by the sink (``ADD COLUMN IF NOT EXISTS``), empty for old rows.
    ("user_id", "String"),
    # the id of the gateway API key that identified the request (never the key itself), empty when
    # none did: spend per key. Added to older tables by the sink.
    ("key_id", "LowCardinality(String)"),
    ("route", "LowCardinality(String)"),
    # the wire format the client spoke: "chat" (OpenAI Chat Completions), "messages" (Anthropic
    # Messages, count_tokens included) or "responses" (OpenAI Responses); empty for other routes.
    # Added to older tables by the sink.
    ("dialect", "LowCardinality(String)"),
    ("method", "LowCardinality(String)"),
    ("path", "String"),
    ("model", "LowCardinality(String)"),
    ("stream", "Bool"),
    ("provider", "LowCardinality(String)"),
    ("upstream_model", "LowCardinality(String)"),
    ("deployment", "LowCardinality(String)"),
    ("attempts", "UInt8"),
    ("status", "UInt16"),
    ("error_code", "LowCardinality(String)"),
    ("client_disconnected", "Bool"),
    ("cache_status", "LowCardinality(String)"),
    ("cache_score", "Nullable(Float32)"),
    ("prompt_tokens", "UInt32"),
    ("completion_tokens", "UInt32"),
    ("total_tokens", "UInt32"),
    ("cached_tokens", "UInt32"),
    # prompt tokens written to the provider's prompt cache (Anthropic's cache_creation_input_tokens);
    # like cached_tokens (reads), included in prompt_tokens
    ("cache_write_tokens", "UInt32"),
    # completion tokens spent thinking (OpenAI's reasoning_tokens, Gemini's thoughtsTokenCount);
    # included in completion_tokens. Added to older tables by the sink.
    ("reasoning_tokens", "UInt32"),
    # of cache_write_tokens, those written for an hour (Anthropic's ttl "1h" breakpoints), priced
    # above 5-minute writes. Added to older tables by the sink.
    ("cache_write_1h_tokens", "UInt32"),
    ("usage_estimated", "Bool"),
    ("token_estimate", "Nullable(UInt32)"),
    ("cost", "Nullable(Float64)"),
    ("latency_ms", "Float64"),
    ("ttfb_ms", "Nullable(Float64)"),
    ("pii_entities", "Map(LowCardinality(String), UInt32)"),
    ("budget_remaining", "Map(LowCardinality(String), Float64)"),
    ("request_body", "String"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
COLUMN_TYPES: tuple[str, ...] = tuple(kind for _, kind in COLUMNS)

#: Status recorded when the client left before any response was sent (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


def build_row(
    ctx: RequestContext,
    *,
    method: str,
    path: str,
    route: str | None,
    log_body: bool = False,
    max_body_chars: int = 65536,
) -> LogRow:
    """The row for a finished request, from what the layers recorded in ``ctx``."""
    usage = ctx.usage
    finished = ctx.finished_at if ctx.finished_at is not None else ctx.started_perf
    body = ""
    # only a body RedactMiddleware has scanned: a request refused before redaction ran (a budget 429,
    # a 422 for blocked PII, a 400) still holds the client's own bytes
    if log_body and ctx.body is not None and ctx.body_redacted:
        body = ctx.body.raw[: max_body_chars * 4].decode("utf-8", "replace")[:max_body_chars]
    # one dict display in table order (built in a few sized steps); :data:`COLUMN_NAMES` is its order
    return {
        "timestamp": int(ctx.started_at * 1000),
        "request_id": ctx.request_id,
        "tenant": ctx.tenant_id or "",
        "user_id": ctx.user_id or "",
        "key_id": ctx.key_id or "",
        "route": ctx.route or route or "",
        "dialect": _dialect(ctx.route or route),
        "method": method,
        "path": path,
        "model": ctx.model or "",
        "stream": ctx.stream,
        "provider": ctx.provider or "",
        "upstream_model": ctx.upstream_model or "",
        "deployment": ctx.deployment or "",
        "attempts": min(ctx.attempts, 255),
        "status": ctx.status or 0,
        "error_code": ctx.error_code or "",
        "client_disconnected": ctx.client_disconnected,
        "cache_status": ctx.cache_status or "",
        "cache_score": ctx.cache_score,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "cached_tokens": usage.cached_tokens if usage else 0,
        "cache_write_tokens": usage.cache_write_tokens if usage else 0,
        "reasoning_tokens": usage.reasoning_tokens if usage else 0,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens if usage else 0,
        "usage_estimated": usage.estimated if usage else False,
        "token_estimate": ctx.token_estimate,
        "cost": ctx.cost,
        "latency_ms": (finished - ctx.started_perf) * 1000.0,
        "ttfb_ms": ctx.ttfb_ms,
        # copies: the context may still be referenced (and changed) by the application
        "pii_entities": dict(ctx.pii_entities),
        "budget_remaining": dict(ctx.budget_remaining),
        "request_body": body,
    }


def _dialect(route: str | None) -> str:
    """The dialect a route speaks (``chat``, ``messages``, ``responses``), ``""`` for other routes."""
    dialect = DIALECTS.get(route or "")
    return dialect.name if dialect is not None else ""
