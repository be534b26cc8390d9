"""Tenants: who is calling, from the app's own authentication, a verified JWT, or a header.

```python
from asgi_aigw.tenant import JWTConfig, TenantConfig, TenantMiddleware

app = TenantMiddleware(app, config=TenantConfig(jwt=JWTConfig(jwks_url="https://idp.example/jwks")))
```
"""

from .config import JWTConfig, TenantConfig
from .middleware import TenantMiddleware, TenantResolver
from .resolvers import django_session_resolver, scope_user_resolver

__all__ = [
    "JWTConfig",
    "TenantConfig",
    "TenantMiddleware",
    "TenantResolver",
    "django_session_resolver",
    "scope_user_resolver",
]
