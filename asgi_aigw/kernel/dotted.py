"""Objects named by a ``"package.module:attribute"`` path (hooks, resolvers, authorizers in YAML)."""

from __future__ import annotations

import importlib
from typing import Any


class DottedPathError(Exception):
    """Why a path did not resolve: ``kind`` is ``"form"`` (no ``module:attribute``), ``"import"`` (the
    module is missing or raised as it loaded: ``__cause__`` says how) or ``"attribute"``. Callers turn
    it into their own configuration error, naming the setting."""

    def __init__(self, kind: str, module: str, attribute: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.module = module
        self.attribute = attribute


def resolve(path: str) -> Any:
    """The object ``path`` names; :class:`DottedPathError` when it cannot be imported or found."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise DottedPathError("form", module_name, attribute)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # missing, or raised as it loaded (a SyntaxError, a failing setting)
        raise DottedPathError("import", module_name, attribute) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise DottedPathError("attribute", module_name, attribute) from None
    return target
