"""Identity from Starlette's (or FastAPI's) own authentication: who pays is the user's organisation."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from asgi_aigw.kernel.types import ASGIApp
from asgi_aigw.tenant import TenantConfig, TenantMiddleware, scope_user_resolver


@dataclass
class User(BaseUser):
    id: str
    org_id: str

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.id


#: Your own user store; here, session cookie value -> user.
SESSIONS = {
    "s-alice": User("alice", "acme"),
    "s-bob": User("bob", "acme"),
    "s-carol": User("carol", "initech"),
}


class SessionAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        user = SESSIONS.get(conn.cookies.get("session", ""))
        if user is None:
            return None  # anonymous: scope["user"] is an UnauthenticatedUser, and the gateway says 401
        return AuthCredentials(["authenticated"]), user


def with_identity(gateway: ASGIApp) -> ASGIApp:
    # AuthenticationMiddleware runs first and sets scope["user"]; TenantMiddleware reads it: the tenant
    # is the user's org_id, the user their id. The identity comes from a cookie, so cross-site requests
    # (a form or text/plain POST from another site) are refused with 403.
    resolver = scope_user_resolver(organisation="org_id")
    tenants = TenantMiddleware(gateway, config=TenantConfig(), resolver=resolver)
    return AuthenticationMiddleware(tenants, backend=SessionAuth())
