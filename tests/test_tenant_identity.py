"""Identity: resolvers return a tenant and a user, a failing resolver is a 401/503 (never a 500), a bare
header never identifies a request when a verified source is configured, cookie identities pass the
cross-site checks, and an identity the host app set before the stack is trusted as is."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from asgi_aigw.budget import BudgetConfig, BudgetMiddleware, Limits, RedisBudgetStore
from asgi_aigw.kernel.context import Identity, ensure_context, get_context, set_identity
from asgi_aigw.tenant import JWTConfig, TenantConfig, TenantMiddleware, scope_user_resolver

from .support import served

SECRET = "test-only-hmac-secret-not-a-real-one-32b"
SNIPPET = Path(__file__).resolve().parent.parent / "docs" / "snippets" / "tenants_starlette.py"
CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Inner:
    """Records the identity each request reached the inner app with."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ctx = get_context(scope)
        assert ctx is not None
        self.seen.append((ctx.tenant_id, ctx.user_id, ctx.identity_source))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


async def call(
    app: Any,
    headers: dict[str, str] | None = None,
    *,
    content: bytes | None = None,
    method: str = "POST",
    path: str = CHAT,
) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        if content is None:
            return await client.request(method, path, json=BODY, headers=headers or {})
        return await client.request(method, path, content=content, headers=headers or {})


def error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]  # type: ignore[no-any-return]


def snippet() -> ModuleType:
    """The code docs/tenants.md shows, imported from the very file the page includes."""
    spec = importlib.util.spec_from_file_location("aigw_tenants_snippet", SNIPPET)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def hs_token(claims: dict[str, Any]) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 300, **claims}, SECRET, algorithm="HS256")


# -- resolvers: what they return, and what their failure becomes -------------------------------------


async def test_a_resolver_returns_an_identity_a_tenant_or_no_one() -> None:
    inner = Inner()
    answers: list[Any] = [Identity("acme", "alice"), "globex", None, Identity("acme", "bad user")]
    app = TenantMiddleware(inner, config=TenantConfig(), resolver=lambda scope: answers.pop(0))
    assert (await call(app)).status_code == 200
    assert (await call(app)).status_code == 200
    response = await call(app)
    assert response.status_code == 401
    assert error(response)["code"] == "missing_tenant"
    response = await call(app)  # user ids become budget keys: the tenant id rules apply to them
    assert response.status_code == 401
    assert error(response)["code"] == "invalid_user"
    assert inner.seen == [("acme", "alice", "app"), ("globex", None, "app")]


async def test_the_old_documented_resolver_is_a_401_with_one_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/tenants.md used to show ``lambda scope: scope["user"].org_id``: with no AuthenticationMiddleware
    in front (Django, FastAPI) it raised KeyError, which became a plain-text 500."""
    inner = Inner()
    app = TenantMiddleware(inner, config=TenantConfig(), resolver=lambda scope: scope["user"].org_id)
    with caplog.at_level(logging.ERROR, logger="asgi_aigw.tenant"):
        response = await call(app)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert error(response)["type"] == "authentication_error"
    assert error(response)["code"] == "resolver_failed"
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1
    assert tracebacks[0].exc_info is not None
    assert tracebacks[0].exc_info[0] is KeyError
    assert inner.seen == []


async def test_a_failing_resolver_can_be_a_503() -> None:
    def down(scope: Any) -> str:
        raise ConnectionError("the session store is down")

    app = TenantMiddleware(Inner(), config=TenantConfig(resolver_error_status=503), resolver=down)
    response = await call(app)
    assert response.status_code == 503
    assert error(response)["code"] == "resolver_unavailable"


# -- the documented example, on a real server ----------------------------------------------------------


async def test_the_documented_starlette_example() -> None:
    inner = Inner()
    app = snippet().with_identity(inner)
    async with served(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        same_site = {"origin": base_url}

        async def post(cookie: str | None, **headers: str) -> httpx.Response:
            cookies = {"cookie": f"session={cookie}"} if cookie else {}
            return await client.post(CHAT, json=BODY, headers={**cookies, **headers})

        assert (await post("s-alice", **same_site)).status_code == 200
        assert (await post("s-carol", **same_site)).status_code == 200
        # anonymous (no session, or an unknown one): 401, not a KeyError and not a 500
        for cookie in (None, "s-nobody"):
            response = await post(cookie, **same_site)
            assert response.status_code == 401, response.text
            assert error(response)["code"] == "missing_tenant"
        # a forged tenant header identifies no one
        response = await post(None, **{"x-tenant-id": "acme"})
        assert response.status_code == 401
        # cross-site: a text/plain POST with the victim's cookie, from another origin
        response = await client.post(
            CHAT,
            content=b'{"model": "m", "messages": []}',
            headers={
                "cookie": "session=s-alice",
                "content-type": "text/plain",
                "origin": "https://evil.test",
            },
        )
        assert response.status_code == 403
        assert error(response)["code"] == "csrf_content_type"
        response = await post("s-alice", origin="https://evil.test")
        assert response.status_code == 403
        assert error(response)["code"] == "csrf_origin_mismatch"
    assert inner.seen == [("acme", "alice", "app"), ("initech", "carol", "app")]


# -- the header when a verified source is configured ---------------------------------------------------


@pytest.fixture
async def redis_budget(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBudgetStore]:
    store = RedisBudgetStore(redis_url, key_prefix=redis_prefix)
    yield store
    await store.aclose()
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_an_anonymous_request_with_a_tenant_header_is_not_that_tenant(
    redis_budget: RedisBudgetStore, redis_url: str, redis_prefix: str
) -> None:
    """The attack: with a resolver configured, an anonymous request sending ``x-tenant-id: u3`` was
    served as u3 (u3's cache entries and budget). Now it is a 401 and u3's budget is untouched."""
    inner = Inner()

    def resolver(scope: Any) -> Identity | None:
        for key, value in scope["headers"]:
            if key == b"authorization" and value == b"Bearer u3-session":
                return Identity("u3", "u3")
        return None

    budget = BudgetMiddleware(
        inner, config=BudgetConfig(limits=Limits(requests_per_minute=100)), store=redis_budget
    )
    app = TenantMiddleware(budget, config=TenantConfig(), resolver=resolver)
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with served(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
            ok = await http.post(CHAT, json=BODY, headers={"authorization": "Bearer u3-session"})
            assert ok.status_code == 200
            before = {k: await client.get(k) async for k in client.scan_iter(match=f"{redis_prefix}*")}
            assert before, "the real user's request wrote nothing: the check below would pass vacuously"
            for _ in range(3):
                forged = await http.post(CHAT, json=BODY, headers={"x-tenant-id": "u3"})
                assert forged.status_code == 401
                assert error(forged)["code"] == "missing_tenant"
            after = {k: await client.get(k) async for k in client.scan_iter(match=f"{redis_prefix}*")}
    finally:
        await client.aclose()
    assert after == before
    assert inner.seen == [("u3", "u3", "app")]


async def test_the_header_as_a_claim_is_checked_against_the_verified_identity() -> None:
    inner = Inner()

    def resolver(scope: Any) -> str | None:
        return "org-7" if any(k == b"authorization" for k, _ in scope["headers"]) else None

    app = TenantMiddleware(inner, config=TenantConfig(header_mode="claim"), resolver=resolver)
    signed_in = {"authorization": "Bearer x"}
    assert (await call(app, {**signed_in, "x-tenant-id": "org-7"})).status_code == 200
    response = await call(app, {**signed_in, "x-tenant-id": "org-8"})
    assert response.status_code == 403
    assert error(response)["code"] == "tenant_mismatch"
    response = await call(app, {"x-tenant-id": "org-7"})  # no verified identity: a claim is not one
    assert response.status_code == 401
    assert error(response)["code"] == "missing_tenant"
    assert inner.seen == [("org-7", None, "app")]


async def test_the_header_is_off_by_default_with_jwt_and_trusted_only_when_asked() -> None:
    inner = Inner()
    jwt_config = JWTConfig(algorithms=["HS256"], secret=SECRET, required=False, user_claim="uid")
    default = TenantMiddleware(inner, config=TenantConfig(jwt=jwt_config))
    response = await call(default, {"x-tenant-id": "acme"})
    assert response.status_code == 401
    token = {"authorization": f"Bearer {hs_token({'sub': 'acme', 'uid': 'u-1'})}"}
    # the ignored header can neither identify nor contradict
    assert (await call(default, {**token, "x-tenant-id": "globex"})).status_code == 200
    trusted = TenantMiddleware(inner, config=TenantConfig(jwt=jwt_config, header_mode="trusted"))
    assert (await call(trusted, {"x-tenant-id": "acme"})).status_code == 200
    response = await call(trusted, {**token, "x-tenant-id": "globex"})
    assert response.status_code == 403
    # without any verified source configured the header is trusted, as before
    assert (
        await call(TenantMiddleware(inner, config=TenantConfig()), {"x-tenant-id": "solo"})
    ).status_code == 200
    assert inner.seen == [("acme", "u-1", "jwt"), ("acme", None, "header"), ("solo", None, "header")]


async def test_a_token_without_the_user_claim_is_refused() -> None:
    jwt_config = JWTConfig(algorithms=["HS256"], secret=SECRET, user_claim="uid")
    app = TenantMiddleware(Inner(), config=TenantConfig(jwt=jwt_config))
    response = await call(app, {"authorization": f"Bearer {hs_token({'sub': 'acme'})}"})
    assert response.status_code == 401
    assert "'uid'" in error(response)["message"]


# -- an identity the host app set before the stack -----------------------------------------------------


async def test_an_identity_set_by_the_host_app_is_trusted_and_not_overridden() -> None:
    inner = Inner()
    jwt_config = JWTConfig(algorithms=["HS256"], secret=SECRET)  # required: yet the app's identity stands
    gateway = TenantMiddleware(
        inner, config=TenantConfig(jwt=jwt_config, header_mode="trusted"), resolver=lambda scope: "resolved"
    )

    async def adapter(scope: Any, receive: Any, send: Any) -> None:
        scope, ctx = ensure_context(scope)
        set_identity(ctx, Identity("acme", "alice"), "app")
        await gateway(scope, receive, send)

    assert (await call(adapter)).status_code == 200
    response = await call(adapter, {"x-tenant-id": "globex"})
    assert response.status_code == 403  # a client header cannot move the app's user to another tenant
    assert inner.seen == [("acme", "alice", "app")]


# -- cross-site checks ---------------------------------------------------------------------------------


async def test_cookie_identities_need_json_and_a_same_origin() -> None:
    inner = Inner()
    app = TenantMiddleware(
        inner,
        config=TenantConfig(trusted_origins=["https://app.example.com"]),
        resolver=lambda scope: "acme",
    )
    cookie = {"cookie": "sessionid=abc"}
    own = {"origin": "http://testserver"}
    assert (await call(app, {**cookie, **own})).status_code == 200
    assert (await call(app, {**cookie, "origin": "https://app.example.com"})).status_code == 200
    assert (await call(app, {**cookie, "referer": "http://testserver/chat?x=1"})).status_code == 200
    refusals = {
        "csrf_content_type": await call(
            app, {**cookie, **own, "content-type": "text/plain"}, content=b'{"model": "m"}'
        ),
        "csrf_origin_missing": await call(app, cookie),
        "csrf_origin_mismatch": await call(app, {**cookie, "origin": "https://testserver"}),  # scheme differs
    }
    null_origin = await call(app, {**cookie, "origin": "null"})
    for code, response in [*refusals.items(), ("csrf_origin_mismatch", null_origin)]:
        assert response.status_code == 403, (code, response.text)
        assert error(response)["code"] == code
        assert error(response)["type"] == "permission_error"
    # no cookie: a bearer or API-key client is exempt, whatever its content type or origin
    assert (await call(app, {"origin": "https://evil.test"}, content=b"{}")).status_code == 200
    # reading is no forgery: GET /v1/models with a cookie and a foreign origin
    assert (
        await call(app, {**cookie, "origin": "https://evil.test"}, method="GET", path="/v1/models")
    ).status_code == 200
    assert len(inner.seen) == 5


async def test_cookie_auth_true_checks_every_request_with_a_cookie() -> None:
    jwt_config = JWTConfig(algorithms=["HS256"], secret=SECRET)
    token = {"authorization": f"Bearer {hs_token({'sub': 'acme'})}"}
    checked = TenantMiddleware(Inner(), config=TenantConfig(jwt=jwt_config, cookie_auth=True))
    response = await call(checked, {**token, "cookie": "sid=1", "origin": "https://evil.test"})
    assert response.status_code == 403
    assert (await call(checked, {**token, "origin": "https://evil.test"})).status_code == 200
    unchecked = TenantMiddleware(Inner(), config=TenantConfig(jwt=jwt_config))  # a token is not a cookie
    assert (
        await call(unchecked, {**token, "cookie": "sid=1", "origin": "https://evil.test"})
    ).status_code == 200


def test_trusted_origins_must_be_origins() -> None:
    with pytest.raises(ValueError, match="trusted origin"):
        TenantConfig(trusted_origins=["app.example.com"])


# -- the Starlette resolver ----------------------------------------------------------------------------


def test_scope_user_resolver_reads_starlette_users() -> None:
    from starlette.authentication import SimpleUser, UnauthenticatedUser

    resolve = scope_user_resolver()
    assert resolve({"type": "http"}) is None  # no AuthenticationMiddleware in front: no one
    assert resolve({"type": "http", "user": UnauthenticatedUser()}) is None
    assert resolve({"type": "http", "user": SimpleUser("ann")}) == Identity("ann", "ann")

    class Member(SimpleUser):
        def __init__(self, name: str, org: object) -> None:
            super().__init__(name)
            self.id = 7
            self.org = org

    org = type("Org", (), {"id": 42})()
    by_org = scope_user_resolver(organisation="org.id")
    assert by_org({"user": Member("ann", org)}) == Identity("42", "7")
    with pytest.raises(LookupError):  # no organisation is an error (a 401), never a tenant of one's own
        by_org({"user": Member("ann", None)})
    custom = scope_user_resolver(tenant_of=lambda user: f"t-{user.username}")
    assert custom({"user": SimpleUser("bo")}) == Identity("t-bo", "bo")


# -- the Django session resolver (asgi.py mounting) ----------------------------------------------------


def test_django_session_resolver(tmp_path: Path) -> None:
    """Real Django sessions and users on SQLite, in a subprocess: Django's settings are process-wide."""
    import subprocess

    import orjson

    done = subprocess.run(
        [sys.executable, "-m", "tests.django_session_probe", str(tmp_path / "db.sqlite3")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert out["alice"] == [200, None]
    assert out["alice trusted origin"] == [200, None]  # from CSRF_TRUSTED_ORIGINS
    assert out["alice referer"] == [200, None]
    assert out["alice text/plain cross-site"] == [403, "csrf_content_type"]
    assert out["alice cross-site json"] == [403, "csrf_origin_mismatch"]
    assert out["anonymous"] == [401, "missing_tenant"]
    assert out["unknown session"] == [401, "missing_tenant"]
    assert out["bob after a password change"] == [401, "missing_tenant"]
    assert out["carol disabled"] == [401, "missing_tenant"]  # ModelBackend: no longer logged in
    assert out["dave disabled"] == [403, "user_inactive"]  # a backend that keeps inactive users
    assert [tenant for tenant, _, _ in out["seen"]] == ["acme"] * 3
    assert {source for _, _, source in out["seen"]} == {"app"}
    assert len({user for _, user, _ in out["seen"]}) == 1
