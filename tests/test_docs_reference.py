"""The generated reference pages (docs/_hooks/reference.py) cover every option, command and public name.

``mkdocs build --strict`` checks the rendered pages too (CI); these checks run without building."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from asgi_aigw.config import GatewayConfig

HOOK = Path(__file__).resolve().parent.parent / "docs" / "_hooks" / "reference.py"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aigw_docs_reference", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reference = _hook()


def _sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## (\w+) \{#\w+\}$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_option_of_every_section_is_in_the_configuration_reference() -> None:
    sections = _sections(reference.config_reference())
    models = reference.config_models(GatewayConfig)
    assert {"GatewayConfig", "TenantConfig", "BudgetConfig", "RedactConfig", "CacheConfig", "LogConfig"} <= {
        m.__name__ for m, _ in models
    }
    for model, _ in models:
        text = sections[model.__name__]
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{model.__name__}.{name}"


def test_every_public_configuration_class_is_reachable_from_gateway_config() -> None:
    reachable = {m for m, _ in reference.config_models(GatewayConfig)}
    public: set[type[BaseModel]] = set()
    for module_name in reference.public_modules():
        module = importlib.import_module(module_name)
        for name in reference.public_names(module_name):
            value = getattr(module, name, None)
            if (
                inspect.isclass(value)
                and issubclass(value, BaseModel)
                and value.__module__.startswith("asgi_aigw")
            ):
                if value.__module__.startswith("asgi_aigw.kernel.models"):
                    continue  # the OpenAI wire format, documented in the API reference
                public.add(value)
    assert public, "no configuration classes found"
    assert public <= reachable, sorted(m.__name__ for m in public - reachable)


def test_option_comments_reach_the_reference() -> None:
    text = _sections(reference.config_reference())["RetryConfig"]
    assert "Extra attempts once every deployment of the model has been tried" in text
    assert "| `retries` | int | `2` |" in text


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    text = reference.cli_reference()
    commands = reference.cli_options()
    assert {"serve", "usage", "budget set", "assets prepare"} <= set(commands)
    for command, options in commands.items():
        assert f"## aigw {command}" in text
        for option in options:
            assert f"`{option}`" in text, f"aigw {command} {option}"


def test_every_public_name_has_an_api_reference_entry() -> None:
    modules = reference.public_modules()
    assert {
        "asgi_aigw",
        "asgi_aigw.tenant",
        "asgi_aigw.budget",
        "asgi_aigw.cache",
        "asgi_aigw.testing",
    } <= set(modules)
    for module_name in modules:
        page = reference.api_page(module_name)
        for name in reference.public_names(module_name):
            assert f"::: {module_name}.{name}\n" in page, f"{module_name}.{name}"
    assert "::: asgi_aigw.build_app" in reference.api_page("asgi_aigw")
