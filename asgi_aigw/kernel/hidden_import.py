"""Importing a module with one of the modules it would import hidden, for this thread only.

Some libraries import a heavy module they use only for a feature the gateway never asks for (chDB's
connection module imports pyarrow, httpx imports its command line). :class:`HiddenFromThread` makes
that module unimportable while the library is imported, so the library takes its own fallback; other
threads importing it meanwhile are not affected.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class HiddenFromThread:
    """A ``sys.meta_path`` finder that makes ``name`` unimportable, for one thread only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == self.name and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (not imported by the gateway)", name=fullname
            )
        return None
