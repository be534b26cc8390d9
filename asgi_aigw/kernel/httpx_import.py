"""Importing httpx without its command line.

httpx's ``__init__`` imports its command-line client (``httpx._main``: click, rich and pygments)
whenever those are installed, as they are beside spaCy (through typer) and uvicorn: about 6 MB and 100
modules per worker for a ``main()`` the gateway never calls. The package imports httpx first, with
``httpx._main`` hidden from this thread (see :mod:`.hidden_import`), and gives ``httpx.main`` a stand-in
that imports the real one when called. An application that imported httpx before is left as it is.
Importing this module does it (``asgi_aigw/__init__.py`` imports it first).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .hidden_import import HiddenFromThread

_CLI = "httpx._main"


def _main(*args: Any, **kwargs: Any) -> Any:
    """httpx's command line, imported now."""
    return importlib.import_module(_CLI).main(*args, **kwargs)


def import_httpx() -> None:
    """Import httpx, its command line left for the first call of ``httpx.main``."""
    if "httpx" in sys.modules:
        return
    finder = HiddenFromThread(_CLI)
    sys.meta_path.insert(0, finder)
    try:
        httpx = importlib.import_module("httpx")
    finally:
        sys.meta_path.remove(finder)
    if _CLI not in sys.modules:
        setattr(httpx, "main", _main)  # noqa: B010 (replaces httpx's "not installed" fallback)


import_httpx()
