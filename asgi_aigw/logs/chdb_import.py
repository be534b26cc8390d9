"""Importing chDB's connection module without pyarrow.

``chdb.connect`` lives in ``chdb.state.sqlitelike``, which imports pyarrow when it can
(``try: import pyarrow as pa``) for its Arrow outputs, about 26 MB per worker. The request log never
asks for them (clickhouse-connect reads chDB's Native format), so the module is imported with pyarrow
hidden from this thread, then given a stand-in that imports pyarrow on first use: an application that
asks chDB for Arrow still gets it. Other threads importing pyarrow meanwhile are not affected.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from ..kernel.hidden_import import HiddenFromThread

_CONNECTION_MODULE = "chdb.state.sqlitelike"


class LazyModule:
    """Stands for a module not imported yet: imports it on the first attribute read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def import_chdb_connection() -> None:
    """Import ``chdb.state.sqlitelike`` (what ``chdb.connect`` imports) without importing pyarrow."""
    if _CONNECTION_MODULE in sys.modules or "pyarrow" in sys.modules:
        importlib.import_module(_CONNECTION_MODULE)  # nothing to save: pyarrow is loaded already
        return
    importlib.import_module("chdb")  # its engine, with nothing hidden
    finder = HiddenFromThread("pyarrow")
    sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module(_CONNECTION_MODULE)
    except ImportError:
        # a chDB that needs pyarrow at import: import it as chDB wants (the modules half-imported
        # without it are dropped first)
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if name == "chdb.state" or name.startswith("chdb.state.")]:
            del sys.modules[name]
        importlib.import_module(_CONNECTION_MODULE)
        return
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
    if getattr(module, "pa", False) is None and importlib.util.find_spec("pyarrow") is not None:
        setattr(module, "pa", LazyModule("pyarrow"))  # noqa: B010 (a module mypy cannot see into)
