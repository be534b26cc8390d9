"""MkDocs hook: the reference pages, generated from the code at every build.

- ``reference/configuration.md``: every option of :class:`asgi_aigw.GatewayConfig` and of each section
  it nests (type, default, the ``#:`` comment written above the field), from the pydantic models.
- ``reference/cli.md``: every ``aigw`` sub-command and option, from the argparse parser.
- ``reference/api/*.md``: every public name (a package's ``__all__``, else the classes and functions a
  module defines) rendered by mkdocstrings.

After rendering, each page is checked: an option, a command option or a public name missing from the
HTML is a warning, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import pkgutil
import re
import types
import typing
from collections.abc import Iterator
from enum import Enum
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

log = logging.getLogger("mkdocs.hooks.reference")

CONFIG_PAGE = "reference/configuration.md"
CLI_PAGE = "reference/cli.md"
API_DIR = "reference/api"

#: Modules documented on their own page although they have no ``__all__``: what a middleware author uses.
BUILDING_BLOCKS = (
    "asgi_aigw.config",
    "asgi_aigw.kernel.context",
    "asgi_aigw.kernel.body",
    "asgi_aigw.kernel.errors",
    "asgi_aigw.kernel.routes",
    "asgi_aigw.kernel.response",
    "asgi_aigw.kernel.sse",
    "asgi_aigw.kernel.mount",
    "asgi_aigw.logs.metrics",
    "asgi_aigw.client",
    "asgi_aigw.integrations.django",
    "asgi_aigw.integrations.fastapi",
    "asgi_aigw.integrations.starlette",
)


# -- configuration ------------------------------------------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines written directly above each field of ``cls``, joined."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", stripped)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        if stripped:
            pending = []
    return comments


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def config_models(root: type[BaseModel]) -> list[tuple[type[BaseModel], list[str]]]:
    """Every model reachable from ``root``, depth first, with the YAML paths where it appears."""
    order: list[type[BaseModel]] = []
    paths: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], path: str) -> None:
        if model in paths:
            if path not in paths[model]:
                paths[model].append(path)
            return
        paths[model] = [path]
        order.append(model)
        for name, field in model.model_fields.items():
            for nested in _models_in(field.annotation):
                child = f"{path}.{name}" if path else name
                if typing.get_origin(field.annotation) in (list,) or "list[" in str(field.annotation):
                    child += "[]"
                elif typing.get_origin(field.annotation) is dict or "dict[" in str(field.annotation):
                    child += ".NAME"
                visit(nested, child)

    visit(root, "")
    return [(model, paths[model]) for model in order]


def anchor(model: type) -> str:
    return model.__name__.lower()


def type_name(annotation: Any) -> str:
    """A short, readable type: ``str | None``, ``list[DeploymentConfig]``, ``"fallback" | "weighted"``."""
    if annotation is type(None):
        return "None"
    if annotation is SecretStr:
        return "secret string"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{anchor(annotation)})"
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return " | ".join(f'"{m.value}"' for m in annotation)
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "defaults below" if value.model_fields_set == set() else f"`{value!r}`"
    if isinstance(value, SecretStr):
        return "set"
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, tuple)) and not value:
        return "`[]`"
    if isinstance(value, dict) and not value:
        return "`{}`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    from asgi_aigw.config import GatewayConfig

    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models at every documentation build: every option the gateway",
        "accepts, with its type and default. The YAML keys are the option names; `load_config` reads",
        "`${VAR}` and `${VAR:-default}` from the environment first, and an unknown key is an error. How",
        "to use them: [Configuration](../configuration.md).",
        "",
    ]
    for model, paths in config_models(GatewayConfig):
        where = ", ".join(f"`{p}`" for p in paths) if paths != [""] else "the top level of the file"
        lines += [f"## {model.__name__} {{#{anchor(model)}}}", ""]
        lines += [f"`{model.__module__}.{model.__name__}`, at {where}.", ""]
        doc = model.__dict__.get("__doc__")  # its own, not BaseModel's
        if doc:
            lines += [inspect.cleandoc(doc), ""]
        comments = field_comments(model)
        lines += ["| option | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            description = field.description or comments.get(name, "")
            constraints = [
                f"{k} {v}"
                for meta in field.metadata
                for k, v in (
                    (">=", getattr(meta, "ge", None)),
                    (">", getattr(meta, "gt", None)),
                    ("<=", getattr(meta, "le", None)),
                    ("<", getattr(meta, "lt", None)),
                    ("min length", getattr(meta, "min_length", None)),
                )
                if v is not None
            ]
            if constraints:
                description = (
                    f"{description} ({', '.join(constraints)})" if description else ", ".join(constraints)
                )
            lines.append(
                f"| `{name}` | {_cell(type_name(field.annotation))} | {_cell(default_text(field))} "
                f"| {_cell(description)} |"
            )
        lines.append("")
    return "\n".join(lines)


# -- CLI ----------------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for child, subsub in _subcommands(sub):
                    yield f"{name} {child}", subsub


def cli_options() -> dict[str, list[str]]:
    """Every sub-command and the option strings it accepts (for the page and its check)."""
    from asgi_aigw.cli import build_parser

    commands: dict[str, list[str]] = {}
    for name, sub in _subcommands(build_parser()):
        commands[name] = [
            opt for action in sub._actions for opt in action.option_strings if opt not in ("-h", "--help")
        ]
    return commands


def cli_reference() -> str:
    from asgi_aigw.cli import build_parser

    lines = [
        "# Command line: `aigw`",
        "",
        "Generated from the command's own parser at every documentation build.",
        "",
    ]
    for name, sub in _subcommands(build_parser()):
        sub.prog = f"aigw {name}"
        lines += [f"## aigw {name}", ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        rows = []
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            label = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
            if action.metavar and action.option_strings:
                label += f" `{action.metavar}`"
            text = (action.help or "").replace("%(default)s", str(action.default))
            if action.choices and not isinstance(action.choices, dict):
                text += f" (one of: {', '.join(str(c) for c in action.choices)})"
            if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
                text += f" (default: {action.default})"
            rows.append(f"| {label} | {_cell(text)} |")
        if rows:
            lines += ["| option | |", "|---|---|", *rows, ""]
    return "\n".join(lines)


# -- API ----------------------------------------------------------------------------------------------


def public_modules() -> list[str]:
    """``asgi_aigw`` and every sub-package or module with an ``__all__``, then the building blocks."""
    import asgi_aigw

    names = ["asgi_aigw"]
    for info in pkgutil.walk_packages(asgi_aigw.__path__, "asgi_aigw."):
        if any(part.startswith("_") for part in info.name.split(".")) or not info.ispkg:
            continue
        if info.name.startswith("asgi_aigw.cli"):
            continue
        module = importlib.import_module(info.name)
        if getattr(module, "__all__", None):
            names.append(info.name)
    return names + [m for m in BUILDING_BLOCKS if m not in names]


def public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return [n for n in exported if not n.startswith("__")]
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module_name
    ]


def _is_config_model(module_name: str, name: str) -> bool:
    """A section of the gateway configuration: its options are on the configuration reference page."""
    from asgi_aigw.config import GatewayConfig

    value = getattr(importlib.import_module(module_name), name, None)
    return any(value is model for model, _ in config_models(GatewayConfig))


def api_page(module_name: str) -> str:
    module = importlib.import_module(module_name)
    summary = (inspect.getdoc(module) or "").split("\n\n")[0]
    lines = [f"# `{module_name}`", "", summary, ""]
    for name in public_names(module_name):
        lines.append(f"::: {module_name}.{name}")
        if _is_config_model(module_name, name):
            # the options are in the configuration reference, with their comments
            lines += ["    options:", "      members: false", ""]
            lines += [
                f"Options: [{name} in the configuration reference](../configuration.md#{name.lower()}).",
                "",
            ]
        else:
            lines.append("")
    return "\n".join(lines)


def api_index(modules: list[str]) -> str:
    lines = [
        "# Python API",
        "",
        "Generated at every documentation build: every public name of every public module.",
        "",
        "| module | |",
        "|---|---|",
    ]
    for name in modules:
        summary = (inspect.getdoc(importlib.import_module(name)) or "").split("\n")[0]
        lines.append(f"| [`{name}`]({name}.md) | {_cell(summary)} |")
    return "\n".join(lines) + "\n"


# -- MkDocs events ------------------------------------------------------------------------------------


def generated_pages() -> dict[str, str]:
    modules = public_modules()
    pages = {
        CONFIG_PAGE: config_reference(),
        CLI_PAGE: cli_reference(),
        f"{API_DIR}/index.md": api_index(modules),
    }
    for name in modules:
        pages[f"{API_DIR}/{name}.md"] = api_page(name)
    return pages


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    path = page.file.src_uri
    missing: list[str] = []
    if path == CONFIG_PAGE:
        from asgi_aigw.config import GatewayConfig

        for model, _ in config_models(GatewayConfig):
            if f'id="{anchor(model)}"' not in html:
                missing.append(model.__name__)
            missing += [
                f"{model.__name__}.{n}" for n in model.model_fields if f"<code>{n}</code>" not in html
            ]
    elif path == CLI_PAGE:
        for command, options in cli_options().items():
            missing += [f"aigw {command} {o}" for o in options if f"<code>{o}</code>" not in html]
    elif path.startswith(f"{API_DIR}/") and path != f"{API_DIR}/index.md":
        module_name = path[len(API_DIR) + 1 : -3]
        missing += [n for n in public_names(module_name) if f'id="{module_name}.{n}"' not in html]
    if missing:
        log.warning("%s does not show: %s", path, ", ".join(missing))
    return html
