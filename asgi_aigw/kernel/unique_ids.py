"""Unique ids without a system call each: a random prefix per process and a counter."""

from __future__ import annotations

import itertools
import os


class IdSource:
    """``prefix`` (``nbytes`` random bytes as hex) and :meth:`next_number`; a forked child (gunicorn
    ``--preload``) draws a prefix of its own, so workers never share one."""

    def __init__(self, nbytes: int) -> None:
        self._nbytes = nbytes
        self.prefix = ""
        self._counter = itertools.count(1)
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self.prefix = os.urandom(self._nbytes).hex()
        self._counter = itertools.count(1)

    def next_number(self) -> int:
        return next(self._counter)
