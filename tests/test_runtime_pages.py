"""Giving back the clean pages of a library's file: which mappings are advised, and what a real one frees."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asgi_aigw.runtime.pages import MADV_PAGEOUT, read_only_ranges, release_file_pages

LIB = "/opt/lib/libengine.so"
MAPS = f"""\
55d0a0000000-55d0a0001000 r--p 00000000 08:01 100 /usr/bin/python3.11
7f0000000000-7f0000200000 r--p 00000000 08:01 200 {LIB}
7f0000200000-7f0001000000 r-xp 00200000 08:01 200 {LIB}
7f0001000000-7f0001100000 rw-p 01000000 08:01 200 {LIB}
7f0001100000-7f0001200000 r--p 00000000 08:01 201 {LIB}.other
7f0001200000-7f0001300000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
"""


def test_only_the_files_read_only_mappings_are_advised(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    assert list(read_only_ranges(MAPS, LIB)) == [
        (0x7F0000000000, 0x7F0000200000),
        (0x7F0000200000, 0x7F0001000000),
    ]
    calls: list[tuple[int, int, int]] = []

    def advise(start: int, length: int, advice: int) -> int:
        calls.append((start, length, advice))
        return 0

    assert release_file_pages(LIB, advise=advise, maps_path=str(maps)) == 0x1000000
    # code and constants only: the writable data mapping (the process's own) and other files are left
    assert calls == [(0x7F0000000000, 0x200000, MADV_PAGEOUT), (0x7F0000200000, 0xE00000, MADV_PAGEOUT)]


def test_a_directory_covers_the_files_under_it() -> None:
    ranges = list(read_only_ranges(MAPS, "/opt/lib/"))
    assert len(ranges) == 3  # libengine.so's two and libengine.so.other's, not the writable one
    assert list(read_only_ranges(MAPS, "/opt/li")) == []  # a path, not a prefix of names


def test_a_kernel_that_refuses_stops_at_the_first_range(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(MAPS)
    calls: list[int] = []

    def refused(start: int, length: int, advice: int) -> int:
        calls.append(start)
        return -1  # EINVAL before Linux 5.4

    assert release_file_pages(LIB, advise=refused, maps_path=str(maps)) == 0
    assert len(calls) == 1
    assert release_file_pages(LIB, advise=refused, maps_path=str(tmp_path / "missing")) == 0


def _private_chdb(site: Path) -> Path:
    """chDB importable from ``site`` with its engine library a file of its own. The kernel leaves a page
    another process maps, and this test process may have started chDB itself (other tests): the child
    then shares every start-up page with it. The package's other files are links."""
    spec = importlib.util.find_spec("chdb")
    if spec is None or spec.origin is None:
        pytest.skip("chdb is not installed")
    package = Path(spec.origin).parent
    (site / "chdb").mkdir(parents=True)
    for entry in package.iterdir():
        if entry.name.startswith("_chdb.") and entry.suffix == ".so":
            shutil.copyfile(entry, site / "chdb" / entry.name)
        else:
            (site / "chdb" / entry.name).symlink_to(entry)
    for entry in package.parent.iterdir():  # the libraries it links (chdb_core.libs)
        if entry.name.startswith("chdb_core") and entry.name.endswith(".libs"):
            (site / entry.name).symlink_to(entry)
    return site


def test_chdb_gives_its_start_up_pages_back_after_the_first_insert(tmp_path: Path) -> None:
    """A real chDB sink in a fresh process: the engine library's resident pages before and after the
    first insert, and after more inserts and a query (which read some of them again)."""
    site = _private_chdb(tmp_path / "site")
    script = textwrap.dedent(
        f"""
        import json, sys
        from asgi_aigw.logs import ClickHouseSink

        def resident_mb(path):
            total, current = 0, False
            for line in open("/proc/self/smaps"):
                fields = line.split()
                if "-" in fields[0] and not fields[0].endswith(":"):
                    current = len(fields) >= 6 and fields[5] == path
                elif current and fields[0] == "Rss:":
                    total += int(fields[1])
            return total / 1024

        def rows(n, start):
            out = []
            for i in range(n):
                # a column a row lacks is written with its default
                out.append({{"timestamp": 1_765_000_000_000 + start + i, "request_id": f"r{{start + i}}",
                            "tenant": "t", "status": 200, "latency_ms": 1.0}})
            return out

        sink = ClickHouseSink("chdb://{tmp_path / "chdb"}")
        sink.open_early()
        library = sys.modules["chdb._chdb"].__file__  # the engine, 555 MB
        assert library.startswith({str(site)!r}), library
        started = resident_mb(library)
        sink.write(rows(5, 0), "b0")
        released = resident_mb(library)
        for batch in range(1, 20):
            sink.write(rows(5, batch * 5), f"b{{batch}}")
        count = sink.query("SELECT count() FROM {{table}}")[0][0]
        print(json.dumps({{"started": started, "released": released, "later": resident_mb(library), "count": count}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["count"] == 100
    assert figures["started"] > 100  # the engine's start read most of its library
    assert figures["released"] < figures["started"] / 4
    # what inserts and queries read comes back, far from all of it
    assert figures["later"] < figures["started"] / 2, figures
