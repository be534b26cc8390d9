"""Django: the gateway as an async view of the project's URLconf, after the project's own middleware.

```python
# urls.py
urlpatterns = [path("ai/", include(gateway_urls(endpoint, identity=user_identity)))]
```

Sessions, authentication, login-required and CORS middleware run first, as for any view; the identity
comes from ``request.user`` through the callable the project gives (sync or async; sync ones run in a
thread, so they may query the database). ``None`` is answered 401, and a user whose ``is_active`` is
False is refused (403) whatever the callable says.

CSRF: the view is exempt from ``CsrfViewMiddleware`` and checks CSRF itself, with that middleware's own
logic, whenever the request carries the session cookie (the browser adds it to cross-site requests, so
a session-authenticated POST must prove it comes from the site: ``X-CSRFToken``, or an Origin the site
trusts). A request with ``Authorization`` or ``X-API-Key`` and no session cookie is exempt: a browser
never adds those headers to a cross-site request without a CORS preflight the project controls. Every
other unsafe request that the identity callable accepts is checked too, so nothing is exempt by
accident; an anonymous one gets its 401 first (it can spend nothing).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import URLPattern, re_path
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..kernel.context import Identity
from ..kernel.errors import Forbidden, GatewayError
from .core import GatewayEndpoint, GatewayRequest, IdentityResult, as_identity, error_response, not_logged_in

__all__ = ["GatewayView", "csrf_failure", "gateway_urls", "user_identity"]

DjangoIdentity = Callable[[HttpRequest], "IdentityResult | Awaitable[IdentityResult]"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def user_identity(request: HttpRequest) -> Identity | None:
    """The logged-in user is the tenant and the user (one budget per user); ``None`` when anonymous."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    name = str(user.get_username())
    return Identity(tenant=name, user=name)


def _error(exc: GatewayError) -> HttpResponse:
    status, headers, body = error_response(exc)
    response = HttpResponse(body, status=status, content_type="application/json")
    for name, value in headers:
        if name != "content-type":
            response[name] = value
    return response


class _CsrfCheck(CsrfViewMiddleware):  # type: ignore[misc]
    """Django's CSRF middleware, returning the reason of a refusal instead of its HTML page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _protected(request: HttpRequest) -> None:  # the view the CSRF check believes it guards
    return None


def csrf_failure(request: HttpRequest) -> str | None:
    """Why Django's CSRF check refuses ``request``, or ``None`` when it passes or does not apply."""
    if request.method in _SAFE_METHODS:
        return None
    has_session = settings.SESSION_COOKIE_NAME in request.COOKIES
    has_token = "authorization" in request.headers or "x-api-key" in request.headers
    if has_token and not has_session:
        return None
    check = _CsrfCheck(lambda r: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, _protected, (), {})
    return reason if isinstance(reason, str) else None


class GatewayView(View):  # type: ignore[misc]
    """The async view serving the gateway; ``path`` (from the URL pattern) is the part below the mount."""

    endpoint: GatewayEndpoint | None = None
    #: Who is calling (see the module's docstring); ``None``: :func:`user_identity`.
    identity: DjangoIdentity | None = None
    http_method_names = ["get", "post"]
    # every handler is async (Django checks this to run the view without a thread)
    view_is_async = True

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # CSRF is checked in dispatch, with the exemption for bearer-token requests described above
        return csrf_exempt(super().as_view(**initkwargs))

    async def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        endpoint = self.endpoint
        if endpoint is None:
            raise TypeError("GatewayView needs an endpoint: GatewayView.as_view(endpoint=...)")
        if request.method is None or request.method.lower() not in self.http_method_names:
            return self.http_method_not_allowed(request, *args, **kwargs)
        try:
            # read once, before the CSRF check may parse a form from it
            body = request.body
        except RequestDataTooBig:
            return _error(endpoint.too_large())
        if len(body) > endpoint.max_body_bytes:
            return _error(endpoint.too_large())
        auser = getattr(request, "auser", None)
        if auser is not None:
            user = await auser()
            # resolved once, so a sync identity callable reading request.user needs no query
            request.user = user
            if user.is_authenticated and getattr(user, "is_active", True) is False:
                return _error(Forbidden("This account is disabled.", code="account_disabled"))
        who = await self._identity(request)
        identity = as_identity(who)
        if identity is None:
            return _error(not_logged_in())
        reason = await sync_to_async(csrf_failure)(request)
        if reason is not None:
            return _error(
                Forbidden(
                    f"CSRF check failed ({reason}). A page of this site sends the X-CSRFToken header; "
                    "other clients authenticate with a bearer token and no session cookie.",
                    code="csrf_failed",
                )
            )
        response = await endpoint.handle(
            self._gateway_request(request, body, kwargs.get("path", "")), identity
        )
        if not response.streaming:
            answer = HttpResponse(await response.read(), status=response.status)
        else:
            answer = StreamingHttpResponse(_chunks(response.chunks()), status=response.status)
        for name, value in response.forward_headers():
            answer[name] = value
        return answer

    async def _identity(self, request: HttpRequest) -> IdentityResult:
        identity = self.identity or user_identity
        if inspect.iscoroutinefunction(identity):
            return await identity(request)  # type: ignore[no-any-return]
        who = await sync_to_async(identity)(request)
        if inspect.isawaitable(who):
            who = await who
        return who

    @staticmethod
    def _gateway_request(request: HttpRequest, body: bytes, sub: str) -> GatewayRequest:
        path = request.path
        tail = "/" + sub
        root_path = path[: -len(tail)] if path.endswith(tail) else ""
        meta = request.META
        client = (meta.get("REMOTE_ADDR") or "", int(meta.get("REMOTE_PORT") or 0))
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ]
        return GatewayRequest(
            method=request.method or "GET",
            path=path,
            root_path=root_path,
            query_string=meta.get("QUERY_STRING", "").encode("latin-1"),
            headers=headers,
            body=body,
            scheme=request.scheme or "http",
            client=client,
            server=(request.get_host().split(":")[0], int(request.get_port())),
        )


async def _chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    # a named generator: when Django cancels a response whose client left, closing it tells the stack
    async for chunk in chunks:
        yield chunk


def gateway_urls(endpoint: GatewayEndpoint, *, identity: DjangoIdentity = user_identity) -> list[URLPattern]:
    """URL patterns serving ``endpoint`` below the ``path("ai/", include(...))`` they are put in."""
    view = GatewayView.as_view(endpoint=endpoint, identity=identity)
    return [re_path(r"^(?P<path>.*)$", view)]
