"""asgi_aigw: an AI gateway you mount inside your own ASGI app.

Stackable pure-ASGI middlewares (tenant, budget, redaction, semantic cache, request log) and one ASGI
app, :class:`ProviderRouter`, serving the OpenAI API routed to OpenAI, Anthropic, Gemini or Ollama.
"""

from .app import build_app, build_stack
from .config import ConfigError, GatewayConfig, load_config
from .kernel.body import JSONBody, read_json
from .kernel.context import RequestContext, Usage, get_context
from .kernel.errors import GatewayError
from .kernel.mount import mount_router
from .router import ProviderRouter

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "GatewayError",
    "JSONBody",
    "ProviderRouter",
    "RequestContext",
    "Usage",
    "__version__",
    "build_app",
    "build_stack",
    "get_context",
    "load_config",
    "mount_router",
    "read_json",
]
