"""TenantMiddleware: who is calling, from the app's own auth, a gateway API key, a verified JWT, or a
header."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx

from ..kernel.context import Identity, RequestContext, current_tenant, ensure_context, set_identity
from ..kernel.dialects import dialect_for
from ..kernel.dotted import DottedPathError, resolve
from ..kernel.errors import ConfigError, Forbidden, GatewayError, InvalidRequest, Unauthorized, send_error
from ..kernel.lifespan import lifespan_passthrough
from ..kernel.routes import classify
from ..kernel.types import ASGIApp, Receive, Scope, Send
from ..stores.registry import KEY_STORES
from .config import TenantConfig
from .csrf import CrossSiteCheck, has_cookie
from .ids import InvalidTenantId, TenantIdValidator
from .jwt import JWTVerifier, TokenRejected, claim_at
from .key_auth import KeyAuthenticator
from .key_store import ChainedKeyStore, ConfigKeyStore, KeyStore
from .keys import KeyRecord, looks_like_key

logger = logging.getLogger("asgi_aigw.tenant")

#: Tenants named by a trusted header whose identity object is kept for reuse.
_MAX_CLAIMS = 4096

#: ``ctx.extra`` key: the API key that identified the request, ``{"id": ..., "limits": {...}}`` (its
#: own budget limits by window name, read by BudgetMiddleware).
API_KEY_CONTEXT = "tenant.api_key"

#: What a resolver may return: an :class:`Identity` (tenant and user), a tenant id, or None ("no one").
ResolverResult = Identity | str | None
#: ``resolver(scope)`` returns who the app's own authentication established, sync or async.
TenantResolver = Callable[[Scope], ResolverResult | Awaitable[ResolverResult]]
#: ``authorize(identity, scope)``: whether the app still lets this identified caller in (an account the
#: app disabled after its token was issued: False), sync or async.
Authorizer = Callable[[Identity, Scope], bool | Awaitable[bool]]


def import_callable(path: str, what: str = "resolver") -> Any:
    """The callable named ``"package.module:attribute"``; a :class:`ConfigError` naming ``path`` when it
    cannot be imported (a missing module, or one that raises as it loads), found, or called."""
    try:
        target = resolve(path)
    except DottedPathError as exc:
        cause = exc.__cause__
        if exc.kind == "form":
            message = f"{what} must look like 'package.module:function', not {path!r}"
        elif exc.kind == "import":
            # the app's module failed as it loaded: say which, not a traceback
            message = f"{what} {path!r}: cannot import {exc.module!r}: {type(cause).__name__}: {cause}"
        else:
            message = f"{what} {path!r}: {exc.module!r} has no {exc.attribute!r}"
        raise ConfigError(message) from cause
    if not callable(target):
        raise ConfigError(f"{what} {path!r} is not callable")
    return target


def import_resolver(path: str) -> TenantResolver:
    """The resolver named ``"package.module:attribute"``."""
    return cast(TenantResolver, import_callable(path))


class AccountRefused(Forbidden):
    """403: the caller is identified, but the app's ``authorize`` check refuses them (a disabled user)."""

    code = "account_disabled"


class ResolverFailed(GatewayError):
    """The app's resolver raised: the caller cannot be identified (401, or 503 when configured)."""

    status = 401
    type = "authentication_error"
    code = "resolver_failed"


class TenantMiddleware:
    """Puts the caller's identity (tenant who pays, user who asked) in the request context
    (:func:`~asgi_aigw.kernel.context.set_identity`) and the tenant in the
    :data:`~asgi_aigw.kernel.context.current_tenant` contextvar, or refuses the request.

    Precedence: an identity the host app set before the stack (source ``"app"``, trusted as is) >
    ``resolver`` > gateway API key > verified JWT > header (only per ``header_mode``) >
    ``default_tenant``. Verified sources must agree with each other (else 403).

    Every setting is in ``config``. Injected objects: ``resolver``, a callable of the app's own (the
    configuration names one as ``"module:callable"`` instead); ``http_client``, for JWKS fetches;
    ``key_store``, a :class:`~asgi_aigw.tenant.key_store.KeyStore` you built (else the one
    ``config.key_store`` names), consulted after ``config.api_keys``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: TenantConfig | None = None,
        resolver: TenantResolver | None = None,
        authorize: Authorizer | None = None,
        http_client: httpx.AsyncClient | None = None,
        key_store: KeyStore | None = None,
    ) -> None:
        self.app = app
        self.config = config or TenantConfig()
        self.validate = TenantIdValidator(self.config.id_pattern, self.config.max_length)
        self.resolver = resolver or (import_resolver(self.config.resolver) if self.config.resolver else None)
        self.authorize: Authorizer | None = authorize or (
            import_callable(self.config.authorize, "authorize") if self.config.authorize else None
        )
        jwt_config = self.config.jwt
        self.verifier = JWTVerifier(jwt_config, http_client=http_client) if jwt_config else None
        self._token_header = jwt_config.header.encode("latin-1") if jwt_config else b""
        self._scheme = jwt_config.scheme.lower() + " " if jwt_config and jwt_config.scheme else None
        self.keys = self._key_authenticator(key_store)
        # a bare header is a claim anyone can make: it identifies requests only where no verified
        # source is configured, unless the deployment explicitly says otherwise
        mode = self.config.header_mode
        if mode is None:
            verified = self.resolver is not None or self.verifier is not None or self.keys is not None
            mode = "off" if verified else "trusted"
        self.header_mode = mode if self.config.header else "off"
        self._header = self.config.header.encode("latin-1") if self.config.header else None
        self._header_name = self.config.header or ""
        self._all_routes = self.config.routes == "all"
        self._cross_site = CrossSiteCheck(self.config.trusted_origins)
        # a resolver that makes the cross-site checks itself, with its framework's trusted origins
        # (django_session_resolver reads CSRF_TRUSTED_ORIGINS), is not second-guessed
        self._resolver_checks = bool(getattr(self.resolver, "checks_cross_site", False))
        if not self.config.required:
            self.validate(self.config.default_tenant)  # fail at start-up, not on the first request
        self._claims: dict[str, Identity] = {}

    def _key_authenticator(self, given: KeyStore | None) -> KeyAuthenticator | None:
        stores: list[KeyStore] = []
        if self.config.api_keys:
            stores.append(ConfigKeyStore(self.config.api_keys))
        if given is not None:
            stores.append(given)
        elif self.config.key_store is not None:
            stores.append(
                KEY_STORES.open(
                    self.config.key_store,
                    prefix=self.config.key_store_prefix,
                    timeout=self.config.key_store_timeout,
                )
            )
        if not stores:
            return None
        return KeyAuthenticator(stores[0] if len(stores) == 1 else ChainedKeyStore(*stores), _single_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan_passthrough(
                    self.app, scope, receive, send, on_startup=self._start, on_shutdown=self.aclose
                )
            else:
                await self.app(scope, receive, send)
            return
        route = classify(scope)
        if not self._all_routes and route is None:
            await self.app(scope, receive, send)
            return
        scope, ctx = ensure_context(scope)
        try:
            identity, source = await self.identify(scope, ctx)
            if self.authorize is not None and source not in ("app", "default"):
                await self._authorized(identity, scope)
        except GatewayError as exc:
            ctx.status = exc.status
            ctx.error_code = exc.code
            # in the client's own error shape: Anthropic's SDK reads {"type": "error", ...} on /v1/messages
            await send_error(send, exc, dialect=dialect_for(route))
            return
        set_identity(ctx, identity, source)
        reset = current_tenant.set(identity.tenant)
        try:
            await self.app(scope, receive, send)
        finally:
            current_tenant.reset(reset)

    async def identify(self, scope: Scope, ctx: RequestContext | None = None) -> tuple[Identity, str]:
        """The request's identity and its source, or a :class:`GatewayError` (400, 401, 403, 503)."""
        verified: Identity | None = None
        source = "default"
        preset = ctx.tenant_id if ctx is not None and ctx.identity_source == "app" else None
        if ctx is not None and preset is not None:
            # the host app's own authentication ran before the stack (an in-app adapter): trusted,
            # never overridden by anything the client sent
            verified = self._identity(preset, ctx.user_id, "the application's authentication")
            source = "app"
        elif self.resolver is not None:
            resolved = await self._resolve(scope)
            if resolved is not None:
                verified = resolved
                source = "app"
                if self.config.cookie_auth is not False and not self._resolver_checks and has_cookie(scope):
                    self._cross_site(scope)
        if source != "app" and self.config.cookie_auth and has_cookie(scope):
            self._cross_site(scope)

        if self.keys is not None and preset is None:
            record = await self.keys.authenticate(scope)
            if record is not None:
                from_key = self._from_key(record, ctx)
                if verified is None:
                    verified, source = from_key, "api_key"
                elif from_key.tenant != verified.tenant:
                    raise Forbidden(
                        "The API key belongs to a different tenant than the application's own "
                        "authentication.",
                        code="tenant_mismatch",
                    )

        if self.verifier is not None and preset is None:
            from_token = await self._from_token(scope, verified)
            if from_token is not None:
                if verified is None:
                    verified, source = from_token, "jwt"
                elif verified.user is None and from_token.user is not None:
                    verified = Identity(verified.tenant, from_token.user)

        if self._header is not None and self.header_mode != "off":
            raw = _single_header(scope, self._header)
            if raw is not None:
                claimed = self._checked(raw.decode("latin-1"), f"the {self._header_name} header")
                if verified is not None:
                    if claimed != verified.tenant:
                        raise Forbidden(
                            f"The {self._header_name} header names a different tenant than your verified "
                            "credentials: drop the header or send your own tenant id.",
                            code="tenant_mismatch",
                        )
                elif self.header_mode == "claim":
                    raise Unauthorized(
                        f"The {self._header_name} header is only a claim here: identify yourself with "
                        f"{self._verified_hint()}.",
                        code="missing_tenant",
                    )
                else:
                    return self._header_identity(claimed), "header"

        if verified is not None:
            return verified, source
        if self.config.required:
            sources = []
            if self.header_mode == "trusted":
                sources.append(f"the {self._header_name} header")
            if self.keys is not None:
                sources.append("an API key (Authorization: Bearer aigw_... or x-api-key)")
            if self.verifier is not None:
                sources.append("a bearer token")
            hint = " or ".join(sources) or "the application's authentication"
            raise Unauthorized(f"No tenant: identify yourself with {hint}.", code="missing_tenant")
        return Identity(self.config.default_tenant), "default"

    def _header_identity(self, tenant: str) -> Identity:
        """The identity a trusted header names: one (frozen) object per tenant, not one per request."""
        identity = self._claims.get(tenant)
        if identity is None:
            identity = Identity(tenant)
            if len(self._claims) < _MAX_CLAIMS:
                self._claims[tenant] = identity
        return identity

    async def resolve(self, scope: Scope) -> str:
        """The request's tenant id (see :meth:`identify` for the user and the source)."""
        identity, _ = await self.identify(scope)
        return identity.tenant

    def _verified_hint(self) -> str:
        if self.keys is not None:
            return "an API key" + (" or a bearer token" if self.verifier is not None else "")
        if self.verifier is not None:
            return "a bearer token"
        return "the application's authentication (log in)"

    async def _authorized(self, identity: Identity, scope: Scope) -> None:
        """The app's word on an identified caller: a token stays valid after the app disabled its
        user, so a verified signature alone is not enough where the app keeps accounts."""
        try:
            allowed = self.authorize(identity, scope)  # type: ignore[misc]
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            logger.error("Tenant authorize check failed; answering 503", exc_info=True)
            raise ResolverFailed(
                "The application's authentication is unavailable right now; try again shortly.",
                status=503,
                type="server_error",
                code="authorize_unavailable",
            ) from None
        if not allowed:
            raise AccountRefused("This account may not use the gateway: the application has disabled it.")

    async def _resolve(self, scope: Scope) -> Identity | None:
        """Call the app's resolver; its failure is the caller's 401 (or 503), never a 500."""
        try:
            value = self.resolver(scope)  # type: ignore[misc]
            if inspect.isawaitable(value):
                value = await value
        except GatewayError:
            raise  # a resolver's own refusal (a 403 from its cross-site checks) is answered as is
        except Exception as exc:
            status = self.config.resolver_error_status
            # once, with the traceback: the app's bug or its auth backend being down is for its logs
            logger.error(
                "Tenant resolver failed (%s); answering %d", type(exc).__name__, status, exc_info=True
            )
            if status == 503:
                raise ResolverFailed(
                    "The application's authentication is unavailable right now; try again shortly.",
                    status=503,
                    type="server_error",
                    code="resolver_unavailable",
                ) from None
            raise ResolverFailed(
                "The application could not identify you (its authentication failed): log in again or "
                "send valid credentials."
            ) from None
        if value is None:
            return None
        if isinstance(value, Identity):
            return self._identity(value.tenant, value.user, "the application's resolver")
        return self._identity(value, None, "the application's resolver")

    async def _from_token(self, scope: Scope, verified: Identity | None) -> Identity | None:
        assert self.verifier is not None
        token = self._token(scope)
        if token is None:
            if verified is None and self.verifier.config.required:
                jwt_config = self.verifier.config
                shape = f"{jwt_config.scheme} <JWT>" if jwt_config.scheme else "<JWT>"
                raise Unauthorized(
                    f"A bearer token is required: send the {jwt_config.header} header as {shape!r}.",
                    code="missing_token",
                )
            return None
        try:
            claims = await self.verifier.verify(token)
        except TokenRejected as exc:
            raise Unauthorized(exc.message, code="invalid_token") from None
        jwt_config = self.verifier.config
        claim = jwt_config.tenant_claim
        value = claim_at(claims, claim)
        if value is None:
            raise Unauthorized(
                f"The token has no {claim!r} claim to take the tenant from.", code="invalid_token"
            )
        user: object = None
        if jwt_config.user_claim is not None:
            user = claim_at(claims, jwt_config.user_claim)
            if user is None:
                raise Unauthorized(
                    f"The token has no {jwt_config.user_claim!r} claim to take the user from.",
                    code="invalid_token",
                )
        from_token = self._identity(value, user, f"the token's {claim!r} claim")
        if verified is not None and from_token.tenant != verified.tenant:
            raise Forbidden(
                "The token names a different tenant than your other credentials (the application's own "
                "authentication or your API key).",
                code="tenant_mismatch",
            )
        return from_token

    def _from_key(self, record: KeyRecord, ctx: RequestContext | None) -> Identity:
        """The key's identity: its tenant, and its user (``key-<id>`` when it names none, so per-user
        budgets and log rows tell keys apart)."""
        identity = self._identity(record.tenant, record.user or f"key-{record.id}", f"API key {record.id}")
        if ctx is not None:
            ctx.extra[API_KEY_CONTEXT] = {"id": record.id, "limits": dict(record.limits)}
            ctx.key_id = record.id
        return identity

    def _identity(self, tenant: object, user: object, source: str) -> Identity:
        tenant_id = self._checked(tenant, source)
        if user is None:
            return Identity(tenant_id)
        try:
            return Identity(tenant_id, self.validate(user))
        except InvalidTenantId as exc:
            # user ids become store keys too (per-user budgets): the same rules apply
            message = str(exc).replace("tenant id", "user id")
            raise Unauthorized(
                f"The user id from {source} is not valid: {message}.", code="invalid_user"
            ) from None

    def _checked(self, value: object, source: str) -> str:
        try:
            return self.validate(value)
        except InvalidTenantId as exc:
            raise Unauthorized(
                f"The tenant id from {source} is not valid: {exc}.", code="invalid_tenant"
            ) from None

    def _token(self, scope: Scope) -> str | None:
        raw = _single_header(scope, self._token_header)
        if raw is None:
            return None
        value = raw.decode("latin-1").strip()
        if self._scheme is not None:
            if value[: len(self._scheme)].lower() != self._scheme:
                return None
            value = value[len(self._scheme) :].strip()
        if self.keys is not None and looks_like_key(value):
            return None  # a gateway API key, already checked: not a JWT
        return value or None

    async def _start(self) -> None:
        # the key set of a JWKS endpoint, fetched now in the background rather than by the first token
        if self.verifier is not None and self.verifier.jwks is not None:
            self.verifier.jwks.prefetch()

    async def aclose(self) -> None:
        if self.verifier is not None:
            await self.verifier.aclose()
        if self.keys is not None:
            await self.keys.aclose()


def _single_header(scope: Scope, name: bytes) -> bytes | None:
    """The value of header ``name``; 400 when it is sent more than once with different values.

    Servers pass repeated headers on as they came; which copy a layer (or a proxy in front) reads is
    arbitrary, so an identity sent twice, differently, is refused rather than guessed.
    """
    found: bytes | None = None
    for key, value in scope.get("headers", ()):
        if key == name:
            if found is None:
                found = value
            elif value != found:
                raise InvalidRequest(
                    f"The {name.decode('latin-1')} header is sent more than once, with different values: "
                    "send it once.",
                    code="duplicate_header",
                )
    return found
