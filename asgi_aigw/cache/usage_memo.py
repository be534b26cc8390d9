"""The usage a stored answer reports on each hit, read once per entry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..kernel.context import Usage


class UsageMemo:
    """The usage a stored answer reports on a hit, read from its stored ``usage`` object once per entry
    (entries are shared by every hit; read again when the object is replaced), and copied for each hit
    (a layer may change its own)."""

    __slots__ = ("_read", "_source", "_usage")

    def __init__(self, read: Callable[[Any], Usage | None]) -> None:
        self._read = read
        self._source: Any = _UNREAD
        self._usage: Usage | None = None

    def __call__(self, source: Any) -> Usage | None:
        if source is not self._source:
            self._source, self._usage = source, self._read(source)
        usage = self._usage
        return None if usage is None else usage.copy()


#: What :class:`UsageMemo` has read before its first call (``None`` is a usage object: none stored).
_UNREAD = object()
