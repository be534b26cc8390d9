"""The mutation command (bench/mutation.py) keeps working as the modules change."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_mutation", ROOT / "bench" / "mutation.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


tool = load_tool()


@pytest.mark.parametrize("name", sorted(tool.TARGETS))
def test_every_mutant_of_every_module_compiles(name: str) -> None:
    target = tool.TARGETS[name]
    source = (ROOT / target.path).read_text()
    mutants = tool.list_mutants(source)
    assert len(mutants) > 20
    assert len({m.key for m in mutants}) == len(mutants)  # keys are unique: equivalents are named by key
    for m in mutants:
        tool.mutated_code(source, target.path, m.index)
    assert any((ROOT / t).exists() for t in target.tests)


def test_each_mutant_changes_the_code_and_only_one_place() -> None:
    source = "def f(a, b):\n    if a > 1 and b:\n        return a + 1\n    raise ValueError\n"
    keys = [m.key for m in tool.list_mutants(source)]
    assert "f: if a > 1 and b -> if True" in keys
    assert "f: a > 1 and b [drop b]" in keys
    assert "f: a > 1 [Gt->GtE]" in keys
    assert "f: raise ValueError -> pass" in keys
    assert "f: return a + 1 -> return None" in keys
    assert "f: 1 -> 2" in keys
    original = compile(source, "m.py", "exec")
    codes = {tool.mutated_code(source, "m.py", m.index).co_consts for m in tool.list_mutants(source)}
    assert original.co_consts not in codes or len(codes) > 1
    namespace: dict[str, object] = {}
    exec(tool.mutated_code(source, "m.py", keys.index("f: a > 1 [Gt->GtE]")), namespace)
    assert namespace["f"](1, True) == 2  # type: ignore[operator]


def test_equivalent_mutants_name_existing_mutants() -> None:
    for name, listed in tool.EQUIVALENT.items():
        source = (ROOT / tool.TARGETS[name].path).read_text()
        keys = {m.key for m in tool.list_mutants(source)}
        assert set(listed) <= keys, f"{name}: {sorted(set(listed) - keys)}"
