"""Tenants: who is calling, from a header, a verified JWT, or the application's own authentication."""

from .config import JWTConfig, TenantConfig
from .ids import InvalidTenantId, TenantIdValidator, validate_tenant_id
from .jwt import JWKSCache, JWTVerifier, KeysUnavailable, TokenRejected
from .middleware import TenantMiddleware, TenantResolver

__all__ = [
    "InvalidTenantId",
    "JWKSCache",
    "JWTConfig",
    "JWTVerifier",
    "KeysUnavailable",
    "TenantConfig",
    "TenantIdValidator",
    "TenantMiddleware",
    "TenantResolver",
    "TokenRejected",
    "validate_tenant_id",
]
