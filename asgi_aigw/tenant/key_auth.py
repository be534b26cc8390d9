"""Reading a gateway API key from a request and checking it against the key store.

The openai SDK sends its key as ``Authorization: Bearer <key>``, the anthropic SDK (and Claude Code) as
``x-api-key: <key>``; both are read. A bearer without the key prefix is not a key and is left to JWT
verification; an ``x-api-key`` is always meant as a key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..kernel.errors import GatewayError, InvalidRequest, Unauthorized
from ..kernel.types import Scope
from .key_store import KeyStore, KeyStoreError
from .keys import KEY_PREFIX, KeyRecord, MalformedKey, key_id, looks_like_key, matches

logger = logging.getLogger("asgi_aigw.tenant")

_AUTHORIZATION = b"authorization"
_X_API_KEY = b"x-api-key"
_BEARER = "bearer "


class KeyStoreUnavailable(GatewayError):
    """503: the key store cannot be reached, so no key can be checked."""

    status = 503
    type = "server_error"
    code = "key_store_unavailable"


def _invalid(message: str) -> Unauthorized:
    return Unauthorized(message, code="invalid_api_key")


def bearer_key(value: str) -> str | None:
    """The gateway key in an ``Authorization`` value, ``None`` when it holds something else (a JWT)."""
    value = value.strip()
    if value[: len(_BEARER)].lower() != _BEARER:
        return None
    token = value[len(_BEARER) :].strip()
    return token if looks_like_key(token) else None


class KeyAuthenticator:
    """The key a request carries, checked: its record, ``None`` when it carries none, or a 400/401/503."""

    def __init__(self, store: KeyStore, single_header: Callable[[Scope, bytes], bytes | None]) -> None:
        self.store = store
        self._header = single_header

    def presented(self, scope: Scope) -> str | None:
        """The gateway key sent in ``Authorization`` or ``x-api-key`` (both: they must agree)."""
        raw_bearer = self._header(scope, _AUTHORIZATION)
        from_bearer = bearer_key(raw_bearer.decode("latin-1")) if raw_bearer is not None else None
        raw_api_key = self._header(scope, _X_API_KEY)
        from_header = raw_api_key.decode("latin-1").strip() if raw_api_key is not None else None
        if from_header is not None and not looks_like_key(from_header):
            raise _invalid(
                f"The x-api-key header does not hold a gateway API key (they start with '{KEY_PREFIX}'): "
                "send the key the gateway issued you."
            )
        if from_bearer is not None and from_header is not None and from_bearer != from_header:
            raise InvalidRequest(
                "Authorization and x-api-key carry different API keys: send one key.",
                code="conflicting_api_keys",
            )
        return from_bearer or from_header

    async def check(self, key: str) -> KeyRecord:
        """The record of ``key``, or 401 when it is malformed, unknown, wrong or revoked."""
        try:
            ident = key_id(key)
        except MalformedKey as exc:
            raise _invalid(f"The API key is malformed: {exc}.") from None
        try:
            record = await self.store.get(ident)
        except KeyStoreError as exc:
            logger.error("API key store failed (%s); answering 503", exc)
            raise KeyStoreUnavailable(
                "API keys cannot be checked right now (the key store is unreachable); try again shortly."
            ) from None
        # the digest is compared even for an unknown id, so the answer takes as long either way
        if not matches(key, record.hash if record is not None else None) or record is None:
            raise _invalid("The API key is not valid: check it, or ask for a new one.")
        if record.revoked:
            raise Unauthorized(
                f"The API key {record.id} has been revoked: ask for a new one.", code="revoked_api_key"
            )
        return record

    async def authenticate(self, scope: Scope) -> KeyRecord | None:
        key = self.presented(scope)
        return None if key is None else await self.check(key)

    async def aclose(self) -> None:
        await self.store.aclose()
