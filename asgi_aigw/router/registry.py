"""Model names to deployments: configured aliases, and ``PROVIDER/MODEL`` names as LiteLLM routes them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from ..kernel.errors import ConfigError, NotFound, clip
from ..providers import ADAPTERS, PRESETS, Deployment, ProviderAdapter, Timeout
from .config import DeploymentConfig, ProviderSettings, RouterConfig, Timeouts


@dataclass(frozen=True, slots=True)
class EnvProvider:
    """The environment variables a provider's own SDK reads."""

    key_vars: tuple[str, ...]
    base_url_var: str | None
    #: Offered only when both the key and the base URL are set (a provider with no default URL).
    needs_base_url: bool = False


ENV_PROVIDERS: dict[str, EnvProvider] = {
    "openai": EnvProvider(("OPENAI_API_KEY",), "OPENAI_BASE_URL"),
    "anthropic": EnvProvider(("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL"),
    "gemini": EnvProvider(("GEMINI_API_KEY", "GOOGLE_API_KEY"), "GEMINI_BASE_URL"),
    "ollama": EnvProvider((), "OLLAMA_HOST"),
    # the variables of the openai SDK's AzureOpenAI client (its OPENAI_API_VERSION too, read below)
    "azure": EnvProvider(("AZURE_OPENAI_API_KEY",), "AZURE_OPENAI_ENDPOINT", needs_base_url=True),
    **{name: EnvProvider((preset.key_env,), None) for name, preset in PRESETS.items()},
}
#: The openai SDK's variable for Azure's API version.
_AZURE_VERSION_VAR = "OPENAI_API_VERSION"

_MAX_PREFIX_CACHE = 1024


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str
    deployments: tuple[Deployment, ...]
    strategy: str = "fallback"


def _timeout(t: Timeouts | None) -> Timeout:
    return Timeout() if t is None else Timeout(t.connect, t.read, t.write, t.pool, t.first_byte, t.idle)


def _normalise_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:  # OLLAMA_HOST is often host:port
        url = "http://" + url
    return url


class ModelRegistry:
    """Resolves the ``model`` of a request to an ordered list of deployments."""

    def __init__(self, config: RouterConfig, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env
        self._config = config
        self._providers = self._provider_settings(config)
        self._aliases: dict[str, ResolvedModel] = {}
        for model in config.models:
            if model.name in self._aliases:
                raise ConfigError(f"The model name '{model.name}' is configured twice.")
            deployments = tuple(self._deployment(d, strict=True) for d in model.deployments)
            self._aliases[model.name] = ResolvedModel(model.name, deployments, model.strategy)
        self._prefixed: dict[str, ResolvedModel] = {}
        setting = config.provider_prefix_routing
        #: Whether ``PROVIDER/MODEL`` names are served: as configured, else only without ``models``
        #: (a gateway that lists its models must not also serve every model its keys can reach).
        self.prefix_routing = not config.models if setting is None else setting

    def _provider_settings(self, config: RouterConfig) -> dict[str, ProviderSettings]:
        settings = dict(config.providers)
        for name in settings:
            if name not in ADAPTERS:
                raise ConfigError(f"Unknown provider '{name}' in providers; known: {', '.join(ADAPTERS)}.")
        if config.providers_from_env:
            for name, spec in ENV_PROVIDERS.items():
                if name in settings or name not in ADAPTERS:
                    continue
                key_var = next((var for var in spec.key_vars if self._env.get(var)), None)
                base_url = self._env.get(spec.base_url_var) if spec.base_url_var else None
                if spec.needs_base_url and not (key_var and base_url):
                    continue
                # Ollama needs no key, but is offered only where OLLAMA_HOST says it runs: a gateway
                # lists what can answer, not a local default that may not be there
                if key_var or base_url:
                    version = self._env.get(_AZURE_VERSION_VAR) if name == "azure" else None
                    try:
                        settings[name] = ProviderSettings(
                            base_url=base_url or None, api_key_env=key_var, api_version=version or None
                        )
                    except ValidationError:
                        raise ConfigError(
                            f"{_AZURE_VERSION_VAR}={version!r} is not an Azure OpenAI API version: write "
                            "v1 or a dated version (2024-10-21)."
                        ) from None
        return settings

    def _adapter(self, provider: str) -> ProviderAdapter:
        adapter = ADAPTERS.get(provider)
        if adapter is None:
            raise ConfigError(f"Unknown provider '{provider}'; known: {', '.join(ADAPTERS)}.")
        return adapter

    def _deployment(self, cfg: DeploymentConfig, *, strict: bool) -> Deployment:
        adapter = self._adapter(cfg.provider)
        shared = self._providers.get(cfg.provider, ProviderSettings())
        configured_url = cfg.base_url or shared.base_url or adapter.default_base_url
        if not configured_url:
            hint = ENV_PROVIDERS.get(cfg.provider)
            var = f", or {hint.base_url_var}" if hint and hint.base_url_var else ""
            raise ConfigError(
                f"The {cfg.provider} deployment of '{cfg.model}' has no base_url: set it to the "
                f"resource's endpoint (https://NAME.openai.azure.com){var}."
            )
        base_url = _normalise_base_url(configured_url)
        api_key = self._key(cfg.api_key, cfg.api_key_env) or self._key(shared.api_key, shared.api_key_env)
        headers = {**shared.headers, **cfg.headers}
        # an Entra ID token in the authorization header stands in for Azure's key
        token = any(name.lower() == "authorization" for name in headers)
        own_url = base_url == adapter.default_base_url or cfg.provider == "azure"
        if strict and adapter.requires_api_key and not api_key and not token and own_url:
            hint = ENV_PROVIDERS.get(cfg.provider)
            var = hint.key_vars[0] if hint and hint.key_vars else "api_key_env"
            raise ConfigError(
                f"The {cfg.provider} deployment of '{cfg.model}' has no API key: set api_key, "
                f"api_key_env, or {var}."
            )
        responses_api = cfg.responses_api if cfg.responses_api is not None else shared.responses_api
        api_version = cfg.api_version or shared.api_version
        if api_version and cfg.provider != "azure":
            raise ConfigError(
                f"api_version is set for the {cfg.provider} deployment of '{cfg.model}': only azure "
                "deployments (Azure OpenAI) take an API version."
            )
        if responses_api and cfg.provider != "openai":
            raise ConfigError(
                f"responses_api is set for the {cfg.provider} deployment of '{cfg.model}': only openai "
                "deployments (OpenAI, or a server speaking its API) can serve the Responses API; "
                "requests to other providers are translated."
            )
        return Deployment(
            id=cfg.id or f"{cfg.provider}/{cfg.model}",
            provider=cfg.provider,
            model=cfg.model,
            base_url=base_url,
            api_key=api_key,
            headers=tuple(headers.items()),
            timeout=_timeout(cfg.timeouts or shared.timeouts),
            weight=cfg.weight,
            stream_usage=cfg.stream_usage,
            responses_api=responses_api,
            api_version=api_version,
        )

    def _key(self, value: object, env_var: str | None) -> str | None:
        secret = getattr(value, "get_secret_value", None)
        if secret is not None:
            key = secret()
            if key:
                return str(key)
        if env_var:
            return self._env.get(env_var) or None
        return None

    def resolve(self, name: str) -> ResolvedModel:
        """The deployments for ``name``, or a 404 that lists what this gateway serves."""
        resolved = self._aliases.get(name) or self._prefixed.get(name)
        if resolved is not None:
            return resolved
        provider, sep, upstream_model = name.partition("/")
        if sep and upstream_model and self.prefix_routing:
            if provider not in ADAPTERS:
                raise NotFound(
                    f"The model '{name}' names the provider '{provider}', which this gateway does not "
                    f"support. Supported providers: {', '.join(ADAPTERS)}.",
                    code="model_not_found",
                    param="model",
                )
            if provider not in self._providers:
                spec = ENV_PROVIDERS.get(provider)
                var = (spec.key_vars or (spec.base_url_var,))[0] if spec else None
                hint = f" Set {var}." if var else ""
                raise NotFound(
                    f"The model '{name}' needs the provider '{provider}', which is not configured "
                    f"on this gateway.{hint}",
                    code="model_not_found",
                    param="model",
                )
            deployment = self._deployment(
                DeploymentConfig(provider=provider, model=upstream_model), strict=False
            )
            resolved = ResolvedModel(name, (deployment,))
            if len(self._prefixed) < _MAX_PREFIX_CACHE:
                self._prefixed[name] = resolved
            return resolved
        available = ", ".join(sorted(self._aliases)) or "none"
        prefixes = ", ".join(f"{p}/MODEL" for p in self._providers)
        raise NotFound(
            f"The model '{clip(name)}' does not exist on this gateway. Configured models: {available}"
            + (f"; or use {prefixes}." if prefixes and self.prefix_routing else "."),
            code="model_not_found",
            param="model",
        )

    def prefix_providers(self) -> list[str]:
        """The providers whose ``PROVIDER/MODEL`` names are served (none when prefix routing is off)."""
        return list(self._providers) if self.prefix_routing else []

    def model_ids(self) -> list[tuple[str, str]]:
        """(id, owned_by) for ``GET /models``: aliases, then ``provider/*`` for prefix routing."""
        out = [(name, m.deployments[0].provider) for name, m in self._aliases.items()]
        out.extend((f"{provider}/*", provider) for provider in self.prefix_providers())
        return out
