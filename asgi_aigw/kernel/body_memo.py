"""A small memo of what a layer worked out of a request body, by the body's bytes and the tenant."""

from __future__ import annotations

from typing import Generic, TypeVar

_V = TypeVar("_V")


class BodyMemo(Generic[_V]):
    """What a layer worked out of recent request bodies (the budget's estimate, redaction's "nothing
    found"), by their bytes: a question asked again (a cache hit, a client's retry) is not read again.
    Exact: the same bytes are the same request, its model included. Kept per tenant, as the cache is: a
    result found is some microseconds faster, and that must not tell a tenant what another one asked.
    Bodies up to ``max_bytes``, at most ``entries`` of them (the least recently used go first): at most
    1 MB by default."""

    __slots__ = ("_values", "entries", "max_bytes")

    def __init__(self, entries: int = 256, max_bytes: int = 4096) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._values: dict[tuple[str, str, bytes], _V] = {}

    def get(self, tenant: str, kind: str, raw: bytes) -> _V | None:
        """What is remembered for the tenant's body of this kind (a dialect's or route's name), if any."""
        if len(raw) > self.max_bytes:
            return None
        key = (tenant, kind, raw)
        value = self._values.pop(key, None)
        if value is not None:
            self._values[key] = value  # used again: last to go
        return value

    def put(self, tenant: str, kind: str, raw: bytes, value: _V) -> None:
        if len(raw) > self.max_bytes or self.entries <= 0:
            return
        values = self._values
        values[(tenant, kind, raw)] = value
        if len(values) > self.entries:
            del values[next(iter(values))]
