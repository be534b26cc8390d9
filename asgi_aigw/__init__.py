"""asgi_aigw: an AI gateway you mount inside your own ASGI app.

Stackable pure-ASGI middlewares (tenant, budget, redaction, semantic cache, request log, traces) and one ASGI
app, :class:`ProviderRouter`, serving the OpenAI API routed to OpenAI, Anthropic, Gemini or Ollama.
Every component is built the same way: ``XMiddleware(app, config=XConfig(...))``, and
``ProviderRouter(RouterConfig(...))``; :func:`build_app` builds the whole stack from a
:class:`GatewayConfig`, whose sections are those configs.
"""

# first, before any module of the package imports httpx: see kernel/httpx_import.py
from .kernel import httpx_import  # noqa: F401

# isort: split
from .app import build_app, build_stack
from .budget import BudgetConfig, BudgetMiddleware
from .cache import CacheConfig, SemanticCacheMiddleware
from .config import GatewayConfig, load_config
from .kernel.body import JSONBody, read_json
from .kernel.context import Identity, RequestContext, Usage, get_context
from .kernel.errors import ConfigError, GatewayError
from .kernel.mount import mount_router
from .logs import LogConfig, RequestLogMiddleware, UsageRow, aread_usage, read_usage
from .redact import RedactConfig, RedactMiddleware
from .router import ProviderRouter, RouterConfig
from .tenant import TenantConfig, TenantMiddleware
from .trace import TraceConfig, TraceMiddleware

__version__ = "0.1.0"

__all__ = [
    "BudgetConfig",
    "BudgetMiddleware",
    "CacheConfig",
    "ConfigError",
    "GatewayConfig",
    "GatewayError",
    "Identity",
    "JSONBody",
    "LogConfig",
    "ProviderRouter",
    "RedactConfig",
    "RedactMiddleware",
    "RequestContext",
    "RequestLogMiddleware",
    "RouterConfig",
    "SemanticCacheMiddleware",
    "TenantConfig",
    "TenantMiddleware",
    "TraceConfig",
    "TraceMiddleware",
    "Usage",
    "UsageRow",
    "__version__",
    "aread_usage",
    "build_app",
    "build_stack",
    "get_context",
    "load_config",
    "mount_router",
    "read_json",
    "read_usage",
]
