"""Whether the processor multiplies int8 exactly, read from Linux's /proc/cpuinfo."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from asgi_aigw.runtime.cpu import multiplies_int8_exactly

CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma {extra}\nbogomips\t: 4000\n"
)


@pytest.mark.parametrize(
    ("machine", "extra", "expected"),
    [
        ("x86_64", "avx512f avx512_vnni", True),
        ("x86_64", "avx_vnni", True),
        ("x86_64", "avx512f avx512bw", False),  # AVX-512 without VNNI still sums in 16 bits
        ("x86_64", "", False),
        ("aarch64", "avx512_vnni", False),  # another architecture: not assumed
    ],
)
def test_vnni_flags_decide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, extra: str, expected: bool
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    multiplies_int8_exactly.cache_clear()
    try:
        assert multiplies_int8_exactly(str(path)) is expected
    finally:
        multiplies_int8_exactly.cache_clear()


def test_unreadable_cpuinfo_is_no(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    multiplies_int8_exactly.cache_clear()
    try:
        assert multiplies_int8_exactly(str(tmp_path / "missing")) is False
    finally:
        multiplies_int8_exactly.cache_clear()
