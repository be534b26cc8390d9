"""Apps for bench/fullstack.py, built in each uvicorn process (``--factory``) from the environment:
``BENCH_UPSTREAM`` (FakeProvider's chat URL), ``BENCH_REDIS`` and ``BENCH_KEY_PREFIX`` (isolated keys)."""

from __future__ import annotations

import os
from typing import Any

from asgi_aigw import build_app
from asgi_aigw.config import GatewayConfig


def router_section(upstream: str) -> dict[str, Any]:
    """The router's config: ``gpt-4o-mini`` sent to the OpenAI-format ``upstream`` chat URL."""
    base_url = upstream.rsplit("/chat/completions", 1)[0]
    return {
        "models": [
            {
                "name": "gpt-4o-mini",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "base_url": base_url,
                        "api_key": "sk-bench-fake",
                    }
                ],
            }
        ]
    }


def full_stack_config(
    upstream: str | None = None, redis: str | None = None, prefix: str | None = None
) -> GatewayConfig:
    """The full stack pass-through of DESIGN.md's performance budget: tenant from a header, budgets in
    Redis (limits far above the load), regex-only PII redaction, the exact cache in Redis (a miss for
    every new body), no semantic layer (no embedding)."""
    upstream = upstream or os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9001/v1/chat/completions")
    redis = redis or os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
    prefix = prefix or os.environ.get("BENCH_KEY_PREFIX", "aigw-bench:")
    data: dict[str, Any] = {
        "router": router_section(upstream),
        "redact": {"regex_only": True},
        "cache": {"store": redis, "vector_store": None, "key_prefix": f"{prefix}cache:", "ttl": 120},
    }
    fields = GatewayConfig.model_fields
    if "tenant" in fields:
        data["tenant"] = {"header": "x-tenant-id"}
    if "budget" in fields:
        data["budget"] = {
            "store": redis,
            "key_prefix": prefix,
            "limits": {"requests_per_minute": 10**9, "tokens_per_minute": 10**12},
        }
    return GatewayConfig.model_validate(data)


def layers() -> str:
    """What the full stack holds here, for the report."""
    fields = GatewayConfig.model_fields
    names = [n for n in ("tenant", "budget") if n in fields] + ["redact (regex-only)", "cache (exact, Redis)"]
    return " + ".join(names)


def full_stack() -> Any:
    return build_app(full_stack_config(), env={})
