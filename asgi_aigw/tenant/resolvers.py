"""Ready-made resolvers for :class:`~asgi_aigw.tenant.TenantMiddleware`: the identity the host app's own
authentication established, as an :class:`~asgi_aigw.kernel.context.Identity` (tenant who pays, user who
asked), or None for an anonymous caller.

- :func:`scope_user_resolver`: Starlette's and FastAPI's ``AuthenticationMiddleware`` (``scope["user"]``),
  also Channels' ``AuthMiddlewareStack``.
- :func:`django_session_resolver`: a Django project that mounts the gateway in ``asgi.py`` in front of
  Django, so Django's own middleware never runs for it: the session cookie is read and the user loaded
  through Django's session and auth APIs, with the cross-site checks Django's CSRF middleware would make.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ..kernel.context import Identity
from ..kernel.errors import Forbidden
from ..kernel.types import Scope
from .csrf import CrossSiteCheck

#: ``tenant_of(user)``: the tenant a logged-in user's requests are charged to.
TenantOf = Callable[[Any], object]


def user_id_of(user: Any) -> object:
    """The stable id of a framework user: ``pk`` (Django), ``id``, ``identity`` (Starlette), else the
    ``username``. Ids, not display names: two users may share a name, and names change."""
    for attribute in ("pk", "id"):
        value = getattr(user, attribute, None)
        if value is not None:
            return value
    try:
        value = getattr(user, "identity", None)  # starlette's BaseUser raises NotImplementedError
    except NotImplementedError:
        value = None
    if value is not None:
        return value
    return getattr(user, "username", None)


def _attribute(target: Any, path: str) -> object:
    """The value at a dotted attribute ``path`` (``profile.organisation_id``), or None."""
    value = target
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _tenant_function(tenant_of: TenantOf | None, organisation: str | None) -> TenantOf:
    if tenant_of is not None and organisation is not None:
        raise ValueError("give tenant_of or organisation, not both")
    if tenant_of is not None:
        return tenant_of
    if organisation is not None:
        path = organisation

        def by_organisation(user: Any) -> object:
            value = _attribute(user, path)
            if value is None:
                # a user outside any organisation must not become a tenant of their own by accident
                raise LookupError(f"the user has no {path!r} to take the tenant from")
            return value

        return by_organisation
    return user_id_of


def _identity(user: Any, tenant_of: TenantOf) -> Identity:
    user_id = user_id_of(user)
    tenant = tenant_of(user)
    # ids may be integers (primary keys): TenantMiddleware validates them as strings
    return Identity(str(tenant), None if user_id is None else str(user_id))


def scope_user_resolver(
    *, tenant_of: TenantOf | None = None, organisation: str | None = None
) -> Callable[[Scope], Identity | None]:
    """A resolver reading ``scope["user"]``, as Starlette's ``AuthenticationMiddleware`` sets it.

    An anonymous user, or no ``scope["user"]`` at all (the middleware is not installed, or did not run
    for this path), is None: "no one", never an error. ``tenant_of(user)`` picks the tenant, or
    ``organisation`` names a (dotted) attribute holding it; by default each user is their own tenant.
    """
    tenant_function = _tenant_function(tenant_of, organisation)

    def resolve(scope: Scope) -> Identity | None:
        user = scope.get("user")
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return _identity(user, tenant_function)

    return resolve


def _cookie(scope: Scope, name: str) -> str | None:
    jar = SimpleCookie()
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue  # a malformed cookie header is no session, not an error
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


def django_session_resolver(
    *,
    tenant_of: TenantOf | None = None,
    organisation: str | None = None,
    trusted_origins: Iterable[str] = (),
) -> Callable[[Scope], Any]:
    """A resolver for a Django project mounting the gateway in ``asgi.py``, in front of Django.

    It reads the session cookie (``SESSION_COOKIE_NAME``), loads the session with the project's
    ``SESSION_ENGINE`` and the user with ``django.contrib.auth.get_user`` (which checks the session's
    auth hash, so a changed password logs the session out), in a thread through ``sync_to_async``: the
    ORM never runs on the event loop. A user with ``is_active`` False is refused (403). A request that
    carries the session cookie must pass the cross-site checks (JSON body; ``Origin`` or ``Referer`` of
    this host, of ``CSRF_TRUSTED_ORIGINS`` or of ``trusted_origins``) or it is refused (403) before
    the session is loaded. Call it after ``django.setup()`` (``get_asgi_application()`` does that).
    """
    from asgiref.sync import sync_to_async
    from django.conf import settings

    tenant_function = _tenant_function(tenant_of, organisation)
    # wildcard entries (https://*.example.com) are Django's own syntax; exact origins are compared here
    django_trusted = [o for o in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()) if "*" not in o]
    cross_site = CrossSiteCheck([*django_trusted, *trusted_origins])
    cookie_name: str = settings.SESSION_COOKIE_NAME

    def load(session_key: str) -> Identity | None:
        from importlib import import_module

        from django.contrib.auth import get_user
        from django.http import HttpRequest

        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(request)
        if not user.is_authenticated:
            return None
        if not getattr(user, "is_active", True):
            raise Forbidden("This account is disabled.", code="user_inactive")
        return _identity(user, tenant_function)

    aload = sync_to_async(load, thread_sensitive=True)

    async def resolve(scope: Scope) -> Identity | None:
        session_key = _cookie(scope, cookie_name)
        if session_key is None:
            return None
        cross_site(scope)
        return await aload(session_key)

    resolve.checks_cross_site = True  # type: ignore[attr-defined]
    return resolve
