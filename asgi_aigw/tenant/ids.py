"""Tenant ids: validated before they reach a store key, a header or a log line."""

from __future__ import annotations

import re

#: Letters, digits, ``.``, ``_``, ``-``, ``@``; starting with a letter or digit. Nothing a Redis key, a
#: hash tag (``{}``), a glob (``*?[]``), a key separator (``:``) or a log line (newlines) could trip on.
DEFAULT_TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]*"
DEFAULT_MAX_LENGTH = 64
#: The loosest pattern any layer accepts: printable, no whitespace (the forbidden set applies on top).
KEY_SAFE_PATTERN = r"[!-~]+"

#: Refused whatever pattern is configured: these would break key hash tags, key scans or log lines.
_FORBIDDEN = re.compile(r"[{}:*?\[\]\\\s\x00-\x1f\x7f]")


#: Accepted ids a validator remembers.
_MAX_REMEMBERED = 4096


class InvalidTenantId(ValueError):
    """The tenant id cannot be used; the message says why (it never repeats the raw value)."""


class TenantIdValidator:
    """Checks tenant ids against a pattern and a maximum length; compiled once."""

    __slots__ = ("_pattern", "_valid", "max_length", "pattern")

    def __init__(self, pattern: str = DEFAULT_TENANT_PATTERN, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.pattern = pattern
        self.max_length = max_length
        self._pattern = re.compile(pattern)
        #: Ids already accepted: the same few tenants come back on every request (bounded, and each
        #: at most ``max_length`` characters).
        self._valid: set[str] = set()

    def __call__(self, value: object) -> str:
        """``value`` as a valid tenant id, or :class:`InvalidTenantId`."""
        if value.__class__ is str and value in self._valid:
            return value
        if not isinstance(value, str):
            # a JWT claim may be a number: accept integers, refuse objects and lists
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            else:
                raise InvalidTenantId(f"the tenant id must be a string, not a JSON {type(value).__name__}")
        if not value:
            raise InvalidTenantId("the tenant id is empty")
        if len(value) > self.max_length:
            raise InvalidTenantId(f"the tenant id is longer than {self.max_length} characters")
        if _FORBIDDEN.search(value) or not self._pattern.fullmatch(value):
            raise InvalidTenantId(
                f"the tenant id has characters outside the allowed set (pattern {self.pattern}; "
                "never ':', '{', '}', '*', '?', '[', ']', '\\', spaces or control characters)"
            )
        if len(self._valid) < _MAX_REMEMBERED and value.__class__ is str:
            self._valid.add(value)
        return value


_default = TenantIdValidator()


def validate_tenant_id(value: object) -> str:
    """``value`` checked with the default pattern and length; raises :class:`InvalidTenantId`."""
    return _default(value)
