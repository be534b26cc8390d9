"""Gateway configuration: one section per component, loadable from YAML with ``${ENV_VAR}``
interpolation. Each section is that component's ``config`` (``router:`` is ``RouterConfig``, ``budget:``
is ``BudgetConfig``, ...), so the YAML and the Python API say the same things.

```yaml
prefix: /ai
router:                              # RouterConfig: models, providers, retries
  models: [{name: fast, deployments: [{provider: openai, model: gpt-4o-mini}]}]
tenant: {jwt: {algorithms: [RS256], jwks_url: "${JWKS_URL}"}}     # TenantConfig
budget: {store: "redis://redis:6379/0", limits: {tokens_per_minute: 100000}}   # BudgetConfig
```

``${VAR}`` must be set; ``${VAR:-default}`` falls back to ``default`` (which may be empty).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from .budget.config import BudgetConfig
from .cache.config import CacheConfig
from .dashboard.config import DashboardConfig
from .kernel.config import ConfigSection
from .kernel.errors import ConfigError
from .logs.config import LogConfig
from .redact.config import RedactConfig
from .router.config import RouterConfig
from .runtime.config import RuntimeConfig
from .tenant.config import TenantConfig
from .trace.config import TraceConfig

__all__ = ["ConfigError", "GatewayConfig", "ServerConfig", "interpolate_env", "load_config", "parse_config"]


class ServerConfig(ConfigSection):
    """Defaults for ``aigw serve`` (its ``--host``, ``--port`` and ``--workers`` win)."""

    #: Interface to bind (``0.0.0.0`` for every interface).
    host: str = "127.0.0.1"
    #: Port to listen on.
    port: int = Field(default=8000, ge=0, le=65535)
    #: uvicorn worker processes (see docs/deployment.md for the stores several workers need).
    workers: int = Field(default=1, ge=1)


class GatewayConfig(ConfigSection):
    """The whole gateway: one section per component, each the ``config`` of that component."""

    #: Where ``build_app`` mounts the router.
    prefix: str = "/ai"
    #: The router: models, providers, body limit, connection pool, retries, cooldowns, prefix routing.
    router: RouterConfig = Field(default_factory=RouterConfig)
    #: Defaults for ``aigw serve``.
    server: ServerConfig = Field(default_factory=ServerConfig)
    #: Where the tokenizer, embedding model and NER model come from (see docs/offline.md).
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    #: The semantic cache (SemanticCacheMiddleware); off when absent.
    cache: CacheConfig | None = None
    #: Request log (one row per request, ClickHouse/chDB/JSONL) and Prometheus metrics; off when None.
    log: LogConfig | None = None
    #: PII redaction (RedactMiddleware); off when absent.
    redact: RedactConfig | None = None
    #: TenantMiddleware (see docs/tenants.md); off when absent.
    tenant: TenantConfig | None = None
    #: BudgetMiddleware (see docs/budgets.md); off when absent.
    budget: BudgetConfig | None = None
    #: OpenTelemetry spans (TraceMiddleware, see docs/tracing.md); off when absent.
    trace: TraceConfig | None = None
    #: The usage dashboard at ``{prefix}/dashboard`` (see docs/dashboard.md); off when absent.
    dashboard: DashboardConfig | None = None


_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset ``${VAR}`` is a :class:`ConfigError`."""
    environ = os.environ if env is None else env
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None:
            if default is None:
                missing.append(name)
                return ""
            return default
        return value

    result = _ENV_PATTERN.sub(substitute, text)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise ConfigError(
            f"The configuration uses environment variables that are not set: {names}. "
            "Set them, or write ${NAME:-default} to make one optional."
        )
    return result


#: Options renamed in 0.2 (old path -> new path), reported instead of a bare "extra field" error.
_RENAMED: dict[tuple[str, ...], str] = {
    ("models",): "router.models",
    ("providers",): "router.providers",
    ("tenant", "default"): "tenant.default_tenant",
    ("budget", "anonymous_tenant"): "budget.default_tenant",
    ("cache", "exact"): "cache.store",
    ("cache", "vector"): "cache.vector_store",
    ("log", "sink"): "log.store",
}


def _renamed_options(data: Any) -> list[str]:
    found = []
    for path, new in _RENAMED.items():
        node = data
        for key in path:
            node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            found.append(f"  {'.'.join(path)}: renamed to {new} in 0.2")
    return found


_MISSING = object()


def parse_config(data: Any) -> GatewayConfig:
    """A :class:`GatewayConfig` from parsed YAML/JSON, or a :class:`ConfigError` that lists every
    problem (and every option written under its 0.1 name)."""
    renamed = _renamed_options(data)
    if renamed:
        raise ConfigError(
            "The configuration uses option names of asgi_aigw 0.1 (see docs/upgrading.md):\n"
            + "\n".join(renamed)
        )
    try:
        return GatewayConfig.model_validate(data or {})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError("Invalid gateway configuration:\n" + "\n".join(lines)) from None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read a YAML (or JSON) configuration file, interpolating environment variables first."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot read the configuration file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(interpolate_env(text, env))
    except yaml.YAMLError as exc:
        raise ConfigError(f"The configuration file {file} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"The configuration file {file} must hold a mapping at the top level.")
    return parse_config(data)
