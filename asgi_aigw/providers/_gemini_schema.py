"""JSON Schema (as OpenAI clients send it) to the Schema object Gemini takes in
``functionDeclarations[].parameters`` and ``generationConfig.responseSchema``.

That field is Gemini's OpenAPI 3.0 subset (ai.google.dev/api/caching#Schema), not JSON Schema. It takes
``type`` (one name), ``format``, ``title``, ``description``, ``nullable``, ``enum``, ``items``,
``minItems``, ``maxItems``, ``properties``, ``required``, ``minProperties``, ``maxProperties``,
``minLength``, ``maxLength``, ``pattern``, ``minimum``, ``maximum``, ``anyOf``, ``propertyOrdering``,
and ``example``; it refuses with a 400 (``Unknown name "..."``) anything else: ``$schema``,
``$defs``/``$ref``, ``additionalProperties``, ``type: [..., "null"]``, ``oneOf``, ``const``.

Pydantic v2 models (what pydantic-ai, instructor and LangChain send with ``strict=True``) produce all of
those, so one walk turns them into the subset: ``$ref`` inlined from ``$defs``, ``X | None`` (``anyOf``
with ``{"type": "null"}`` or a ``type`` list) made ``nullable: true``, ``oneOf`` read as ``anyOf``,
``const`` as a one-value ``enum``, ``allOf`` of one schema merged, ``properties`` and ``required``
kept only where Gemini takes them (non-empty, on objects, naming defined properties), and the keywords
Gemini has no field for (validation-only hints such as ``additionalProperties: false``, and
``default``, which the field takes only in some API versions) left out. What cannot be said in the
subset (a recursive ``$ref``, ``not``, ``allOf`` of several schemas) is a 400 that says so.
"""

from __future__ import annotations

from typing import Any

from ..kernel.errors import InvalidRequest

#: The Schema fields Gemini accepts; every other keyword is left out (after the rewrites below).
ACCEPTED = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "propertyOrdering",
        "example",
    }
)
#: Keywords with no equivalent whose loss would change what the schema allows: refused, not dropped.
_INEXPRESSIBLE = ("not", "if", "then", "else", "patternProperties", "dependentSchemas")


def gemini_parameters(schema: dict[str, Any] | None, *, param: str) -> dict[str, Any] | None:
    """A function's ``parameters`` for Gemini; ``None`` (leave the field out) for a function that takes
    none, since Gemini refuses an object schema without properties there ("should be non-empty for
    OBJECT type")."""
    if not schema:
        return None
    converted = gemini_schema(schema, param=param)
    return converted if converted.get("properties") else None


def gemini_schema(schema: dict[str, Any], *, param: str) -> dict[str, Any]:
    """``schema`` in Gemini's Schema subset; ``param`` names the request field for a 400."""
    definitions: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, dict):
            definitions.update(found)
    return _Walk(definitions, param).node(schema, ())


class _Walk:
    __slots__ = ("_definitions", "_param")

    def __init__(self, definitions: dict[str, Any], param: str) -> None:
        self._definitions = definitions
        self._param = param

    def _refuse(self, why: str) -> InvalidRequest:
        return InvalidRequest(
            f"{self._param}: {why} Gemini takes a subset of JSON Schema (no recursion, no 'not', no "
            "'allOf' of several schemas); simplify the schema for this model.",
            param=self._param,
        )

    def _resolve(self, ref: Any, seen: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
        if not isinstance(ref, str) or not ref.startswith(("#/$defs/", "#/definitions/")):
            raise self._refuse(f"the $ref {ref!r} does not point into the schema's $defs.")
        name = ref.rsplit("/", 1)[1]
        if name in seen:
            # Gemini's Schema has no references: a recursive model cannot be written out
            raise self._refuse(f"the schema is recursive ('{name}' refers to itself).")
        target = self._definitions.get(name)
        if not isinstance(target, dict):
            raise self._refuse(f"the $ref {ref!r} names no definition in $defs.")
        return target, (*seen, name)

    def node(self, schema: Any, seen: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(schema, dict):
            raise self._refuse(f"{schema!r} is not a schema object.")
        if "$ref" in schema:
            target, seen = self._resolve(schema["$ref"], seen)
            # keywords next to a $ref (pydantic puts a field's description there) win over the target's
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        for keyword in _INEXPRESSIBLE:
            if keyword in schema:
                raise self._refuse(f"the keyword '{keyword}' has no equivalent.")
        schema = dict(schema)
        if "allOf" in schema:
            parts = schema.pop("allOf")
            if not isinstance(parts, list) or len(parts) != 1:
                raise self._refuse("'allOf' of several schemas has no equivalent.")
            schema = {**self.node(parts[0], seen), **schema}
        if "oneOf" in schema:
            # a discriminated union: Gemini's anyOf says the same to the model
            schema["anyOf"] = schema.pop("oneOf")
        if "const" in schema:
            schema["enum"] = [schema.pop("const")]
        nullable = False
        kind = schema.get("type")
        if isinstance(kind, list):
            names = [k for k in kind if k != "null"]
            nullable = len(names) < len(kind)
            if len(names) == 1:
                schema["type"] = names[0]
            else:
                del schema["type"]
                schema["anyOf"] = [{"type": name} for name in names]
        elif kind == "null":
            raise self._refuse("a property that can only be null has no equivalent.")
        out: dict[str, Any] = {}
        options = schema.get("anyOf")
        if isinstance(options, list):
            kept = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            nullable = nullable or len(kept) < len(options)
            if len(kept) == 1:
                # Optional[X]: X itself, nullable; the outer description and default win
                outer = {k: v for k, v in schema.items() if k != "anyOf"}
                out = self.node({**kept[0], **{k: v for k, v in outer.items() if k != "type"}}, seen)
                if nullable:
                    out["nullable"] = True
                return out
            schema["anyOf"] = kept
        for key, value in schema.items():
            if key not in ACCEPTED:
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: self.node(sub, seen) for name, sub in value.items()}
            elif key == "items" and isinstance(value, dict):
                out[key] = self.node(value, seen)
            elif key == "anyOf" and isinstance(value, list):
                out[key] = [self.node(sub, seen) for sub in value]
            elif key == "enum" and isinstance(value, list):
                # Gemini's enum is a list of strings (with type STRING): None is said with nullable
                if None in value:
                    nullable = True
                out[key] = [v for v in value if v is not None]
            else:
                out[key] = value
        if "enum" in out and "type" not in out:
            out["type"] = "string"
        if "properties" in out and "type" not in out and "anyOf" not in out:
            out["type"] = "object"  # a typeless schema with properties: Gemini needs the type said
        if out.get("type", "object") != "object":
            # Gemini: "properties: only allowed for OBJECT type" (MCP servers' schemas often have them)
            out.pop("properties", None)
            out.pop("required", None)
        if out.get("properties") == {}:
            del out["properties"]  # Gemini: "properties: should be non-empty for OBJECT type"
        if "required" in out:
            # Gemini: "required[0]: property is not defined" for a name its properties lack
            defined = out.get("properties") or {}
            listed = out["required"] if isinstance(out["required"], list) else []
            required = [name for name in listed if name in defined]
            if required:
                out["required"] = required
            else:
                del out["required"]
        if nullable:
            out["nullable"] = True
        return out
