"""JSON Schema (as OpenAI clients send it in ``response_format``) to the schema Anthropic's structured
outputs take in ``output_config.format`` (platform.claude.com, "Structured outputs").

Anthropic decodes against a subset of JSON Schema: ``type``, ``enum`` and ``const`` of plain values,
``anyOf`` and ``allOf``, ``$ref`` into ``$defs``, ``description`` and ``title``; on objects
``properties``, ``required`` and ``additionalProperties``, which must be ``false``; on strings the
``format`` values listed below; on arrays ``items`` and ``minItems`` of 0 or 1. The walk mirrors the
official SDK's ``transform_schema``:

- ``oneOf`` is read as ``anyOf``;
- an object without ``additionalProperties`` gets ``false``, which pydantic models mean anyway;
- validation-only keywords (``minimum``, ``maxLength``, ``pattern``, ``default``, ...) move into the
  ``description`` (``{minimum: 1}``, values as JSON), so the model still reads them; the client's own
  parsing is what enforces them.

Unlike the SDK, it never changes what a schema allows without a word: an object that allows other keys
(``additionalProperties: true`` or a schema, as ``dict[str, X]`` produces), a recursive ``$ref`` and a
schema with no type are a 400 that names the place.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..kernel.errors import InvalidRequest, clip

#: ``format`` values Anthropic's decoder takes on strings (others move into the description).
STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
#: Types the decoder knows.
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
#: Keywords that carry no constraint, dropped rather than described.
_SILENT = frozenset({"$schema", "$id", "$comment", "strict"})


def anthropic_schema(schema: Any, *, param: str) -> dict[str, Any]:
    """``schema`` as Anthropic's structured outputs take it, or an :class:`InvalidRequest` naming the
    first place it cannot be sent."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{param}: the schema must be a JSON object.", param=param)
    defs = schema.get("$defs", schema.get("definitions"))
    walk = _Walk(defs if isinstance(defs, dict) else {}, param)
    out = walk.schema(schema, "#")
    if walk.defs_out:
        out["$defs"] = walk.defs_out
    return out


class _Walk:
    def __init__(self, defs: dict[str, Any], param: str) -> None:
        self.defs = defs
        self.defs_out: dict[str, Any] = {}
        self.param = param
        self._open: set[str] = set()

    def refuse(self, where: str, why: str) -> InvalidRequest:
        return InvalidRequest(
            f"{self.param} cannot be sent to Anthropic's structured outputs: at {where}, {why}",
            param=self.param,
        )

    def ref(self, ref: str, where: str) -> dict[str, Any]:
        name = ref.rsplit("/", 1)[-1]
        if not ref.startswith(("#/$defs/", "#/definitions/")) or name not in self.defs:
            raise self.refuse(where, f"the reference {ref!r} is not to a definition in $defs.")
        if name in self._open:
            raise self.refuse(
                where, f"the definition {name!r} refers to itself (recursive schemas are not supported)."
            )
        if name not in self.defs_out:
            self._open.add(name)
            self.defs_out[name] = self.schema(self.defs[name], f"#/$defs/{name}")
            self._open.discard(name)
        return {"$ref": f"#/$defs/{name}"}

    def schema(self, schema: Any, where: str) -> dict[str, Any]:
        if not isinstance(schema, dict):
            raise self.refuse(where, "a schema must be a JSON object.")
        rest = {k: v for k, v in schema.items() if k not in _SILENT and k not in ("$defs", "definitions")}
        out: dict[str, Any] = {}
        if isinstance(ref := rest.pop("$ref", None), str):
            out.update(self.ref(ref, where))
        kind = rest.pop("type", None)
        variants = rest.pop("anyOf", None) or rest.pop("oneOf", None)
        every = rest.pop("allOf", None)
        for key in ("enum", "const"):
            if key in rest:
                out[key] = rest.pop(key)
        if isinstance(variants, list):
            out["anyOf"] = [self.schema(v, f"{where}/anyOf/{i}") for i, v in enumerate(variants)]
        if isinstance(every, list):
            out["allOf"] = [self.schema(v, f"{where}/allOf/{i}") for i, v in enumerate(every)]
        if isinstance(kind, list):
            # ["string", "null"]: the decoder takes one type name, so a type list becomes anyOf
            out["anyOf"] = [self.schema({**rest, "type": k}, where) for k in kind]
            return out
        if kind is not None:
            if not isinstance(kind, str) or kind not in TYPES:
                raise self.refuse(where, f"the type {clip(repr(kind))} is not a JSON Schema type.")
            out["type"] = kind
        elif not out:
            raise self.refuse(where, "the schema has no type, anyOf, allOf, enum or const.")
        for key in ("description", "title"):
            if isinstance(rest.get(key), str):
                out[key] = rest.pop(key)
        if kind == "object":
            self.object(rest, out, where)
        elif kind == "array" and "items" in rest:
            out["items"] = self.schema(rest.pop("items"), f"{where}/items")
            if rest.get("minItems") in (0, 1):
                out["minItems"] = rest.pop("minItems")
        elif kind == "string" and isinstance(rest.get("format"), str) and rest["format"] in STRING_FORMATS:
            out["format"] = rest.pop("format")
        if rest:
            # constraints the decoder cannot enforce: said in the description, as the SDK does
            hint = (
                "{" + ", ".join(f"{key}: {orjson.dumps(value).decode()}" for key, value in rest.items()) + "}"
            )
            described = out.get("description")
            out["description"] = f"{described}\n\n{hint}" if described else hint
        return out

    def object(self, rest: dict[str, Any], out: dict[str, Any], where: str) -> None:
        extra = rest.pop("additionalProperties", False)
        if extra is not False:
            raise self.refuse(
                where,
                "the object allows keys beyond its properties (additionalProperties must be false); "
                "give it fixed properties instead of a map.",
            )
        properties = rest.pop("properties", {})
        if not isinstance(properties, dict):
            raise self.refuse(where, "properties must be an object.")
        out["properties"] = {
            name: self.schema(sub, f"{where}/properties/{name}") for name, sub in properties.items()
        }
        out["additionalProperties"] = False
        if isinstance(required := rest.pop("required", None), list):
            out["required"] = list(required)
