"""Anthropic's structured outputs in the fake: ``output_config`` checked as the real API checks it, and an
answer that follows the schema (platform.claude.com, "Structured outputs").

The rules are written here from Anthropic's documentation, apart from the gateway's conversion in
``asgi_aigw.providers._anthropic_schema``, so the fake judges what the gateway sends on its own terms.
"""

from __future__ import annotations

from typing import Any

import orjson

#: ``output_config`` fields (the SDK's ``OutputConfigParam``).
_CONFIG_FIELDS = frozenset({"format", "effort"})
#: Keywords the decoder does not support: numeric and string constraints, and oneOf (read as anyOf by
#: the SDK before sending). The API refuses a schema that uses them.
_UNSUPPORTED = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "maxItems",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
    }
)


#: A value of each string format, for answers that follow a schema.
_FORMAT_EXAMPLES = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def output_config_problem(body: dict[str, Any]) -> str | None:
    """The real API's 400 message for the body's ``output_config``, or ``None``."""
    config = body.get("output_config")
    if config is None:
        return None
    if not isinstance(config, dict):
        return "output_config: Input should be a valid dictionary"
    for field in config:
        if field not in _CONFIG_FIELDS:
            return f"output_config.{field}: Extra inputs are not permitted"
    fmt = config.get("format")
    if fmt is None:
        return None
    if (
        not isinstance(fmt, dict)
        or fmt.get("type") != "json_schema"
        or not isinstance(fmt.get("schema"), dict)
    ):
        return "output_config.format: Input should be a valid JSON schema output format"
    schema = fmt["schema"]
    return _schema_problem(schema, schema.get("$defs") or {}, "output_config.format.schema", set())


def _schema_problem(schema: Any, defs: dict[str, Any], where: str, seen: set[str]) -> str | None:
    if not isinstance(schema, dict):
        return f"{where}: Input should be a valid dictionary"
    for key in schema:
        if key in _UNSUPPORTED:
            return f"{where}: the '{key}' keyword is not supported by structured outputs"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return f"{where}: recursive schemas are not supported by structured outputs"
        if name not in defs:
            return f"{where}: $ref {ref} does not resolve"
        if problem := _schema_problem(defs[name], defs, f"$defs.{name}", {*seen, name}):
            return problem
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
        for name, sub in (schema.get("properties") or {}).items():
            if problem := _schema_problem(sub, defs, f"{where}.properties.{name}", seen):
                return problem
    if schema.get("type") == "array" and schema.get("minItems", 0) not in (0, 1):
        return f"{where}: minItems values other than 0 or 1 are not supported"
    if "items" in schema and (problem := _schema_problem(schema["items"], defs, f"{where}.items", seen)):
        return problem
    for key in ("anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key) or []):
            if problem := _schema_problem(sub, defs, f"{where}.{key}.{i}", seen):
                return problem
    return None


def structured_answer(body: dict[str, Any]) -> str | None:
    """A JSON text that follows the request's output schema (the decoder guarantees one), or ``None``
    when the request asks for none."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict):
        return None
    schema = fmt["schema"]
    return orjson.dumps(_instance(schema, schema.get("$defs") or {})).decode()


def _instance(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "allOf"):
        if schema.get(key):
            return _instance(schema[key][0], defs)
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        kind = kind[0]
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _instance(sub, defs) for name, sub in properties.items()}
    if kind == "array":
        return [_instance(schema["items"], defs)] if schema.get("minItems") == 1 and "items" in schema else []
    if kind == "string":
        return _FORMAT_EXAMPLES.get(str(schema.get("format")), "text")
    return {"integer": 1, "number": 1.5, "boolean": True}.get(str(kind))
