"""The request log's rows in ClickHouse's RowBinary format.

clickhouse-connect's ``insert`` imports pandas on its first call (to test whether the rows are a
DataFrame), about 45 MB per worker for nothing the log uses. The log's columns take a handful of types,
so the sink writes them itself and hands the bytes to ``raw_insert``; each value is written as
clickhouse-connect writes it in its Native format (strings strictly UTF-8, booleans by truth, ``None`` outside
a Nullable column and integers that do not fit refused), so the stored rows are the same.
See https://clickhouse.com/docs/interfaces/formats/RowBinary.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

Writer = Callable[[bytearray, Any], None]

#: struct codes of the fixed-size types, little-endian as RowBinary is.
_FIXED = {
    "UInt8": "<B",
    "UInt16": "<H",
    "UInt32": "<I",
    "UInt64": "<Q",
    "Int8": "<b",
    "Int16": "<h",
    "Int32": "<i",
    "Int64": "<q",
    "Float32": "<f",
    "Float64": "<d",
}


#: ``LowCardinality(String)`` values an encoder keeps encoded; past this many it starts again.
_KNOWN_VALUES = 4096
#: The longest value kept, in characters: the encoder does not rely on the log to have cut a client's
#: text short (it cuts a requested model to 200), and 4,096 values as long as a body must not stay.
_KNOWN_MAX_CHARS = 256


def _varint(out: bytearray, size: int) -> None:
    while size > 0x7F:
        out.append(0x80 | (size & 0x7F))
        size >>= 7
    out.append(size)


def _string(out: bytearray, value: Any) -> None:
    if value is None:  # Nullable(String) is written by _nullable; None here has no place
        raise TypeError("None in a column that is not Nullable")
    if not value:
        out.append(0)
        return
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    _varint(out, len(data))
    out += data


def _bool(out: bytearray, value: Any) -> None:
    out.append(1 if value else 0)


def _fixed(code: str) -> Writer:
    pack = struct.Struct(code).pack

    def write(out: bytearray, value: Any) -> None:
        out += pack(value)

    return write


def _datetime64(precision: int) -> Writer:
    scale = 10**precision
    pack = struct.Struct("<q").pack

    def write(out: bytearray, value: Any) -> None:
        if isinstance(value, datetime):  # ticks as clickhouse-connect computes them from a datetime
            value = ((math.floor(value.timestamp()) * 1_000_000 + value.microsecond) * scale) // 1_000_000
        out += pack(value)

    return write


def _nullable(inner: Writer) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(1)
        else:
            out.append(0)
            inner(out, value)

    return write


def _map(key: Writer, value: Writer) -> Writer:
    def write(out: bytearray, mapping: Any) -> None:
        items = mapping.items() if mapping else ()
        _varint(out, len(items))
        for k, v in items:
            key(out, k)
            value(out, v)

    return write


def _split_arguments(text: str) -> list[str]:
    """``"A, B(C, D)"`` → ``["A", "B(C, D)"]`` (commas at the top level only)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def writer(kind: str) -> Writer:
    """The writer of one value of the ClickHouse type ``kind``; ``ValueError`` for a type it cannot write."""
    name, _, rest = kind.partition("(")
    arguments = _split_arguments(rest[:-1]) if rest.endswith(")") else []
    if name == "String" and not rest:
        return _string
    if name == "Bool" and not rest:
        return _bool
    if name in _FIXED and not rest:
        return _fixed(_FIXED[name])
    if name == "LowCardinality" and len(arguments) == 1:  # written as its inner type in RowBinary
        return writer(arguments[0])
    if name == "Nullable" and len(arguments) == 1:
        return _nullable(writer(arguments[0]))
    if name == "Map" and len(arguments) == 2:
        return _map(writer(arguments[0]), writer(arguments[1]))
    if name == "DateTime64" and arguments and arguments[0].isdigit():
        return _datetime64(int(arguments[0]))
    raise ValueError(f"no RowBinary writer for the ClickHouse type {kind!r}")


def row_encoder(columns: Sequence[tuple[str, str, Any]]) -> Callable[[Iterable[dict[str, Any]]], bytes]:
    """An encoder of rows (dicts) into RowBinary for ``columns``: (name, ClickHouse type, the value written
    when a row lacks the column)."""
    plan = [(name, kind, default, writer(kind)) for name, kind, default in columns]
    fast = _compile(plan)

    def encode_slowly(out: bytearray, row: dict[str, Any]) -> None:
        """One row, a column at a time: exact about which column refused which value."""
        get = row.get
        for name, kind, default, write in plan:
            value = get(name, default)
            try:
                write(out, value)
            except (TypeError, ValueError, AttributeError, struct.error) as exc:
                why = f"request log column {name!r} cannot hold {value!r} ({kind}): {exc}"
                raise ValueError(why) from exc

    def encode(rows: Iterable[dict[str, Any]]) -> bytes:
        out = bytearray()
        for row in rows:
            start = len(out)
            try:
                fast(out, row)
            except Exception:
                # a value the straight-line code does not take as it is (bytes for a string, a
                # datetime, a wrong type): the row again, column by column, which writes it or says why
                del out[start:]
                encode_slowly(out, row)
        return bytes(out)

    return encode


def _compile(plan: Sequence[tuple[str, str, Any, Writer]]) -> Callable[[bytearray, dict[str, Any]], None]:
    """A function writing one row of ``plan`` in straight-line code: a row costs a fraction of the loop
    over the columns (the request log encodes on the event loop). Strings, booleans, fixed-size numbers,
    their Nullable forms and maps are written inline, and a run of fixed-size columns (booleans included)
    with one ``struct`` call; other types call their writer. A ``LowCardinality(String)`` value (a
    tenant, a route, a model, a map's key) takes few values by the column's own definition: each is
    encoded once and kept, so that a row copies their bytes instead of encoding a dozen strings. Values
    are read by subscript: a row lacking a column raises, as does any value the plan's writers would not
    write the same way, and :func:`row_encoder` then writes the row slowly (a missing column as its
    default)."""
    known: dict[str, bytes] = {}

    def low_cardinality(value: Any) -> bytes:
        """``value`` as a String column holds it (length, then UTF-8), kept for the next row."""
        if value.__class__ is not str:
            raise TypeError
        out = bytearray()
        _string(out, value)
        data = bytes(out)
        if len(value) <= _KNOWN_MAX_CHARS:
            if len(known) >= _KNOWN_VALUES:  # a client's made-up model names cannot grow it without end
                known.clear()
            known[value] = data
        return data

    names: dict[str, Any] = {"varint": _varint, "known": known.get, "low_cardinality": low_cardinality}
    lines = ["def write_row(out, row):"]
    run: list[tuple[str, str]] = []  # (column, struct code) of fixed-size columns waiting to be packed

    def fixed_code(kind: str) -> str | None:
        name, _, rest = kind.partition("(")
        if name == "Bool" and not rest:
            return "?"  # struct writes a value's truth as 1 or 0, as _bool does
        if name in _FIXED and not rest:
            return _FIXED[name][1:]
        return None

    def flush() -> None:
        if not run:
            return
        index = len(names)
        names[f"pack{index}"] = struct.Struct("<" + "".join(code for _, code in run)).pack
        values = ", ".join(f"row[{column!r}]" for column, _ in run)
        lines.append(f"    out += pack{index}({values})")
        run.clear()

    def value_code(kind: str, value: str, indent: str, index: object) -> list[str]:
        name, _, rest = kind.partition("(")
        inner = rest[:-1] if rest.endswith(")") else ""
        if name == "LowCardinality" and inner == "String":
            return [f"{indent}out += known({value}) or low_cardinality({value})"]
        if name == "LowCardinality":
            return value_code(inner, value, indent, index)
        if name == "String" and not rest:
            return [
                f"{indent}if {value}.__class__ is not str: raise TypeError",
                f"{indent}if {value}:",
                f"{indent}    data = {value}.encode()",
                f"{indent}    if len(data) < 128: out.append(len(data))",
                f"{indent}    else: varint(out, len(data))",
                f"{indent}    out += data",
                f"{indent}else: out.append(0)",
            ]
        if name == "Bool" and not rest:
            return [f"{indent}out.append(1 if {value} else 0)"]
        if (name in _FIXED and not rest) or name == "DateTime64":
            # DateTime64 as ticks (an int); a datetime makes pack raise, and the slow path converts it
            names[f"pack_{index}"] = struct.Struct(_FIXED.get(name, "<q")).pack
            return [f"{indent}out += pack_{index}({value})"]
        if name == "Map":
            key_kind, number_kind = _split_arguments(inner)
            return [
                f"{indent}if {value}:",
                f"{indent}    if {value}.__class__ is not dict: raise TypeError",
                f"{indent}    size = len({value})",
                f"{indent}    if size < 128: out.append(size)",
                f"{indent}    else: varint(out, size)",
                f"{indent}    for key, number in {value}.items():",
                *value_code(key_kind, "key", indent + "        ", f"{index}_key"),
                *value_code(number_kind, "number", indent + "        ", f"{index}_value"),
                f"{indent}else: out.append(0)",
            ]
        if name == "Nullable":
            return [
                f"{indent}if {value} is None: out.append(1)",
                f"{indent}else:",
                f"{indent}    out.append(0)",
                *value_code(inner, value, indent + "    ", index),
            ]
        raise LookupError(kind)

    for index, (column, kind, _default, write) in enumerate(plan):
        base = kind[len("LowCardinality(") : -1] if kind.startswith("LowCardinality(") else kind
        code = fixed_code(base)
        if code is not None:
            run.append((column, code))
            continue
        flush()
        lines.append(f"    value = row[{column!r}]")
        try:
            lines += value_code(kind, "value", "    ", index)
        except LookupError:  # Map and the rest: their own writer
            names[f"write{index}"] = write
            lines.append(f"    write{index}(out, value)")
    flush()
    # the code is built above from the column types alone: no outside text reaches it
    exec("\n".join(lines), names)
    function: Callable[[bytearray, dict[str, Any]], None] = names["write_row"]
    return function
