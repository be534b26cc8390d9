"""Run by tests/test_tenant_identity.py in a subprocess (Django's settings are process-wide): the Django
session resolver in front of a recording app, against a real SQLite database; prints the outcomes."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import django
import httpx
import orjson
from django.conf import settings


def main(db_path: str) -> None:
    settings.configure(
        SECRET_KEY="test-only-django-key-not-a-secret",
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db_path}},
        AUTHENTICATION_BACKENDS=[
            "django.contrib.auth.backends.ModelBackend",
            "django.contrib.auth.backends.AllowAllUsersModelBackend",
        ],
        CSRF_TRUSTED_ORIGINS=["https://shop.example.com"],
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    acme = Group.objects.create(name="acme")
    sessions: dict[str, str] = {}
    for name, backend in [
        ("alice", "django.contrib.auth.backends.ModelBackend"),
        ("bob", "django.contrib.auth.backends.ModelBackend"),
        ("carol", "django.contrib.auth.backends.ModelBackend"),
        ("dave", "django.contrib.auth.backends.AllowAllUsersModelBackend"),
    ]:
        user = User.objects.create_user(name, password="pw-" + name)
        user.groups.add(acme)
        client = Client()
        client.force_login(user, backend=backend)
        sessions[name] = client.cookies[settings.SESSION_COOKIE_NAME].value
    # disabled after logging in: ModelBackend drops them from the session, AllowAllUsers keeps them
    User.objects.filter(username__in=["carol", "dave"]).update(is_active=False)
    # bob changed his password elsewhere: his old session no longer authenticates (session auth hash)
    bob = User.objects.get(username="bob")
    bob.set_password("a-new-one")
    bob.save()
    print(orjson.dumps(asyncio.run(probe(sessions))).decode())


async def probe(sessions: dict[str, str]) -> dict[str, Any]:
    from asgi_aigw.kernel.context import get_context
    from asgi_aigw.tenant import TenantConfig, TenantMiddleware, django_session_resolver

    seen: list[list[str | None]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        ctx = get_context(scope)
        assert ctx is not None
        seen.append([ctx.tenant_id, ctx.user_id, ctx.identity_source])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    # the tenant from the ORM: runs in Django's thread, never on the event loop
    resolver = django_session_resolver(tenant_of=lambda user: user.groups.get().name)
    app = TenantMiddleware(inner, config=TenantConfig(), resolver=resolver)
    body = {"model": "m", "messages": []}
    own = "http://testserver"
    cases: dict[str, tuple[str | None, dict[str, str], bool]] = {
        "alice": ("alice", {"origin": own}, True),
        "alice trusted origin": ("alice", {"origin": "https://shop.example.com"}, True),
        "alice referer": ("alice", {"referer": own + "/shop/"}, True),
        "alice text/plain cross-site": (
            "alice",
            {"origin": "https://evil.test", "content-type": "text/plain"},
            False,
        ),
        "alice cross-site json": ("alice", {"origin": "https://evil.test"}, True),
        "anonymous": (None, {"origin": own}, True),
        "unknown session": ("not-a-session-key", {"origin": own}, True),
        "bob after a password change": ("bob", {"origin": own}, True),
        "carol disabled": ("carol", {"origin": own}, True),
        "dave disabled": ("dave", {"origin": own}, True),
    }
    out: dict[str, Any] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=own) as client:
        for name, (who, headers, as_json) in cases.items():
            if who is not None:
                key = sessions.get(who, who)
                headers = {**headers, "cookie": f"sessionid={key}"}
            if as_json:
                response = await client.post("/v1/chat/completions", json=body, headers=headers)
            else:
                response = await client.post(
                    "/v1/chat/completions", content=orjson.dumps(body), headers=headers
                )
            code = response.json().get("error", {}).get("code") if response.status_code != 200 else None
            out[name] = [response.status_code, code]
    out["seen"] = seen
    return out


if __name__ == "__main__":
    main(sys.argv[1])
