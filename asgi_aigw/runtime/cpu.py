"""What the processor can do that changes how a model is best run."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

#: x86 flags (as Linux names them) of instructions that sum uint8 x int8 products in 32 bits (VNNI):
#: onnxruntime's int8 matrix products are then exact. Without them it sums pairs in saturating 16 bits.
_EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def _flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


@cache
def multiplies_int8_exactly(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """True on an x86 processor with VNNI (read from Linux's ``/proc/cpuinfo``); False elsewhere, and
    where it cannot be told (other systems, other architectures: not checked, so not assumed)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(_flags(text) & _EXACT_INT8_FLAGS)


def int8_products(setting: str) -> bool:
    """Whether ``runtime.embedder.int8_matmul`` (``auto``, ``on``, ``off``) runs the model's products
    in int8 on this machine (``auto``: where :func:`multiplies_int8_exactly`)."""
    return setting == "on" or (setting == "auto" and multiplies_int8_exactly())
