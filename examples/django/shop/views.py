"""The site's views: a login, and two views that ask a model through the gateway in process, as the
logged-in user (no socket, no second authentication: ``asgi_aigw.client.openai_client``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from django.conf import settings
from django.contrib.auth import aauthenticate, alogin
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie
from openai import AsyncOpenAI

from asgi_aigw.client import openai_client
from asgi_aigw.integrations import Identity

from .gateway import endpoint


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "Log in at /login/, then ask: /ask/?q=Hello (JSON) or /ask/stream/?q=Hello (streamed). "
        "The gateway's OpenAI API is at /ai/v1, for the logged-in user.\n",
        content_type="text/plain",
    )


@ensure_csrf_cookie
async def login_view(request: HttpRequest) -> JsonResponse:
    """GET sets the CSRF cookie; POST (a form with username and password, and the CSRF token) logs in."""
    if request.method != "POST":
        return JsonResponse({"login": "POST username and password"})
    user = await aauthenticate(
        request, username=request.POST.get("username", ""), password=request.POST.get("password", "")
    )
    if user is None:
        return JsonResponse({"error": "wrong username or password"}, status=401)
    await alogin(request, user)
    return JsonResponse({"user": user.get_username()})


async def gateway_client(request: HttpRequest) -> AsyncOpenAI | None:
    """The official SDK calling the gateway in process as the logged-in user; None when anonymous."""
    user = await request.auser()
    if not user.is_authenticated:
        return None
    name = user.get_username()
    return openai_client(endpoint.stack, Identity(tenant=name, user=name))


def _login_first() -> JsonResponse:
    return JsonResponse({"error": "log in first: /login/"}, status=401)


async def ask(request: HttpRequest) -> JsonResponse:
    client = await gateway_client(request)
    if client is None:
        return _login_first()
    question = request.GET.get("q", "Hello!")
    completion = await client.chat.completions.create(
        model=settings.GATEWAY_MODEL, messages=[{"role": "user", "content": question}]
    )
    return JsonResponse({"question": question, "answer": completion.choices[0].message.content})


async def ask_stream(request: HttpRequest) -> HttpResponse:
    client = await gateway_client(request)
    if client is None:
        return _login_first()
    question = request.GET.get("q", "Hello!")
    stream = await client.chat.completions.create(
        model=settings.GATEWAY_MODEL, messages=[{"role": "user", "content": question}], stream=True
    )

    async def pieces() -> AsyncIterator[str]:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return StreamingHttpResponse(pieces(), content_type="text/plain; charset=utf-8")
