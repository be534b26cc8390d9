"""Giving the C heap's free memory back to the system after loading a model.

glibc's ``free`` keeps what it frees in the process for later ``malloc`` calls, and returns it to the
system only from the top of the heap. Loading the default embedding model frees about 60 MB of such
memory (the model file's bytes, parsed and then turned into the session's own weights) that no later
call reuses at that size: the worker would hold it for its whole life. ``malloc_trim(0)`` returns every
free page of every arena. Other C libraries (musl, macOS) have no ``malloc_trim``: nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


def release_free_heap() -> bool:
    """Return the C heap's free pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
