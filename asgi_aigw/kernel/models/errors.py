"""Turn pydantic validation errors into one sentence a client can act on."""

from __future__ import annotations

from pydantic import ValidationError

_UNION_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "literal"})


def _param_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or "[" in part or "-" in part or part[:1].isupper():
            # pydantic's union branch tags ("str", "list[ContentPart]", "ImageURL"), not client fields.
            continue
        else:
            out += f".{part}" if out else part
    return out


def validation_error_message(exc: ValidationError, what: str) -> tuple[str, str | None]:
    """A message naming every invalid field (up to five) and the ``param`` of the first one."""
    parts: list[str] = []
    first_param: str | None = None
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        param = _param_path(error["loc"])
        if param in seen:
            continue  # unions report one error per branch; one per field is enough
        seen.add(param)
        first_param = first_param or param or None
        parts.append(f"'{param}': {error['msg']}" if param else str(error["msg"]))
        if len(parts) == 5:
            break
    return f"Invalid {what}: " + "; ".join(parts) + ".", first_param
