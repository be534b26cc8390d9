"""TenantMiddleware: who is calling, from the app's own auth, a verified JWT, or a header."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx

from ..kernel.context import current_tenant, ensure_context
from ..kernel.errors import Forbidden, GatewayError, InvalidRequest, Unauthorized, send_error
from ..kernel.lifespan import lifespan_passthrough
from ..kernel.routes import classify
from ..kernel.types import ASGIApp, Receive, Scope, Send
from .config import TenantConfig
from .ids import InvalidTenantId, TenantIdValidator
from .jwt import JWTVerifier, TokenRejected, claim_at

#: ``resolver(scope)`` returns the tenant id the app's own authentication established, or None.
TenantResolver = Callable[[Scope], str | Awaitable[str | None] | None]


def import_resolver(path: str) -> TenantResolver:
    """The callable named ``"package.module:attribute"``."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"resolver must look like 'package.module:function', not {path!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"resolver {path!r} is not callable")
    return cast(TenantResolver, target)


class TenantMiddleware:
    """Puts the caller's tenant id in the request context (``ctx.tenant_id``) and in the
    :data:`~asgi_aigw.kernel.context.current_tenant` contextvar, or refuses the request.

    Precedence: ``resolver`` (the app's own auth) > verified JWT > header > ``default``. Verified sources
    must agree with each other and with the header when one is sent (else 403).

    Every setting is in ``config``. Injected objects: ``resolver``, a callable of the app's own (the
    configuration names one as ``"module:callable"`` instead); ``http_client``, for JWKS fetches.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: TenantConfig | None = None,
        resolver: TenantResolver | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.app = app
        self.config = config or TenantConfig()
        self.validate = TenantIdValidator(self.config.id_pattern, self.config.max_length)
        self.resolver = resolver or (import_resolver(self.config.resolver) if self.config.resolver else None)
        jwt_config = self.config.jwt
        self.verifier = JWTVerifier(jwt_config, http_client=http_client) if jwt_config else None
        self._token_header = jwt_config.header.encode("latin-1") if jwt_config else b""
        self._scheme = jwt_config.scheme.lower() + " " if jwt_config and jwt_config.scheme else None
        self._header = self.config.header.encode("latin-1") if self.config.header else None
        self._header_name = self.config.header or ""
        self._all_routes = self.config.routes == "all"
        if not self.config.required:
            self.validate(self.config.default_tenant)  # fail at start-up, not on the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan_passthrough(self.app, scope, receive, send, on_shutdown=self.aclose)
            else:
                await self.app(scope, receive, send)
            return
        if not self._all_routes and classify(scope) is None:
            await self.app(scope, receive, send)
            return
        scope, ctx = ensure_context(scope)
        try:
            tenant = await self.resolve(scope)
        except GatewayError as exc:
            ctx.status = exc.status
            ctx.error_code = exc.code
            await send_error(send, exc)
            return
        ctx.tenant_id = tenant
        reset = current_tenant.set(tenant)
        try:
            await self.app(scope, receive, send)
        finally:
            current_tenant.reset(reset)

    async def resolve(self, scope: Scope) -> str:
        """The request's tenant id, or a :class:`GatewayError` (401, 403, or 503 without keys)."""
        verified: str | None = None
        if self.resolver is not None:
            value = self.resolver(scope)
            if inspect.isawaitable(value):
                value = await value
            if value is not None:
                verified = self._checked(value, "the application's resolver")

        if self.verifier is not None:
            token = self._token(scope)
            if token is not None:
                try:
                    claims = await self.verifier.verify(token)
                except TokenRejected as exc:
                    raise Unauthorized(exc.message, code="invalid_token") from None
                claim = self.verifier.config.tenant_claim
                value = claim_at(claims, claim)
                if value is None:
                    raise Unauthorized(
                        f"The token has no {claim!r} claim to take the tenant from.", code="invalid_token"
                    )
                from_token = self._checked(value, f"the token's {claim!r} claim")
                if verified is not None and from_token != verified:
                    raise Forbidden(
                        "The token names a different tenant than the application's own authentication.",
                        code="tenant_mismatch",
                    )
                verified = from_token
            elif verified is None and self.verifier.config.required:
                jwt_config = self.verifier.config
                shape = f"{jwt_config.scheme} <JWT>" if jwt_config.scheme else "<JWT>"
                raise Unauthorized(
                    f"A bearer token is required: send the {jwt_config.header} header as {shape!r}.",
                    code="missing_token",
                )

        if self._header is not None:
            raw = _single_header(scope, self._header)
            if raw is not None:
                claimed = self._checked(raw.decode("latin-1"), f"the {self._header_name} header")
                if verified is not None and claimed != verified:
                    raise Forbidden(
                        f"The {self._header_name} header names a different tenant than your verified "
                        "credentials: drop the header or send your own tenant id.",
                        code="tenant_mismatch",
                    )
                return verified or claimed

        if verified is not None:
            return verified
        if self.config.required:
            sources = []
            if self._header is not None:
                sources.append(f"the {self._header_name} header")
            if self.verifier is not None:
                sources.append("a bearer token")
            hint = " or ".join(sources) or "the application's authentication"
            raise Unauthorized(f"No tenant: identify yourself with {hint}.", code="missing_tenant")
        return self.config.default_tenant

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
        return value or None

    async def aclose(self) -> None:
        if self.verifier is not None:
            await self.verifier.aclose()


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
