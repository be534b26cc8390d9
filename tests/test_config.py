"""Configuration: YAML with ${ENV} interpolation, validation errors that say what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from asgi_aigw.config import ConfigError, interpolate_env, load_config
from asgi_aigw.router.registry import ModelRegistry

YAML = """
prefix: /llm
router:
  models:
    - name: fast
      strategy: fallback
      deployments:
        - provider: openai
          model: gpt-4o-mini
          api_key: ${TEST_OPENAI_KEY}
          base_url: ${TEST_BASE_URL:-https://api.openai.com/v1}
          timeouts: {connect: 2, read: 30}
  max_body_bytes: 4096
"""


def test_yaml_with_env_interpolation(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(YAML)
    config = load_config(path, env={"TEST_OPENAI_KEY": "sk-test-123"})
    assert config.prefix == "/llm"
    assert config.router.max_body_bytes == 4096
    deployment = ModelRegistry(config.router, env={}).resolve("fast").deployments[0]
    assert deployment.api_key == "sk-test-123"
    assert deployment.base_url == "https://api.openai.com/v1"  # the default after ":-"
    assert deployment.timeout.connect == 2
    assert "sk-test-123" not in repr(config)  # secrets stay out of reprs and logs


def test_unset_variable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(YAML)
    with pytest.raises(ConfigError, match="TEST_OPENAI_KEY"):
        load_config(path, env={})


def test_empty_default_is_allowed() -> None:
    assert interpolate_env("key: '${NOPE:-}'", env={}) == "key: ''"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("router: {models: [{name: x, deployments: []}]}", "router.models.0.deployments"),
        ("unknown_key: 1", "unknown_key"),
        ("- a\n- b", "mapping at the top level"),
        ("models: [{name: x", "not valid YAML"),
        ("router: {transport: carrier-pigeon}", "router.transport"),
        ("models: [{name: x}]", "models: renamed to router.models in 0.2"),
        ("log: {sink: 'memory://'}", "log.sink: renamed to log.store"),
        ("cache: {exact: 'memory://', vector: null}", "cache.exact: renamed to cache.store"),
        ("tenant: {default: t}", "tenant.default: renamed to tenant.default_tenant"),
        ("budget: {store: 'mongodb://x'}", "Unknown budget store 'mongodb://x': use one of memory://"),
        (
            "cache: {vector_store: 'pinecone://x'}",
            "Unknown vector store 'pinecone://x': use one of memory://",
        ),
    ],
)
def test_invalid_configuration_says_where(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path, env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="Cannot read"):
        load_config("/nonexistent/gateway.yaml")


def test_deployment_without_a_key_fails_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("router: {models: [{name: x, deployments: [{provider: openai, model: gpt-4o}]}]}")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        ModelRegistry(load_config(path, env={}).router, env={})


def test_unknown_provider_and_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("router: {models: [{name: x, deployments: [{provider: acme, model: m}]}]}")
    with pytest.raises(ConfigError, match="Unknown provider 'acme'"):
        ModelRegistry(load_config(path, env={}).router, env={})
    path.write_text(
        "router: {models: [{name: x, deployments: [{model: a, base_url: 'http://h/v1'}]},"
        " {name: x, deployments: [{model: b, base_url: 'http://h/v1'}]}]}"
    )
    with pytest.raises(ConfigError, match="configured twice"):
        ModelRegistry(load_config(path, env={}).router, env={})


def test_openai_compatible_server_needs_no_key(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "router: {models: [{name: local, deployments: [{model: qwen, base_url: 'http://127.0.0.1:8001/v1/'}]}]}"
    )
    deployment = ModelRegistry(load_config(path, env={}).router, env={}).resolve("local").deployments[0]
    assert deployment.base_url == "http://127.0.0.1:8001/v1"
    assert deployment.api_key is None


def _sections(cls: type) -> list[type]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _sections(sub)
    return found


def test_no_section_of_the_configuration_takes_an_infinite_number() -> None:
    """Every section, the gateway's and the runtime's: YAML's ``.inf`` as a cache TTL or a timeout
    passed validation, then failed in the middle of a request."""
    import importlib

    from asgi_aigw.cache import CacheConfig
    from asgi_aigw.kernel.config import ConfigSection
    from asgi_aigw.runtime.config import RuntimeConfig

    importlib.import_module("asgi_aigw.config")  # every section defined
    sections = _sections(ConfigSection)
    assert len(sections) > 20
    assert [s.__name__ for s in sections if s.model_config.get("allow_inf_nan", True)] == []
    for field in ("ttl", "lookup_timeout"):
        with pytest.raises(ValidationError) as refused:
            CacheConfig.model_validate({field: float("inf")})
        assert refused.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError):
        RuntimeConfig.model_validate({"tokens": {"family_factors": {"ollama": float("inf")}}})
