"""Bearer-token verification with PyJWT: an explicit algorithm allow-list, HMAC secrets and public keys
kept apart by algorithm family, keys inline, from files or from a cached JWKS endpoint.

Every way a token can be wrong maps to its own :class:`TokenRejected` message (a 401), never to a 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..kernel.errors import GatewayError, clip
from ..kernel.optional import require
from .config import SYMMETRIC_ALGORITHMS, JWTConfig

logger = logging.getLogger("asgi_aigw.tenant")


class TokenRejected(Exception):
    """The token cannot be trusted; ``message`` says why, for the 401 answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeysUnavailable(GatewayError):
    """503: the key set could not be fetched and none is cached, so no token can be verified."""

    status = 503
    type = "server_error"
    code = "jwks_unavailable"


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (``org.id``) in nested claims, or ``None``."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


class JWKSCache:
    """Keys of a JWKS endpoint by ``kid``: fetched on first use, trusted for ``cache_seconds``, fetched
    again early when a token names an unknown ``kid`` (at most once per ``min_refresh_seconds``, so
    tokens with made-up ids cannot make the gateway hammer the endpoint)."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self._client = client
        self._own_client = client is None
        self._keys: dict[str, dict[str, Any]] = {}
        self._prepared: dict[tuple[str, str], Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at = float("-inf")
        self._lock: asyncio.Lock | None = None
        #: How many times the key set was fetched (for tests and metrics).
        self.fetches = 0
        #: The fetch :meth:`prefetch` started, while it runs.
        self._prefetching: asyncio.Task[None] | None = None

    def prefetch(self) -> None:
        """Start fetching the key set in the background (at startup), so that the first token is not
        the one that waits for the endpoint. A failure is logged, and the first token tries again."""
        if self._fetched_at is None and self._prefetching is None:
            self._prefetching = asyncio.get_running_loop().create_task(self._prefetch())

    async def _prefetch(self) -> None:
        try:
            await self._refresh()
        except KeysUnavailable:
            self._attempted_at = float("-inf")  # the first token tries again at once, not 10 s later
        finally:
            self._prefetching = None

    async def key(self, kid: str | None, alg: str) -> Any:
        """The PyJWK for ``kid`` and ``alg``; raises :class:`TokenRejected` or :class:`KeysUnavailable`."""
        now = time.monotonic()
        may_fetch = now - self._attempted_at >= self.min_refresh_seconds
        if self._fetched_at is None:
            # the endpoint failed a moment ago: do not hammer it (but a first fetch still under way
            # is waited for: the requests that arrive meanwhile are not refused)
            if not may_fetch and not self._refreshing:
                raise self._unavailable()
            await self._refresh()
        elif now - self._fetched_at > self.cache_seconds and may_fetch:
            await self._refresh()
        if not self._keys:
            raise self._unavailable()
        if kid is None:
            if len(self._keys) != 1:
                raise TokenRejected(
                    f"The token has no key id (kid) and the key set holds {len(self._keys)} keys: "
                    "sign tokens with a kid."
                )
            kid = next(iter(self._keys))
        if kid not in self._keys and time.monotonic() - self._attempted_at >= self.min_refresh_seconds:
            await self._refresh()  # a rotated key: fetch the set once more
        data = self._keys.get(kid)
        if data is None:
            raise TokenRejected(f"The token's key id (kid) {clip(kid)!r} is not in the trusted key set.")
        declared = data.get("alg")
        if declared and declared != alg:
            raise TokenRejected(f"The token is signed with {alg} but its key {kid!r} is for {declared}.")
        prepared = self._prepared.get((kid, alg))
        if prepared is None:
            jwt = require("jwt", "jwt")
            try:
                prepared = jwt.PyJWK(data, algorithm=alg)
            except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError):
                raise TokenRejected(f"The key {kid!r} cannot verify {alg} signatures.") from None
            self._prepared[(kid, alg)] = prepared
        return prepared

    @staticmethod
    def _unavailable() -> KeysUnavailable:
        return KeysUnavailable(
            "Bearer tokens cannot be verified right now: the gateway could not fetch its key set."
        )

    @property
    def _refreshing(self) -> bool:
        return self._lock is not None and self._lock.locked()

    async def _refresh(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        # an attempt under way when this caller arrived is its attempt too: it shares the outcome (the
        # keys, or the failure) instead of fetching again
        busy = self._refreshing
        async with self._lock:
            if busy:
                return
            self._attempted_at = time.monotonic()
            try:
                keys = await self._fetch()
            except Exception as exc:
                if self._keys:
                    logger.warning("JWKS refresh from %s failed (%s); keeping the cached keys", self.url, exc)
                    return
                logger.error("JWKS fetch from %s failed: %s", self.url, exc)
                raise self._unavailable() from None
            self._keys = keys
            self._prepared.clear()
            self._fetched_at = time.monotonic()
            self.fetches += 1

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        response = await self._client.get(self.url, timeout=self.timeout)
        response.raise_for_status()
        data = response.json()
        keys: dict[str, dict[str, Any]] = {}
        anonymous = 0
        for item in data.get("keys", []) if isinstance(data, dict) else []:
            if not isinstance(item, dict) or item.get("use", "sig") != "sig" or item.get("kty") == "oct":
                continue  # encryption keys and shared secrets never verify tokens here
            kid = item.get("kid")
            if not isinstance(kid, str):
                kid = f"#{anonymous}"
                anonymous += 1
            keys[kid] = item
        if not keys:
            raise ValueError("the key set holds no signing keys")
        return keys

    async def aclose(self) -> None:
        task = self._prefetching
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task])
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


class JWTVerifier:
    """Verifies a token and returns its claims. Built once from :class:`JWTConfig`."""

    def __init__(self, config: JWTConfig, *, http_client: httpx.AsyncClient | None = None) -> None:
        self.jwt = require("jwt", "jwt")
        self.config = config
        self.algorithms = frozenset(config.algorithms)
        self._allowed = ", ".join(config.algorithms)
        self._secret: bytes | None = None
        if config.secret is not None:
            self._secret = config.secret.get_secret_value().encode()
        elif config.secret_file is not None:
            self._secret = config.secret_file.read_bytes().strip()
        self._public_pem: bytes | None = None
        if config.public_key is not None:
            self._public_pem = config.public_key.encode()
        elif config.public_key_file is not None:
            self._public_pem = config.public_key_file.read_bytes()
        self._public_keys: dict[str, Any] = {}
        self.jwks: JWKSCache | None = None
        if config.jwks_url is not None:
            self.jwks = JWKSCache(
                config.jwks_url,
                cache_seconds=config.jwks_cache_seconds,
                min_refresh_seconds=config.jwks_min_refresh_seconds,
                timeout=config.jwks_timeout,
                client=http_client,
            )
        self._options: dict[str, Any] = {"require": list(config.require)}
        self._issuer: str | list[str] | None = config.issuer
        self._audience: str | list[str] | None = config.audience

    async def verify(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; raises :class:`TokenRejected` with the reason."""
        jwt = self.jwt
        errors = jwt.exceptions
        try:
            header = jwt.get_unverified_header(token)
        except errors.PyJWTError:
            raise TokenRejected("The bearer token is not a well-formed JWT.") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise TokenRejected("The token's header names no signing algorithm (alg).")
        if alg.lower() == "none":
            raise TokenRejected("Unsigned tokens (alg 'none') are never accepted.")
        if alg not in self.algorithms:
            raise TokenRejected(
                f"The token is signed with {clip(alg)}, which this gateway does not accept "
                f"(allowed: {self._allowed})."
            )
        key = await self._key_for(alg, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self.config.leeway,
                options=self._options,
            )
        except errors.ExpiredSignatureError:
            raise TokenRejected("The token has expired (exp is in the past).") from None
        except errors.ImmatureSignatureError:
            raise TokenRejected("The token is not valid yet (nbf or iat is in the future).") from None
        except errors.InvalidAudienceError:
            raise TokenRejected("The token's audience (aud) is not one this gateway accepts.") from None
        except errors.InvalidIssuerError:
            raise TokenRejected("The token's issuer (iss) is not one this gateway accepts.") from None
        except errors.MissingRequiredClaimError as exc:
            raise TokenRejected(f"The token lacks the required {exc.claim!r} claim.") from None
        except errors.InvalidSignatureError:
            against = "the shared secret" if alg in SYMMETRIC_ALGORITHMS else "the issuer's public key"
            raise TokenRejected(f"The token's {alg} signature does not verify with {against}.") from None
        except errors.InvalidIssuedAtError:
            raise TokenRejected("The token's iat claim is not a number.") from None
        except errors.InvalidAlgorithmError:
            raise TokenRejected(f"The token's algorithm {alg} does not match its key.") from None
        except (errors.InvalidKeyError, errors.PyJWKError):
            raise TokenRejected(f"The configured key cannot verify {alg} signatures.") from None
        except errors.DecodeError as exc:
            if "claim" in str(exc):  # raised after the signature verified: a claim of the wrong type
                raise TokenRejected(f"The token's claims are invalid: {exc}") from None
            raise TokenRejected("The bearer token is not a well-formed JWT.") from None
        except errors.PyJWTError as exc:
            raise TokenRejected(f"The token is invalid: {exc}.") from None
        for name in ("exp", "nbf", "iat"):
            # PyJWT converts with int(): "exp": "99999999999" or "nbf": false would pass as numbers
            if name in claims and type(claims[name]) not in (int, float):
                raise TokenRejected(
                    f"The token's {name!r} claim must be a number of seconds (NumericDate), "
                    f"not a JSON {type(claims[name]).__name__}."
                )
        return claims

    async def _key_for(self, alg: str, kid: Any) -> Any:
        # HMAC tokens are checked with the secret only, public-key tokens with public keys only: a
        # token signed with HS256 using the public key as secret can never reach a public key.
        if alg in SYMMETRIC_ALGORITHMS:
            assert self._secret is not None  # the configuration guarantees a secret for HS*
            return self._secret
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("The token's key id (kid) is not a string.")
        if self.jwks is not None and (kid is not None or self._public_pem is None):
            return await self.jwks.key(kid, alg)
        if self._public_pem is None:
            raise TokenRejected(f"No key is configured for {alg} tokens.")
        key = self._public_keys.get(alg)
        if key is None:
            try:
                key = self.jwt.algorithms.get_default_algorithms()[alg].prepare_key(self._public_pem)
            except (self.jwt.exceptions.InvalidKeyError, ValueError, TypeError):
                raise TokenRejected(f"The configured public key cannot verify {alg} signatures.") from None
            self._public_keys[alg] = key
        return key

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()
