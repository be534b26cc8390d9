"""A tiny CORS middleware (django-cors-headers does the same, with more options): pages of
``settings.CORS_ALLOWED_ORIGINS`` may call this site with their cookies, the gateway's /ai/ included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase


class CorsMiddleware:
    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        origin = request.headers.get("origin")
        allowed = origin is not None and origin in settings.CORS_ALLOWED_ORIGINS
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            # a preflight: answered here, before any view (the gateway's accepts only GET and POST)
            response: HttpResponseBase = HttpResponse(status=200 if allowed else 403)
            if allowed:
                response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                response["Access-Control-Allow-Headers"] = "authorization, content-type, x-csrftoken"
                response["Access-Control-Max-Age"] = "600"
        else:
            response = await self.get_response(request)
        if allowed:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
        return response
