"""Gateway configuration: one pydantic model, loadable from YAML with ``${ENV_VAR}`` interpolation.

```yaml
prefix: /ai
models:
  - name: fast                       # the name clients send as "model"
    deployments:
      - provider: openai
        model: gpt-4o-mini
        api_key: ${OPENAI_API_KEY}
```

``${VAR}`` must be set; ``${VAR:-default}`` falls back to ``default`` (which may be empty).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .budget.config import BudgetConfig
from .cache.config import CacheConfig
from .logs.config import LogConfig
from .redact.config import RedactConfig
from .runtime.config import RuntimeConfig
from .tenant.config import TenantConfig


class ConfigError(ValueError):
    """The configuration cannot be used; the message says what to change."""


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timeouts(_Config):
    """Seconds. ``read`` bounds each wait for upstream bytes (the first byte and every gap in a stream);
    ``first_byte`` and ``idle`` tighten those two waits separately."""

    #: To open a connection (TCP and TLS).
    connect: float = Field(default=5.0, gt=0)
    #: The longest wait for upstream bytes, unless ``first_byte`` or ``idle`` say otherwise.
    read: float = Field(default=600.0, gt=0)
    #: To send the request body.
    write: float = Field(default=30.0, gt=0)
    #: To get a connection from the pool when all are busy.
    pool: float = Field(default=10.0, gt=0)
    #: Until the response headers (and, for a stream, its first chunk) arrive; unset: ``read``.
    first_byte: float | None = Field(default=None, gt=0)
    #: The longest gap between two chunks of a stream; unset: ``read``.
    idle: float | None = Field(default=None, gt=0)


class RetryConfig(_Config):
    """Retries of failed upstream calls (connect errors, timeouts, 408, 409, 425, 429, 5xx), only before
    the first byte of the answer has gone to the client."""

    #: Extra attempts once every deployment of the model has been tried (0: each deployment once).
    retries: int = Field(default=2, ge=0, le=10)
    #: Exponential backoff with full jitter: a pause of up to ``min(max, base * 2**n)`` seconds.
    backoff_base: float = Field(default=0.25, ge=0)
    #: The longest pause between two attempts, in seconds.
    backoff_max: float = Field(default=8.0, ge=0)
    #: A ``Retry-After`` longer than this is not waited for: that deployment is given up on.
    max_retry_after: float = Field(default=30.0, ge=0)


class CooldownConfig(_Config):
    """A deployment that keeps failing is skipped for a while (per process, per deployment)."""

    #: Consecutive failed attempts that put a deployment in cooldown (0 turns cooldowns off).
    failures: int = Field(default=3, ge=0)
    #: Seconds a deployment stays out of rotation (a longer upstream ``Retry-After`` wins).
    seconds: float = Field(default=30.0, ge=0)


class ProviderSettings(_Config):
    """Defaults for every deployment of one provider (a deployment's own fields win)."""

    #: The provider's API root (an OpenAI-compatible server: ``http://host:8000/v1``); unset: its own.
    base_url: str | None = None
    #: The API key (write ``${VAR}`` to read it from the environment).
    api_key: SecretStr | None = None
    #: Name of an environment variable holding the key, read when the router starts.
    api_key_env: str | None = None
    #: Extra headers sent with every upstream request.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Unset: the defaults of ``Timeouts``.
    timeouts: Timeouts | None = None


class DeploymentConfig(_Config):
    """One place a model can be served from: a provider, its model name, and how to reach it."""

    #: ``openai`` (and any OpenAI-compatible server), ``anthropic``, ``gemini`` or ``ollama``.
    provider: str = "openai"
    #: The model name the provider knows.
    model: str
    #: As in ``providers``; a deployment's own settings win over its provider's.
    base_url: str | None = None
    #: As in ``providers``.
    api_key: SecretStr | None = None
    #: As in ``providers``.
    api_key_env: str | None = None
    #: As in ``providers`` (merged with the provider's headers).
    headers: dict[str, str] = Field(default_factory=dict)
    #: As in ``providers``.
    timeouts: Timeouts | None = None
    #: Relative share of traffic when the model's strategy is ``weighted``.
    weight: float = Field(default=1.0, gt=0)
    #: Ask for usage in streams (``stream_options.include_usage``); turn off for OpenAI-compatible
    #: servers that reject the option.
    stream_usage: bool = True
    #: A name for logs and headers; defaults to ``provider/model``.
    id: str | None = None


class ModelConfig(_Config):
    #: The model name clients send (an alias; it need not be a provider's name).
    name: str = Field(min_length=1)
    #: Where the model is served from, in order of preference for ``fallback``.
    deployments: list[DeploymentConfig] = Field(min_length=1)
    #: ``fallback``: in order, the next on failure; ``weighted``: a random order by ``weight``.
    strategy: Literal["fallback", "weighted"] = "fallback"


class RouterConfig(_Config):
    #: Larger request bodies are refused with 413.
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    #: Seconds the whole request body may take to arrive; a client that stalls gets 408.
    body_timeout: float = Field(default=30.0, gt=0)
    #: ``aiohttp`` (httpx's API over aiohttp's connection pool, the fast default) or ``httpx``.
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    #: Connections kept per upstream.
    max_connections: int = Field(default=256, ge=1)
    #: Route ``PROVIDER/MODEL`` names (``openai/gpt-4o-mini``) to providers configured in ``providers``
    #: or by their SDKs' environment variables, as LiteLLM does. ``None`` (the default): on only when no
    #: ``models`` are configured, so a configured gateway serves nothing it does not list.
    provider_prefix_routing: bool | None = None
    #: Read OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, OLLAMA_HOST (and the *_BASE_URL vars).
    providers_from_env: bool = True
    #: Retries of failed upstream calls.
    retry: RetryConfig = Field(default_factory=RetryConfig)
    #: Taking failing deployments out of rotation for a while.
    cooldown: CooldownConfig = Field(default_factory=CooldownConfig)


class ServerConfig(_Config):
    """Defaults for ``aigw serve`` (its ``--host``, ``--port`` and ``--workers`` win)."""

    #: Interface to bind (``0.0.0.0`` for every interface).
    host: str = "127.0.0.1"
    #: Port to listen on.
    port: int = Field(default=8000, ge=0, le=65535)
    #: uvicorn worker processes (see docs/deployment.md for the stores several workers need).
    workers: int = Field(default=1, ge=1)


class GatewayConfig(_Config):
    #: Where ``build_app`` mounts the router.
    prefix: str = "/ai"
    #: Settings shared by every deployment of a provider, by provider name.
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    #: The model names clients send, each with its deployments.
    models: list[ModelConfig] = Field(default_factory=list)
    #: The router: body limit, connection pool, retries, cooldowns, prefix routing.
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


def parse_config(data: Any) -> GatewayConfig:
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
