"""Keeping a quantized embedding table quantized: gather its rows first, then dequantize only those.

The default embedding model stores its weights as int8 with a float scale per row, dequantized in the
graph (``Cast`` to float, ``Mul`` by the scale). onnxruntime's constant folding dequantizes every weight
once at load, which keeps inference fast; for the word-embedding table (30,522 x 384) that is 45 MB of
float32 per worker, of which one call reads a few rows. This module rewrites
``Gather(Mul(Cast(Q), S), ids)`` into ``Mul(Cast(Gather(Q, ids)), Gather(S, ids))``: the same
multiplication of the same two floats for every element read, so the vectors are bit for bit the same
(``tests/test_runtime_onnx.py`` compares them), while the table stays int8 (11 MB). Other weights are
folded as before.

The ONNX file is a protobuf; the few fields this needs are read and written here directly (the ``onnx``
package is not a dependency). Fields it does not touch are copied byte for byte. A graph without the
pattern is returned unchanged (``None``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

# Field numbers from onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_OUTPUT = 1, 5, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 3, 4, 5
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME = 1, 2, 8
_VALUE_INFO_NAME = 1
_ATTRIBUTE_NAME, _ATTRIBUTE_INT = 1, 3
_FLOAT, _UINT8, _INT8 = 1, 2, 3

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes, bytes]]:
    """(field number, wire type, value, the field's bytes as found) for each field of a message."""
    at = 0
    while at < len(data):
        start = at
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, at = _read_varint(data, at)
        elif wire == _BYTES:
            size, at = _read_varint(data, at)
            value = data[at : at + size]
            at += size
        elif wire == _FIXED64:
            value, at = data[at : at + 8], at + 8
        elif wire == _FIXED32:
            value, at = data[at : at + 4], at + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if at > len(data):
            raise ValueError("truncated protobuf message")
        yield number, wire, value, data[start:at]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | _BYTES) + _varint(len(value)) + value


@dataclass
class _Node:
    inputs: list[str]
    outputs: list[str]
    name: str = ""
    op_type: str = ""
    #: (attribute name, its integer value if it has one, its bytes)
    attributes: list[tuple[str, int | None, bytes]] = field(default_factory=list)
    #: every other field, as found
    rest: list[bytes] = field(default_factory=list)
    #: the node as read from the file (a node made here has none)
    raw: bytes | None = None

    @classmethod
    def parse(cls, data: bytes) -> _Node:
        node = cls([], [], raw=data)
        for number, _, value, raw in _fields(data):
            if number == _NODE_INPUT and isinstance(value, bytes):
                node.inputs.append(value.decode())
            elif number == _NODE_OUTPUT and isinstance(value, bytes):
                node.outputs.append(value.decode())
            elif number == _NODE_NAME and isinstance(value, bytes):
                node.name = value.decode()
            elif number == _NODE_OP_TYPE and isinstance(value, bytes):
                node.op_type = value.decode()
            elif number == _NODE_ATTRIBUTE and isinstance(value, bytes):
                name, integer = "", None
                for inner, _, item, _ in _fields(value):
                    if inner == _ATTRIBUTE_NAME and isinstance(item, bytes):
                        name = item.decode()
                    elif inner == _ATTRIBUTE_INT and isinstance(item, int):
                        integer = item
                node.attributes.append((name, integer, raw))
            else:
                node.rest.append(raw)
        return node

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        out = b"".join(_bytes_field(_NODE_INPUT, name.encode()) for name in self.inputs)
        out += b"".join(_bytes_field(_NODE_OUTPUT, name.encode()) for name in self.outputs)
        if self.name:
            out += _bytes_field(_NODE_NAME, self.name.encode())
        out += _bytes_field(_NODE_OP_TYPE, self.op_type.encode())
        out += b"".join(raw for _, _, raw in self.attributes)
        return out + b"".join(self.rest)


def _tensor_header(data: bytes) -> tuple[str, int, list[int]]:
    """An initializer's name, element type and shape (its data is not decoded)."""
    name, kind, dims = "", 0, []
    for number, wire, value, _ in _fields(data):
        if number == _TENSOR_NAME and isinstance(value, bytes):
            name = value.decode()
        elif number == _TENSOR_DATA_TYPE and isinstance(value, int):
            kind = value
        elif number == _TENSOR_DIMS and isinstance(value, int):
            dims.append(value)
        elif number == _TENSOR_DIMS and isinstance(value, bytes) and wire == _BYTES:  # packed
            at = 0
            while at < len(value):
                dim, at = _read_varint(value, at)
                dims.append(dim)
    return name, kind, dims


def _rewrite_nodes(nodes: list[_Node], tensors: dict[str, tuple[int, list[int]]], outputs: set[str]) -> bool:
    """Rewrite every dequantized table read by a Gather, in place; True if one was."""
    producer = {name: node for node in nodes for name in node.outputs}
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    changed = False
    for gather in list(nodes):
        if gather.op_type != "Gather" or len(gather.inputs) != 2:
            continue
        if any(name == "axis" and value not in (None, 0) for name, value, _ in gather.attributes):
            continue
        table, ids = gather.inputs
        mul = producer.get(table)
        if mul is None or mul.op_type != "Mul" or len(mul.inputs) != 2 or mul.attributes:
            continue
        cast_side = next((i for i, name in enumerate(mul.inputs) if name in producer), None)
        if cast_side is None:
            continue
        cast, scale = producer[mul.inputs[cast_side]], mul.inputs[1 - cast_side]
        if cast.op_type != "Cast" or len(cast.inputs) != 1:
            continue
        if [value for name, value, _ in cast.attributes if name == "to"] != [_FLOAT]:
            continue
        quantized = tensors.get(cast.inputs[0])
        scales = tensors.get(scale)
        if quantized is None or scales is None or quantized[0] not in (_INT8, _UINT8):
            continue
        rows = quantized[1][0] if len(quantized[1]) == 2 else None
        per_row = scales[1] == [rows, 1]
        if rows is None or scales[0] != _FLOAT or not (per_row or all(d == 1 for d in scales[1])):
            continue
        if readers.get(table) != 1 or readers.get(cast.outputs[0]) != 1 or table in outputs:
            continue
        stem = gather.outputs[0]
        replacement = [_Node([cast.inputs[0], ids], [f"{stem}/rows_q"], f"{gather.name}/rows_q", "Gather")]
        replacement[0].attributes = gather.attributes
        row_scale = scale
        if per_row:
            row_scale = f"{stem}/rows_scale"
            replacement.append(_Node([scale, ids], [row_scale], f"{gather.name}/rows_scale", "Gather"))
            replacement[-1].attributes = gather.attributes
        dequantized = _Node([f"{stem}/rows_q"], [f"{stem}/rows_f"], f"{cast.name}/rows", "Cast")
        dequantized.attributes = cast.attributes
        replacement.append(dequantized)
        operands = [f"{stem}/rows_f", row_scale] if cast_side == 0 else [row_scale, f"{stem}/rows_f"]
        replacement.append(_Node(operands, [stem], f"{mul.name}/rows", "Mul"))
        at = nodes.index(gather)
        nodes[at : at + 1] = replacement
        nodes.remove(mul)
        nodes.remove(cast)
        changed = True
    return changed


def gather_before_dequantize(model: bytes) -> bytes | None:
    """The model with its dequantized tables read by row (see the module's docstring), or ``None`` when
    it has none, or is not a model this can read (onnxruntime then says what is wrong with it)."""
    try:
        return _gather_before_dequantize(model)
    except (ValueError, IndexError):  # not a protobuf, names not UTF-8 (UnicodeDecodeError)
        return None


def _gather_before_dequantize(model: bytes) -> bytes | None:
    graph_raw = b""
    for number, _, value, _ in _fields(model):
        if number == _MODEL_GRAPH and isinstance(value, bytes):
            graph_raw = value
    if not graph_raw:
        return None
    nodes: list[_Node] = []
    tensors: dict[str, tuple[int, list[int]]] = {}
    outputs: set[str] = set()
    for number, _, value, _ in _fields(graph_raw):
        if not isinstance(value, bytes):
            continue
        if number == _GRAPH_NODE:
            nodes.append(_Node.parse(value))
        elif number == _GRAPH_INITIALIZER:
            name, kind, dims = _tensor_header(value)
            tensors[name] = (kind, dims)
        elif number == _GRAPH_OUTPUT:
            outputs.update(
                v.decode() for n, _, v, _ in _fields(value) if n == _VALUE_INFO_NAME and isinstance(v, bytes)
            )
    if not _rewrite_nodes(nodes, tensors, outputs):
        return None
    graph = bytearray()
    nodes_written = False
    for number, _, _, raw in _fields(graph_raw):
        if number != _GRAPH_NODE:
            graph += raw
        elif not nodes_written:  # the nodes, in their new order, where the first one was
            graph += b"".join(_bytes_field(_GRAPH_NODE, node.encode()) for node in nodes)
            nodes_written = True
    out = bytearray()
    for number, _, _, raw in _fields(model):
        out += _bytes_field(_MODEL_GRAPH, bytes(graph)) if number == _MODEL_GRAPH else raw
    return bytes(out)
