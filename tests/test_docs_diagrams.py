"""The diagrams in docs/img/ are drawn from their text sources in docs/_diagrams/: a source changed
without running ``python docs/_diagrams/render.py`` fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RENDER = Path(__file__).resolve().parent.parent / "docs" / "_diagrams" / "render.py"


def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_diagrams", RENDER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


def test_every_picture_is_drawn_from_its_source() -> None:
    render = renderer()
    targets = render.targets()
    assert {p.name for p in targets.values()} >= {"request-path.svg", "reserve-settle.svg"}
    for source, picture in targets.items():
        assert picture.is_file(), f"{picture} is missing: run python docs/_diagrams/render.py"
        drawn = render.render(source.read_text(encoding="utf-8"))
        assert picture.read_text(encoding="utf-8") == drawn, f"{picture.name} is older than {source.name}"


def test_a_source_speaks_of_its_participants_only() -> None:
    render = renderer()
    with pytest.raises(ValueError, match="'ghost' is not a participant"):
        render.render("participant a A\na -> ghost: hello\n")
    with pytest.raises(ValueError, match="line 2"):
        render.render("participant a A\nthis is not a statement\n")
    picture = render.render("title T & <b>\ncolumn 200\nparticipant a A\nparticipant b B\na -> b: x < y\n")
    assert "x &lt; y" in picture
    assert "T &amp; &lt;b&gt;" in picture
    assert "viewBox='0 0 420 " in picture
