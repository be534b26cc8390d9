"""The request log row: every column filled from the context, in table order."""

from __future__ import annotations

from asgi_aigw.kernel.context import RequestContext, Usage
from asgi_aigw.logs.row import COLUMN_NAMES, build_row


def test_a_row_fills_every_column_in_table_order() -> None:
    ctx = RequestContext(tenant_id="acme", user_id="u1", key_id="k1", route="chat", model="m")
    ctx.provider, ctx.upstream_model, ctx.deployment, ctx.attempts = "openai", "m-1", "d1", 1
    ctx.status, ctx.error_code, ctx.cache_status, ctx.cache_score = 200, "e", "hit-semantic", 0.9
    ctx.usage = Usage(3, 2, 5, 1, cache_write_tokens=1, reasoning_tokens=1, cache_write_1h_tokens=1)
    ctx.token_estimate, ctx.cost = 9, 0.5
    ctx.first_byte_at = ctx.finished_at = ctx.started_perf + 0.25
    ctx.pii_entities["EMAIL_ADDRESS"] = 1
    ctx.budget_remaining["tokens_per_minute"] = 10.0
    row = build_row(ctx, method="POST", path="/v1/chat/completions", route="chat")
    assert tuple(row) == COLUMN_NAMES
    assert [name for name, value in row.items() if value is None] == []
    assert (row["tenant"], row["dialect"], row["total_tokens"]) == ("acme", "chat", 5)
    assert row["latency_ms"] == row["ttfb_ms"] == 250.0
    assert row["pii_entities"] == {"EMAIL_ADDRESS": 1}
    assert row["pii_entities"] is not ctx.pii_entities
