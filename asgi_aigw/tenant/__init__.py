"""Tenants: who is calling, from a header, a verified JWT, or the application's own authentication."""

from .config import JWTConfig, TenantConfig
from .csrf import CrossSiteCheck
from .ids import InvalidTenantId, TenantIdValidator, validate_tenant_id
from .jwt import JWKSCache, JWTVerifier, KeysUnavailable, TokenRejected
from .middleware import ResolverFailed, TenantMiddleware, TenantResolver
from .resolvers import django_session_resolver, scope_user_resolver

__all__ = [
    "CrossSiteCheck",
    "InvalidTenantId",
    "JWKSCache",
    "JWTConfig",
    "JWTVerifier",
    "KeysUnavailable",
    "ResolverFailed",
    "TenantConfig",
    "TenantIdValidator",
    "TenantMiddleware",
    "TenantResolver",
    "TokenRejected",
    "django_session_resolver",
    "scope_user_resolver",
    "validate_tenant_id",
]
