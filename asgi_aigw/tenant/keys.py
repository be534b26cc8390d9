"""Gateway API keys: ``aigw_<id>_<secret>``, kept only as a SHA-256 digest.

The id (12 hex digits) names the key in stores, logs and the CLI and is no secret; the secret (64 hex
digits, 256 bits from :mod:`secrets`) is. A random 256-bit secret cannot be guessed from its digest, so a
plain SHA-256 is enough (a slow password hash protects low-entropy secrets; this one has none to
protect), and the check compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Every gateway key starts with this: a bearer without it is not a key (it goes to JWT verification).
KEY_PREFIX = "aigw_"
_ID_HEX = 12
_SECRET_HEX = 64
_KEY = re.compile(rf"aigw_([0-9a-f]{{{_ID_HEX}}})_([0-9a-f]{{{_SECRET_HEX}}})")
#: Key ids alone (CLI arguments, store keys).
KEY_ID = re.compile(rf"[0-9a-f]{{{_ID_HEX}}}")
#: How a stored digest is written: the algorithm, then the hex digest.
HASH_PREFIX = "sha256:"
STORED_HASH = re.compile(r"sha256:[0-9a-f]{64}")
#: Compared against when a key's id is unknown, so an unknown id costs the same work as a wrong secret.
_DUMMY_DIGEST = HASH_PREFIX + "0" * 64


class MalformedKey(ValueError):
    """The string has the gateway's key prefix but not the shape of a key."""


def looks_like_key(value: str) -> bool:
    """Whether ``value`` claims to be a gateway key (its prefix); its shape is checked by :func:`key_id`."""
    return value.startswith(KEY_PREFIX)


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``."""
    key_id = secrets.token_hex(_ID_HEX // 2)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_hex(_SECRET_HEX // 2)}"


def key_id(key: str) -> str:
    """The id of ``key``, or :class:`MalformedKey` (wrong prefix, length or characters)."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise MalformedKey(
            f"a gateway API key is '{KEY_PREFIX}' followed by {_ID_HEX} hex digits, '_' and "
            f"{_SECRET_HEX} hex digits"
        )
    return match.group(1)


def hash_key(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex digest>``."""
    return HASH_PREFIX + hashlib.sha256(key.encode("ascii")).hexdigest()


def matches(key: str, stored: str | None) -> bool:
    """Whether ``key`` hashes to ``stored``, compared in constant time (``None``: an unknown id, which
    is compared against a dummy digest all the same)."""
    computed = hash_key(key).encode("ascii")
    expected = (stored if stored is not None else _DUMMY_DIGEST).encode("ascii", "replace")
    return hmac.compare_digest(computed, expected) and stored is not None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the gateway keeps of a key: never the key, only its digest."""

    id: str
    hash: str
    tenant: str
    user: str | None = None
    name: str = ""
    #: Seconds since the epoch.
    created: float = 0.0
    revoked: bool = False
    #: Budget limits of this key alone, by window name (``tokens_per_day``), in the budget's units
    #: (US dollars for money); applied on top of the tenant's.
    limits: Mapping[str, float] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """Everything but the digest, for listings."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "user": self.user,
            "name": self.name,
            "created": self.created,
            "revoked": self.revoked,
            "limits": dict(self.limits),
        }
