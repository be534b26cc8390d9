"""Configuration of :class:`~asgi_aigw.tenant.TenantMiddleware` (the ``tenant:`` section)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..kernel.config import ConfigSection
from ..stores.registry import KEY_STORES
from .ids import DEFAULT_MAX_LENGTH, DEFAULT_TENANT_PATTERN
from .keys import KEY_ID, STORED_HASH

#: Every algorithm PyJWT verifies with the crypto extra. ``none`` is not one of them, on purpose.
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA"}
)
SUPPORTED_ALGORITHMS = SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS


class JWTConfig(ConfigSection):
    """How bearer tokens are verified. HMAC secrets and public keys are kept apart by algorithm family,
    so a token signed with HS256 is never checked against a public key (no key confusion)."""

    #: The allow-list; a token whose ``alg`` is not in it is refused before any key is looked at.
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)
    #: HMAC secret (HS*), inline or from a file.
    secret: SecretStr | None = None
    secret_file: Path | None = None
    #: PEM public key (RS*, PS*, ES*, EdDSA), inline or from a file.
    public_key: str | None = None
    public_key_file: Path | None = None
    #: JWKS endpoint: keys chosen by ``kid``; fetched once, cached, refreshed on an unknown ``kid``.
    jwks_url: str | None = None
    #: Seconds a fetched key set is trusted before it is fetched again.
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    #: At most one refresh per this many seconds when tokens carry unknown ``kid`` values.
    jwks_min_refresh_seconds: float = Field(default=10.0, ge=0)
    jwks_timeout: float = Field(default=5.0, gt=0)
    #: Expected ``iss`` (any of them) and ``aud`` (any of them); ``None`` skips the check.
    issuer: str | list[str] | None = None
    audience: str | list[str] | None = None
    #: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
    leeway: float = Field(default=30.0, ge=0)
    #: Claims that must be present.
    require: list[str] = Field(default_factory=lambda: ["exp"])
    #: The claim holding the tenant id, as a dotted path into nested objects (``org.id``).
    tenant_claim: str = "sub"
    #: The claim holding the user id (who asked), as a dotted path; ``None``: tokens name no user.
    user_claim: str | None = None
    #: Where the token is read from: ``Authorization: Bearer <token>`` by default.
    header: str = "authorization"
    scheme: str | None = "Bearer"
    #: Refuse requests without a token (401). When false, they fall back to the header or the default.
    required: bool = True

    @field_validator("algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        unknown = [alg for alg in value if alg not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(
                f"unsupported JWT algorithm(s) {unknown}; choose from {sorted(SUPPORTED_ALGORITHMS)} "
                "('none' is never accepted)"
            )
        return value

    @field_validator("header")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _keys_for_algorithms(self) -> JWTConfig:
        wants_hmac = any(alg in SYMMETRIC_ALGORITHMS for alg in self.algorithms)
        wants_public = any(alg in ASYMMETRIC_ALGORITHMS for alg in self.algorithms)
        has_secret = self.secret is not None or self.secret_file is not None
        has_public = any(v is not None for v in (self.public_key, self.public_key_file, self.jwks_url))
        if wants_hmac and not has_secret:
            raise ValueError("an HS* algorithm is allowed but no secret or secret_file is set")
        if wants_public and not has_public:
            raise ValueError(
                "an asymmetric algorithm is allowed but no public_key, public_key_file or jwks_url is set"
            )
        if has_secret and not wants_hmac:
            raise ValueError("a secret is set but no HS* algorithm is allowed: add one to algorithms")
        return self


class KeyLimits(ConfigSection):
    """Budget limits of one API key, with the windows of ``budget.limits``; they apply on top of its
    tenant's (the tighter wins). Unset: no limit of the key's own. Money is in US dollars."""

    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_hour: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    tokens_per_month: int | None = Field(default=None, ge=0)
    cost_per_day: float | None = Field(default=None, ge=0)
    cost_per_month: float | None = Field(default=None, ge=0)

    def as_dict(self) -> dict[str, float]:
        """The limits that are set, by window name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class APIKeyEntry(ConfigSection):
    """A gateway API key kept in the configuration: its digest, never the key (``aigw keys create
    --print-config`` prints the entry)."""

    #: The key's id, the 12 hex digits after ``aigw_``.
    id: str
    #: ``sha256:<hex digest of the whole key>``.
    hash: str
    #: The tenant the key's requests are charged to.
    tenant: str
    #: The user the key's requests are recorded as; unset: ``key-<id>``.
    user: str | None = None
    #: A label for people (``ci``, ``claude-code laptop``).
    name: str = ""
    created: datetime | None = None
    #: A revoked key is refused (401) from the next request on.
    revoked: bool = False
    #: The key's own budget limits, inside its tenant's.
    limits: KeyLimits = Field(default_factory=KeyLimits)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not KEY_ID.fullmatch(value):
            raise ValueError("a key id is 12 lower-case hex digits (the part after 'aigw_')")
        return value

    @field_validator("hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not STORED_HASH.fullmatch(value):
            raise ValueError(
                "a key hash is 'sha256:' and 64 lower-case hex digits (never the key itself): "
                "print one with 'aigw keys create TENANT --print-config'"
            )
        return value


class TenantConfig(ConfigSection):
    """Where the identity comes from. Precedence: an identity the host app set before the stack, the
    app's resolver, a verified JWT, then (only when no verified source is configured, unless
    ``header_mode`` says otherwise) the header, then ``default_tenant``. Gateway API keys
    (``api_keys``, ``key_store``) are a verified source, taking precedence over a JWT."""

    #: Header carrying the tenant id; ``None`` to ignore headers.
    header: str | None = "x-tenant-id"
    #: What the header may do. ``trusted``: it identifies a request no verified source identified;
    #: ``claim``: it is only checked against the verified identity (mismatch 403, none verified 401);
    #: ``off``: ignored. ``None`` (the default): ``trusted`` when none of ``resolver``, ``jwt``,
    #: ``api_keys`` and ``key_store`` is set, else ``off``, so a bare header never identifies a request
    #: when a verified source exists.
    header_mode: Literal["off", "claim", "trusted"] | None = None
    jwt: JWTConfig | None = None
    #: Gateway API keys kept in this file (digests only), read from ``Authorization: Bearer aigw_...``
    #: or ``x-api-key``.
    api_keys: list[APIKeyEntry] = Field(default_factory=list)
    #: Where keys made with ``aigw keys create`` live (``redis://HOST:PORT/DB``, ``rediss://``,
    #: ``unix://``, ``redis+cluster://``, ``redis+sentinel://``): read on every request, so a revocation
    #: applies at once on every worker.
    key_store: str | None = None
    #: Prefix of the key store's Redis keys.
    key_store_prefix: str = "aigw:keys:"
    #: Seconds to wait for the key store on each request (then 503).
    key_store_timeout: float = Field(default=2.0, gt=0)
    #: ``"module:callable"`` taking the ASGI scope and returning an :class:`Identity`, a tenant id or
    #: None (sync or async).
    resolver: str | None = None
    #: ``"module:callable"`` taking the :class:`~asgi_aigw.Identity` and the ASGI scope, returning
    #: whether the app still lets that caller in (sync or async): a JWT stays valid after the app has
    #: disabled its user, so this is where the app says no (403 ``account_disabled``). Not called for
    #: identities the app itself set (they are already its decision) nor for ``default_tenant``.
    authorize: str | None = None
    #: The status of a request whose resolver raised: 401 (the caller is not identified) or 503 (the
    #: app's authentication backend is down and clients should retry).
    resolver_error_status: Literal[401, 503] = 401
    #: Cross-site request checks (JSON content type, same-origin ``Origin``/``Referer``) for identities
    #: that come from cookies. ``None``: on for requests the resolver identified that carry a Cookie
    #: header; ``True``: on for every request carrying a Cookie header; ``False``: off.
    cookie_auth: bool | None = None
    #: Origins besides the request's own host that may send cookie-authenticated requests
    #: (``https://app.example.com``).
    trusted_origins: list[str] = Field(default_factory=list)
    #: Refuse requests without a tenant (401). When false, they get ``default_tenant``.
    required: bool = True
    #: The tenant of requests that carry none, when ``required`` is false.
    default_tenant: str = "default"
    #: Tenant ids become store keys: they must match this pattern and length.
    id_pattern: str = DEFAULT_TENANT_PATTERN
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=1, le=256)
    #: Which routes need a tenant: the gateway's routes (``classify``), or every HTTP request.
    routes: Literal["gateway", "all"] = "gateway"

    @field_validator("header")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @field_validator("key_store")
    @classmethod
    def _known_key_store(cls, value: str | None) -> str | None:
        return KEY_STORES.check(value) if value is not None else None

    @field_validator("api_keys")
    @classmethod
    def _unique_ids(cls, value: list[APIKeyEntry]) -> list[APIKeyEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.id in seen:
                raise ValueError(f"the key id {entry.id} is listed twice in api_keys")
            seen.add(entry.id)
        return value

    @field_validator("trusted_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        from .csrf import normalise_origin

        out = []
        for origin in value:
            normal = normalise_origin(origin)
            if normal is None:
                raise ValueError(f"trusted origin {origin!r} must look like 'https://host[:port]'")
            out.append(normal)
        return out
