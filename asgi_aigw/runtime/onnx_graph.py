"""Keeping a quantized model's weights quantized: its embedding tables, and optionally its matrix products.

The default embedding model stores its weights as int8 with a float scale per row or column, dequantized
in the graph (``Cast`` to float, ``Mul`` by the scale). onnxruntime's constant folding dequantizes every
weight once at load, which keeps float inference fast but holds float32 copies. Two rewrites:

- **Tables read by row** (always): ``Gather(Mul(Cast(Q), S), ids)`` becomes
  ``Mul(Cast(Gather(Q, ids)), Gather(S, ids))``: the same multiplication of the same two floats for every
  element read, so the vectors are bit for bit the same (``tests/test_runtime_onnx.py`` compares them),
  while the word-embedding table (30,522 x 384) stays int8 (11 MB, not 45).
- **Matrix products in int8** (:func:`int8_matmuls`, where the CPU multiplies int8 exactly):
  ``MatMul(A, Mul(Cast(Q), S))`` with one scale per output column becomes onnxruntime's
  ``DynamicQuantizeMatMul(A, Q, S)``: the activations are quantized to uint8 per call and multiplied by
  the int8 weights with int32 sums. The weights stay int8 (about 35 MB less for the default model) and a
  question embeds about twice as fast; the vectors move by a cosine of about 0.996. On x86 without VNNI
  the uint8 x int8 products are summed in saturating 16-bit pairs (``vpmaddubsw``), which full-range
  int8 weights can overflow: :mod:`.cpu` says where it is exact.

The ONNX file is a protobuf; the few fields this needs are read and written here directly (the ``onnx``
package is not a dependency). Fields it does not touch are copied byte for byte. A graph without the
pattern is returned unchanged (``None``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

# Field numbers from onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
_MODEL_GRAPH, _MODEL_OPSET_IMPORT = 7, 8
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_OUTPUT = 1, 5, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 3, 4, 5, 7
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME = 1, 2, 8
_VALUE_INFO_NAME = 1
_ATTRIBUTE_NAME, _ATTRIBUTE_INT = 1, 3
_FLOAT, _UINT8, _INT8 = 1, 2, 3

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

#: onnxruntime's own operators, and the version of that set its contrib operators are in.
_MS_DOMAIN, _MS_VERSION = "com.microsoft", 1


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
    #: the operator set (empty: the standard one); also kept in ``rest``
    domain: str = ""
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
                if number == _NODE_DOMAIN and isinstance(value, bytes):
                    node.domain = value.decode()
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


@dataclass
class _Graph:
    """The parts of a graph the rewrites read and change."""

    nodes: list[_Node]
    #: initializers: element type and shape
    tensors: dict[str, tuple[int, list[int]]]
    outputs: set[str]
    #: initializers to write with a new shape
    reshaped: dict[str, list[int]] = field(default_factory=dict)

    def producers(self) -> dict[str, _Node]:
        return {name: node for node in self.nodes for name in node.outputs}

    def readers(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for name in node.inputs:
                counts[name] = counts.get(name, 0) + 1
        return counts


@dataclass
class _Dequantized:
    """``Mul(Cast(quantized), scale)`` of two initializers, read by one node only."""

    mul: _Node
    cast: _Node
    quantized: str
    scale: str
    #: which input of the Mul the Cast is
    cast_side: int


def _dequantized(
    graph: _Graph, name: str, producer: dict[str, _Node], readers: dict[str, int]
) -> _Dequantized | None:
    mul = producer.get(name)
    if mul is None or mul.op_type != "Mul" or len(mul.inputs) != 2 or mul.attributes:
        return None
    cast_side = next((i for i, item in enumerate(mul.inputs) if item in producer), None)
    if cast_side is None:
        return None
    cast, scale = producer[mul.inputs[cast_side]], mul.inputs[1 - cast_side]
    if cast.op_type != "Cast" or len(cast.inputs) != 1:
        return None
    if [value for item, value, _ in cast.attributes if item == "to"] != [_FLOAT]:
        return None
    quantized, scales = graph.tensors.get(cast.inputs[0]), graph.tensors.get(scale)
    if quantized is None or scales is None or quantized[0] not in (_INT8, _UINT8) or scales[0] != _FLOAT:
        return None
    if readers.get(name) != 1 or readers.get(cast.outputs[0]) != 1 or name in graph.outputs:
        return None
    return _Dequantized(mul, cast, cast.inputs[0], scale, cast_side)


def _gather_rows(graph: _Graph) -> bool:
    """Rewrite every dequantized table read by a Gather, in place; True if one was."""
    nodes, producer, readers = graph.nodes, graph.producers(), graph.readers()
    changed = False
    for gather in list(nodes):
        if gather.op_type != "Gather" or len(gather.inputs) != 2:
            continue
        if any(name == "axis" and value not in (None, 0) for name, value, _ in gather.attributes):
            continue
        table, ids = gather.inputs
        found = _dequantized(graph, table, producer, readers)
        if found is None:
            continue
        mul, cast, scale = found.mul, found.cast, found.scale
        shape, scale_shape = graph.tensors[found.quantized][1], graph.tensors[scale][1]
        rows = shape[0] if len(shape) == 2 else None
        per_row = scale_shape == [rows, 1]
        if rows is None or not (per_row or all(d == 1 for d in scale_shape)):
            continue
        stem = gather.outputs[0]
        replacement = [_Node([found.quantized, ids], [f"{stem}/rows_q"], f"{gather.name}/rows_q", "Gather")]
        replacement[0].attributes = gather.attributes
        row_scale = scale
        if per_row:
            row_scale = f"{stem}/rows_scale"
            replacement.append(_Node([scale, ids], [row_scale], f"{gather.name}/rows_scale", "Gather"))
            replacement[-1].attributes = gather.attributes
        dequantized = _Node([f"{stem}/rows_q"], [f"{stem}/rows_f"], f"{cast.name}/rows", "Cast")
        dequantized.attributes = cast.attributes
        replacement.append(dequantized)
        operands = [f"{stem}/rows_f", row_scale] if found.cast_side == 0 else [row_scale, f"{stem}/rows_f"]
        replacement.append(_Node(operands, [stem], f"{mul.name}/rows", "Mul"))
        at = nodes.index(gather)
        nodes[at : at + 1] = replacement
        nodes.remove(mul)
        nodes.remove(cast)
        changed = True
    return changed


def _int8_matmuls(graph: _Graph) -> int:
    """Rewrite every MatMul by a dequantized int8 weight with one scale per output column; how many."""
    nodes, producer, readers = graph.nodes, graph.producers(), graph.readers()
    changed = 0
    for matmul in list(nodes):
        if matmul.op_type != "MatMul" or matmul.domain not in ("", "ai.onnx") or len(matmul.inputs) != 2:
            continue
        found = _dequantized(graph, matmul.inputs[1], producer, readers)
        if found is None or graph.tensors[found.quantized][0] != _INT8:
            continue
        shape, scale_shape = graph.tensors[found.quantized][1], graph.tensors[found.scale][1]
        if len(shape) != 2:
            continue
        columns = shape[1]
        # the operator takes one scale or a 1-D scale per column; a [1, N] scale read by this Mul
        # alone is written as [N] (the same floats)
        if scale_shape == [1, columns] and readers.get(found.scale) == 1:
            graph.reshaped[found.scale] = [columns]
        elif scale_shape not in ([columns], []):
            continue
        fused = _Node(
            [matmul.inputs[0], found.quantized, found.scale],
            list(matmul.outputs),
            f"{matmul.name}/int8",
            "DynamicQuantizeMatMul",
        )
        fused.domain = _MS_DOMAIN
        fused.rest = [_bytes_field(_NODE_DOMAIN, _MS_DOMAIN.encode())]
        at = nodes.index(matmul)
        nodes[at : at + 1] = [fused]
        nodes.remove(found.mul)
        nodes.remove(found.cast)
        changed += 1
    return changed


class Rewritten(NamedTuple):
    """A model rewritten by :func:`rewrite_quantized`."""

    model: bytes
    #: matrix products now done in int8
    int8_matmuls: int


def gather_before_dequantize(model: bytes) -> bytes | None:
    """The model with its dequantized tables read by row (see the module's docstring), or ``None`` when
    it has none, or is not a model this can read (onnxruntime then says what is wrong with it)."""
    rewritten = rewrite_quantized(model, int8_matmul=False)
    return None if rewritten is None else rewritten.model


def int8_matmuls(model: bytes) -> bytes | None:
    """The model with its tables read by row and its matrix products by int8 weights done in int8, or
    ``None`` when it has neither, or is not a model this can read."""
    rewritten = rewrite_quantized(model, int8_matmul=True)
    return None if rewritten is None else rewritten.model


def rewrite_quantized(model: bytes, *, int8_matmul: bool) -> Rewritten | None:
    """The model's quantized weights kept quantized (see the module's docstring), or ``None`` when
    nothing was rewritten."""
    try:
        return _rewrite(model, int8_matmul=int8_matmul)
    except (ValueError, IndexError):  # not a protobuf, names not UTF-8 (UnicodeDecodeError)
        return None


def _parse(graph_raw: bytes) -> _Graph:
    graph = _Graph([], {}, set())
    for number, _, value, _ in _fields(graph_raw):
        if not isinstance(value, bytes):
            continue
        if number == _GRAPH_NODE:
            graph.nodes.append(_Node.parse(value))
        elif number == _GRAPH_INITIALIZER:
            name, kind, dims = _tensor_header(value)
            graph.tensors[name] = (kind, dims)
        elif number == _GRAPH_OUTPUT:
            graph.outputs.update(
                v.decode() for n, _, v, _ in _fields(value) if n == _VALUE_INFO_NAME and isinstance(v, bytes)
            )
    return graph


def _with_dims(tensor: bytes, dims: list[int]) -> bytes:
    """An initializer with another shape (its data and every other field as found)."""
    out = b"".join(_varint(_TENSOR_DIMS << 3 | _VARINT) + _varint(dim) for dim in dims)
    return out + b"".join(raw for number, _, _, raw in _fields(tensor) if number != _TENSOR_DIMS)


def _opsets(model: bytes) -> set[str]:
    domains: set[str] = set()
    for number, _, value, _ in _fields(model):
        if number == _MODEL_OPSET_IMPORT and isinstance(value, bytes):
            domains.update(
                v.decode() for n, _, v, _ in _fields(value) if n == _OPSET_DOMAIN and isinstance(v, bytes)
            )
    return domains


def _rewrite(model: bytes, *, int8_matmul: bool) -> Rewritten | None:
    graph_raw = b""
    for number, _, value, _ in _fields(model):
        if number == _MODEL_GRAPH and isinstance(value, bytes):
            graph_raw = value
    if not graph_raw:
        return None
    graph = _parse(graph_raw)
    changed = _gather_rows(graph)
    fused = _int8_matmuls(graph) if int8_matmul else 0
    if not (changed or fused):
        return None
    written = bytearray()
    nodes_written = False
    for number, _, value, raw in _fields(graph_raw):
        if number == _GRAPH_NODE:
            if not nodes_written:  # the nodes, in their new order, where the first one was
                written += b"".join(_bytes_field(_GRAPH_NODE, node.encode()) for node in graph.nodes)
                nodes_written = True
        elif number == _GRAPH_INITIALIZER and isinstance(value, bytes) and graph.reshaped:
            name = _tensor_header(value)[0]
            dims = graph.reshaped.get(name)
            written += raw if dims is None else _bytes_field(_GRAPH_INITIALIZER, _with_dims(value, dims))
        else:
            written += raw
    out = bytearray()
    for number, _, _, raw in _fields(model):
        out += _bytes_field(_MODEL_GRAPH, bytes(written)) if number == _MODEL_GRAPH else raw
    if fused and _MS_DOMAIN not in _opsets(model):
        opset = _bytes_field(_OPSET_DOMAIN, _MS_DOMAIN.encode()) + _varint(_OPSET_VERSION << 3 | _VARINT)
        out += _bytes_field(_MODEL_OPSET_IMPORT, opset + _varint(_MS_VERSION))
    return Rewritten(bytes(out), fused)
