"""What every cached entry holds whatever its dialect: the stored envelope (version, dialect, the
headers that say who answered, when it was stored), and those headers as kept from the answer and
replayed on a hit. Each dialect's entry module adds its own answer fields.
"""

from __future__ import annotations

from typing import Any

import orjson

#: Response headers stored with an answer and replayed on a hit: who answered it.
REPLAYED_HEADERS = (b"x-aigw-provider", b"x-aigw-model", b"x-aigw-deployment")

#: The version of the stored form; an entry of another version is a miss.
VERSION = 1
#: The dialect of an entry that names none: chat, as every entry stored before dialects existed is.
DEFAULT_DIALECT = "chat"


def kept_headers(headers: Any) -> list[tuple[str, str]] | None:
    """The :data:`REPLAYED_HEADERS` among an answer's response ``headers``, as (name, value) text pairs."""
    kept = [
        (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
        for k, v in headers or ()
        if bytes(k).lower() in REPLAYED_HEADERS
    ]
    return kept or None


def replayed(headers: list[tuple[str, str]] | None) -> list[tuple[bytes, bytes]]:
    """Stored headers, ready for ``http.response.start``."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers or ()]


def encode_entry(
    dialect: str | None, fields: dict[str, Any], headers: list[tuple[str, str]] | None, created_at: float
) -> bytes:
    """The stored form of an entry of ``dialect`` (``None``: a chat entry, which names none)."""
    named = {"dialect": dialect} if dialect is not None else {}
    return orjson.dumps({"v": VERSION, **named, **fields, "headers": headers, "created_at": created_at})


def decode_entry(raw: bytes | str, dialect: str) -> dict[str, Any] | None:
    """The fields stored as ``raw`` if it is an entry of ``dialect`` and of this version; else ``None``
    (another dialect's entry, another version, corruption)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        return None
    if data.get("dialect", DEFAULT_DIALECT) != dialect:
        return None
    return data


def stored_headers(data: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The headers of a decoded entry, as (name, value) text pairs; ``None`` when there are none."""
    value = data.get("headers")
    if not isinstance(value, list):
        return None
    pairs = [
        (str(item[0]), str(item[1])) for item in value if isinstance(item, list | tuple) and len(item) == 2
    ]
    return pairs or None


def stored_at(data: dict[str, Any]) -> float:
    """When a decoded entry was stored (0 when it does not say)."""
    return float(data.get("created_at") or 0.0)
