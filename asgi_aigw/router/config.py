"""Configuration of :class:`~asgi_aigw.router.ProviderRouter` (the ``router:`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from ..hooks.config import HooksConfig
from ..kernel.config import BodyLimits, ConfigSection

#: The client headers forwarded by default: the providers' documented per-request feature switches
#: (Anthropic's beta features, OpenAI's beta APIs).
DEFAULT_FORWARD_HEADERS = ("anthropic-beta", "openai-beta")
#: Headers a client may never set upstream: credentials and the request's own framing.
_NEVER_FORWARDED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
    }
)


#: Azure OpenAI's API versions: ``v1``, or a dated one (``2024-10-21``, ``2025-04-01-preview``).
_API_VERSION = r"^(v1|\d{4}-\d{2}-\d{2}(-preview)?)$"


class Timeouts(ConfigSection):
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


class RetryConfig(ConfigSection):
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


class CooldownConfig(ConfigSection):
    """A deployment that keeps failing is skipped for a while (per process, per deployment)."""

    #: Consecutive failed attempts that put a deployment in cooldown (0 turns cooldowns off).
    failures: int = Field(default=3, ge=0)
    #: Seconds a deployment stays out of rotation (a longer upstream ``Retry-After`` wins).
    seconds: float = Field(default=30.0, ge=0)


class ProviderSettings(ConfigSection):
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
    #: Whether the server answers OpenAI's Responses API (``POST {base_url}/responses``) itself, so
    #: ``/v1/responses`` requests pass through to it as they are; otherwise they are translated to chat
    #: completions. Unset: only OpenAI's own API (provider ``openai`` at its default base URL) does.
    #: Only ``openai`` deployments can be set to true.
    responses_api: bool | None = None
    #: Azure OpenAI only: the ``api-version`` of its dated API (``2024-10-21`` when unset), or ``v1``
    #: for its v1 API (``{endpoint}/openai/v1/...``, no dated version).
    api_version: str | None = Field(default=None, pattern=_API_VERSION)


class DeploymentConfig(ConfigSection):
    """One place a model can be served from: a provider, its model name, and how to reach it."""

    #: ``openai`` (and any OpenAI-compatible server), ``anthropic``, ``gemini``, ``ollama``, ``azure``
    #: (Azure OpenAI), or an OpenAI-compatible preset: ``vllm``, ``groq``, ``deepseek``, ``mistral``,
    #: ``openrouter``, ``together``.
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
    #: As in ``providers``.
    responses_api: bool | None = None
    #: As in ``providers``.
    api_version: str | None = Field(default=None, pattern=_API_VERSION)
    #: Relative share of traffic when the model's strategy is ``weighted``.
    weight: float = Field(default=1.0, gt=0)
    #: Ask for usage in streams (``stream_options.include_usage``); turn off for OpenAI-compatible
    #: servers that reject the option.
    stream_usage: bool = True
    #: A name for logs and headers; defaults to ``provider/model``.
    id: str | None = None


class ModelConfig(ConfigSection):
    #: The model name clients send (an alias; it need not be a provider's name).
    name: str = Field(min_length=1)
    #: Where the model is served from, in order of preference for ``fallback``.
    deployments: list[DeploymentConfig] = Field(min_length=1)
    #: ``fallback``: in order, the next on failure; ``weighted``: a random order by ``weight``.
    strategy: Literal["fallback", "weighted"] = "fallback"


class RouterConfig(BodyLimits):
    """Everything :class:`~asgi_aigw.router.ProviderRouter` needs, and nothing of the middlewares: the
    model names clients send, the providers' settings, and how upstream calls are made.

    ```yaml
    router:
      models:
        - name: fast                       # the name clients send as "model"
          deployments:
            - provider: openai
              model: gpt-4o-mini
              api_key: ${OPENAI_API_KEY}
      retry: {retries: 2}
    ```
    """

    #: The model names clients send, each with its deployments.
    models: list[ModelConfig] = Field(default_factory=list)
    #: Settings shared by every deployment of a provider, by provider name.
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    #: ``lean`` (the gateway's own HTTP/1.1 client, the fastest: docs/router.md), ``aiohttp`` (aiohttp's
    #: connection pool) or ``httpx``.
    transport: Literal["aiohttp", "httpx", "lean"] = "lean"
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
    #: Client request headers passed on to the upstream, by name (a deployment's own ``headers`` win).
    #: Empty: none. Credentials and framing headers cannot be listed.
    forward_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_FORWARD_HEADERS))
    #: Async hooks named ``"package.module:callable"``, called before the provider call, after an
    #: answer, on errors and per streamed event (see docs/hooks.md); run after those given in code.
    hooks: HooksConfig = Field(default_factory=HooksConfig)

    @field_validator("forward_headers")
    @classmethod
    def _plain_headers(cls, names: list[str]) -> list[str]:
        lowered = [name.strip().lower() for name in names]
        refused = sorted(set(lowered) & _NEVER_FORWARDED)
        if refused:
            raise ValueError(
                f"{', '.join(refused)} cannot be forwarded from clients: the gateway sets credentials "
                "and framing itself (use a deployment's headers for fixed values)."
            )
        return lowered
