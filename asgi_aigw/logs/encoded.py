"""Rows handed to a sink together with the bytes its ``encode`` made of them."""

from __future__ import annotations

from collections.abc import Sequence

from .row import LogRow


class EncodedRows(list[LogRow]):
    """Rows, and the bytes a sink's ``encode`` made of them (the writer encodes on its event loop): a
    sink that can uses ``encoded``, any other reads the rows."""

    def __init__(self, rows: Sequence[LogRow], encoded: bytes) -> None:
        super().__init__(rows)
        self.encoded = encoded
