"""The Django view (``GatewayView``) called in process with Django's own request factory: who is refused
and why (401, 403 for a disabled account or a failed CSRF check, 413), the bearer-token exemption and
the identity reaching the stack. The end-to-end run with sessions and SQLite is in test_examples.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import django
import orjson
import pytest
from django.conf import settings

if not settings.configured:
    # no database: the tests give the request its user, as AuthenticationMiddleware would
    settings.configure(
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        MIDDLEWARE=[],
        ROOT_URLCONF=__name__,
        DATA_UPLOAD_MAX_MEMORY_SIZE=1024 * 1024,
    )
    django.setup()

from django.http import HttpRequest, StreamingHttpResponse
from django.test import AsyncRequestFactory

from asgi_aigw.client import StreamingASGITransport
from asgi_aigw.integrations import GatewayEndpoint, Identity
from asgi_aigw.integrations.django import GatewayView
from asgi_aigw.router import ProviderRouter
from asgi_aigw.testing import FakeProvider

from .support import FAKE_URL, ContextSpy, fake_config

urlpatterns: list[Any] = []
CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


@dataclass
class FakeUser:
    username: str
    is_active: bool = True
    is_authenticated: bool = True

    def get_username(self) -> str:
        return self.username


@pytest.fixture
def spy(fake: FakeProvider) -> ContextSpy:
    return ContextSpy(
        ProviderRouter(fake_config().router, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    )


def view(spy: ContextSpy, **options: Any) -> Any:
    return GatewayView.as_view(endpoint=GatewayEndpoint(spy, max_body_bytes=4096), **options)


def post(user: FakeUser | None, body: bytes = CHAT, **headers: Any) -> HttpRequest:
    request = AsyncRequestFactory().post(
        "/ai/v1/chat/completions",
        data=body,
        content_type=headers.pop("content_type", "application/json"),
        **headers,
    )
    anonymous = FakeUser("", is_authenticated=False)

    async def auser() -> FakeUser:
        return user or anonymous

    request.auser = auser
    request.user = user or anonymous
    return request


async def call(spy: ContextSpy, request: HttpRequest, **options: Any) -> tuple[int, Any]:
    response = await view(spy, **options)(request, path="v1/chat/completions")
    if isinstance(response, StreamingHttpResponse):
        body = b"".join([chunk async for chunk in response])
    else:
        body = response.content
    return response.status_code, orjson.loads(body)


async def test_the_users_identity_reaches_the_stack(spy: ContextSpy) -> None:
    status, body = await call(spy, post(FakeUser("alice"), authorization="Bearer x"))
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "Echo: hi"
    ctx = spy.contexts[-1]
    assert (ctx.tenant_id, ctx.user_id, ctx.identity_source) == ("alice", "alice", "app")
    assert spy.contexts[-1].route == "chat"


async def test_a_custom_sync_identity_runs_in_a_thread(spy: ContextSpy) -> None:
    import threading

    threads: list[str] = []

    def by_org(request: HttpRequest) -> Identity:
        threads.append(threading.current_thread().name)
        return Identity(tenant="acme", user=request.user.get_username())

    status, _ = await call(spy, post(FakeUser("bob"), authorization="Bearer x"), identity=by_org)
    assert status == 200
    assert (spy.contexts[-1].tenant_id, spy.contexts[-1].user_id) == ("acme", "bob")
    assert threads
    assert threads[0] != threading.main_thread().name


async def test_anonymous_gets_401_and_a_disabled_account_403(spy: ContextSpy) -> None:
    status, body = await call(spy, post(None))
    assert status == 401
    assert body["error"]["code"] == "not_authenticated"
    status, body = await call(spy, post(FakeUser("carol", is_active=False), authorization="Bearer x"))
    assert status == 403
    assert body["error"]["code"] == "account_disabled"
    assert spy.contexts == []


async def test_a_session_request_needs_the_csrf_token(spy: ContextSpy) -> None:
    # the session cookie makes it a browser's request: Django's CSRF check applies, bearer or not
    for headers in ({}, {"authorization": "Bearer x"}):
        request = post(FakeUser("alice"), content_type="text/plain", origin="https://evil.example", **headers)
        request.COOKIES[settings.SESSION_COOKIE_NAME] = "a-session"
        status, body = await call(spy, request)
        assert status == 403
        assert body["error"]["code"] == "csrf_failed"
    # no session cookie and no bearer token: checked too (only token requests are exempt)
    status, body = await call(spy, post(FakeUser("alice")))
    assert status == 403
    assert spy.contexts == []


async def test_a_session_request_with_the_token_passes(spy: ContextSpy) -> None:
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    request = post(FakeUser("alice"), x_csrftoken=_mask_cipher_secret(secret))
    request.COOKIES[settings.SESSION_COOKIE_NAME] = "a-session"
    request.COOKIES[settings.CSRF_COOKIE_NAME] = secret
    status, body = await call(spy, request)
    assert status == 200, body


async def test_too_large_bodies_get_413(spy: ContextSpy) -> None:
    status, body = await call(spy, post(FakeUser("alice"), body=b"x" * 5000, authorization="Bearer x"))
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    # beyond Django's own DATA_UPLOAD_MAX_MEMORY_SIZE too
    status, body = await call(
        spy, post(FakeUser("alice"), body=b"x" * (2 * 1024 * 1024), authorization="Bearer x")
    )
    assert status == 413
