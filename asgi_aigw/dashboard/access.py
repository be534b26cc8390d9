"""Who may see the dashboard: the application's ``authorize(scope)``, sync or async."""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from ..kernel.errors import ConfigError
from ..kernel.types import Scope
from .config import DashboardConfig

logger = logging.getLogger("asgi_aigw.dashboard")

#: ``authorize(scope)``: whether this request may see the dashboard.
Authorize = Callable[[Scope], bool | Awaitable[bool]]


def localhost_only(scope: Scope) -> bool:
    """Requests from the loopback interface only (the demo's policy). Behind a reverse proxy every
    request comes from the proxy's address: use the application's own check there."""
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


def load_authorize(path: str) -> Authorize:
    """The callable named ``"package.module:function"``; a bad path is a :class:`ConfigError`."""
    from ..tenant.middleware import import_callable

    try:
        return cast(Authorize, import_callable(path, "dashboard.authorize"))
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"dashboard.authorize {path!r} cannot be loaded: {exc}") from None


def access_rule(config: DashboardConfig, authorize: Authorize | None = None) -> Authorize | None:
    """The check every request passes: ``authorize``, else the one ``config.authorize`` names, else none
    when ``config.allow_anonymous``; with neither, a :class:`ConfigError` (the page shows every
    tenant's spend: it is never served to anyone by accident)."""
    if authorize is None and config.authorize:
        authorize = load_authorize(config.authorize)
    if authorize is None and not config.allow_anonymous:
        raise ConfigError(
            "The dashboard shows every tenant's spend: give it an authorize check "
            "(dashboard.authorize: 'package.module:function', taking the ASGI scope and returning "
            "True or False), or set dashboard.allow_anonymous: true to serve it to anyone who can "
            "reach it."
        )
    return authorize


async def allowed(authorize: Authorize | None, scope: Scope) -> bool:
    """Whether ``authorize`` lets ``scope`` in (no callable: anonymous access was allowed). A check
    that raises refuses, and is logged: the page must not open because the app's own check broke."""
    if authorize is None:
        return True
    try:
        verdict = authorize(scope)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception:
        logger.exception("the dashboard's authorize check failed; the request is refused")
        return False
    return verdict is True
