"""Giving back the pages of a library's files that start-up read and the process will not read again.

chDB is the ClickHouse engine in one 555 MB shared library. Starting its engine runs start-up code
spread over the whole file: about 180 MB of it stays resident in the worker, of which an insert then
reads about 60 (measured: after the pages are given back, 200 inserts and a query brought 55 MB back).
Those pages are clean copies of the file, so the kernel can drop them at any time and read them again
when touched; it does so only under memory pressure, and until then they count in the worker's RSS
and in the container's memory. ``madvise(MADV_PAGEOUT)`` (Linux 5.4) asks the kernel to reclaim them
now; a page another process still maps is left alone, and one touched again is read back (from the
page cache while it holds it). Nothing is done on other systems or older kernels.

The same holds, smaller, for the libraries of the semantic layer once its model and store are open
(onnxruntime about 20 MB resident after building a session, of which embedding reads about 8).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger("asgi_aigw.runtime")

#: linux/mman.h: reclaim the range's pages now (Linux 5.4).
MADV_PAGEOUT = 21

Madvise = Callable[[int, int, int], int]


@functools.cache
def _madvise() -> Madvise | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    advise: Madvise = function
    return advise


def read_only_ranges(maps: str, path: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each mapping the process cannot write of the file ``path``, or of the files
    under the directory ``path``, in ``/proc/PID/maps`` text: their code and constants (a writable
    mapping holds the process's own data)."""
    directory = path.rstrip("/") + "/"
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1]:
            continue
        if fields[5] != path and not fields[5].startswith(directory):
            continue
        start, _, end = fields[0].partition("-")
        yield int(start, 16), int(end, 16)


def release_file_pages(
    path: str | Path, *, advise: Madvise | None = None, maps_path: str = "/proc/self/maps"
) -> int:
    """Ask the kernel to reclaim the resident pages of the read-only mappings of the file ``path`` (or
    of the files under the directory ``path``); the bytes of address space advised (0 where nothing
    could be)."""
    advise = advise or _madvise()
    if advise is None:
        return 0
    try:
        maps = Path(maps_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    advised = 0
    for start, end in read_only_ranges(maps, str(path)):
        if advise(start, end - start, MADV_PAGEOUT) != 0:
            # EINVAL before Linux 5.4: nothing else would work either
            logger.debug("madvise(MADV_PAGEOUT) refused for %s: errno %d", path, ctypes.get_errno())
            return advised
        advised += end - start
    return advised


def release_package_pages(*packages: str) -> int:
    """:func:`release_file_pages` for the directories of the packages named, those imported (their
    compiled libraries); the bytes of address space advised."""
    advised = 0
    for name in packages:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if isinstance(origin, str):
            # the maps name files by their real path; the package may have been found through a link
            directory = Path(origin).parent
            for each in dict.fromkeys((directory, directory.resolve())):
                advised += release_file_pages(each)
    return advised
