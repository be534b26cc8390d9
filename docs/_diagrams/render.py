"""Sequence diagrams for the docs, drawn as SVG from the text sources beside this file.

    python docs/_diagrams/render.py          # writes docs/img/<name>.svg for every docs/_diagrams/<name>.seq

The pictures are files the site serves as they are (no script renders them in the browser, nothing is
fetched from elsewhere); ``tests/test_docs_diagrams.py`` fails when one is older than its source.

A source is one statement per line (``#`` starts a comment):

    title The request path
    participant log RequestLogMiddleware      # id, then the label drawn
    client -> log: POST /ai/v1/chat/completions
    router --> log: 200, usage                 # --> a reply (dashed)
    budget -> budget: estimate tokens          # to itself
    note budget: text in a box on its lifeline
    section A 429                              # a band across the diagram
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "img"

COLUMN = 150
ROW = 34
TOP = 74
FONT = "font-family='system-ui, -apple-system, Segoe UI, Roboto, sans-serif'"
INK, MUTED, LINE, ACCENT, NOTE = "#1d232b", "#66707c", "#c9ced6", "#2f6fdf", "#fff7e0"

_MESSAGE = re.compile(r"^(\w+)\s*(-->|->)\s*(\w+)\s*:\s*(.*)$")


@dataclass
class Step:
    kind: str  # message, reply, self, note, section
    source: str = ""
    target: str = ""
    text: str = ""


def parse(text: str) -> tuple[str, int, dict[str, str], list[Step]]:
    title, column, participants, steps = "", COLUMN, {}, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "title":
            title = rest.strip()
        elif word == "column":
            column = int(rest)
        elif word == "participant":
            key, _, label = rest.strip().partition(" ")
            participants[key] = label.strip() or key
        elif word == "note":
            key, _, note = rest.partition(":")
            steps.append(Step("note", key.strip(), text=note.strip()))
        elif word == "section":
            steps.append(Step("section", text=rest.strip()))
        elif match := _MESSAGE.match(line):
            source, arrow, target, label = match.groups()
            kind = "self" if source == target else ("reply" if arrow == "-->" else "message")
            steps.append(Step(kind, source, target, label.strip()))
        else:
            raise ValueError(f"line {number}: cannot read {raw!r}")
    for step in steps:
        for key in (step.source, step.target):
            if key and key not in participants:
                raise ValueError(f"{key!r} is not a participant")
    return title, column, participants, steps


def label(x: float, y: float, text: str, attributes: str = "", fill: str = INK) -> str:
    return f"<text x='{x}' y='{y}' fill='{fill}'{attributes}>{escape(text)}</text>"


def render(text: str) -> str:
    title, column, participants, steps = parse(text)
    keys = list(participants)
    x = {key: column // 2 + 10 + i * column for i, key in enumerate(keys)}
    width = column * len(keys) + 20
    heights = [ROW + (12 if s.kind in ("self", "note") else 0) for s in steps]
    height = TOP + sum(heights) + 30
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='{width}' "
        f"height='{height}' {FONT} font-size='12'>",
        f"<rect width='{width}' height='{height}' fill='#ffffff'/>",
        label(10, 20, title, " font-size='15' font-weight='600'"),
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
        f"orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='{INK}'/></marker></defs>",
    ]
    for key, name in participants.items():
        cx = x[key]
        out.append(
            f"<line x1='{cx}' y1='{TOP - 20}' x2='{cx}' y2='{height - 10}' stroke='{LINE}' "
            "stroke-dasharray='4 4'/>"
        )
        out.append(
            f"<rect x='{cx - 67}' y='30' width='134' height='26' rx='5' fill='#eef3fd' stroke='{ACCENT}'/>"
        )
        out.append(label(cx, 47, name, " text-anchor='middle' font-weight='600'"))
    y = TOP
    for step, step_height in zip(steps, heights, strict=True):
        mid = y + ROW - 10
        if step.kind == "section":
            out.append(f"<rect x='4' y='{y + 6}' width='{width - 8}' height='{ROW - 10}' fill='#f3f4f6'/>")
            out.append(label(12, y + ROW / 2 + 5, step.text, " font-weight='600'", MUTED))
        elif step.kind == "note":
            box = 6.6 * len(step.text) + 20
            left = max(6, min(x[step.source] - 10, width - 6 - box))  # inside the picture
            out.append(
                f"<rect x='{left}' y='{y + 6}' width='{box}' height='{ROW}' rx='3' fill='{NOTE}' "
                "stroke='#e0c070'/>"
            )
            out.append(label(left + 10, y + 6 + ROW / 2 + 4, step.text))
        elif step.kind == "self":
            cx = x[step.source]
            out.append(
                f"<path d='M{cx},{y + 10} h28 v{ROW - 6} h-26' fill='none' stroke='{INK}' "
                "marker-end='url(#arrow)'/>"
            )
            out.append(label(cx + 34, y + ROW / 2 + 10, step.text))
        else:
            x1, x2 = x[step.source], x[step.target]
            dash = " stroke-dasharray='6 4'" if step.kind == "reply" else ""
            line = f"<line x1='{x1}' y1='{mid}' x2='{x2}' y2='{mid}' stroke='{INK}'{dash}"
            out.append(line + " marker-end='url(#arrow)'/>")
            colour = MUTED if step.kind == "reply" else INK
            out.append(label((x1 + x2) / 2, mid - 6, step.text, " text-anchor='middle'", colour))
        y += step_height
    out.append("</svg>")
    return "\n".join(out) + "\n"


def targets() -> dict[Path, Path]:
    """Each source and the picture drawn from it."""
    return {source: OUT / f"{source.stem}.svg" for source in sorted(HERE.glob("*.seq"))}


def main() -> None:
    for source, picture in targets().items():
        picture.write_text(render(source.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"{source.name} -> {picture}", file=sys.stderr)


if __name__ == "__main__":
    main()
