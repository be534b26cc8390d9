"""A verified token outlives the account it was issued for: the app's ``authorize`` check refuses a user
it has disabled since (issue: a user the app disabled still passed JWT mode)."""

from __future__ import annotations

import time
from typing import Any

import jwt

from asgi_aigw import Identity
from asgi_aigw.tenant import JWTConfig, TenantConfig, TenantMiddleware

from .test_tenant import SECRET, Inner, bearer, call, error

DISABLED = {"mallory"}


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "acme", "uid": user, "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


def jwt_config() -> JWTConfig:
    return JWTConfig(algorithms=["HS256"], secret=SECRET, user_claim="uid")


async def still_active(identity: Identity, scope: Any) -> bool:
    """What an app's check looks like: its user table says whether the account is still active."""
    return identity.user not in DISABLED


def raising(identity: Identity, scope: Any) -> bool:
    raise ConnectionError("the user database is down")


async def test_a_disabled_user_with_a_valid_token_is_refused() -> None:
    inner = Inner()
    app = TenantMiddleware(inner, config=TenantConfig(jwt=jwt_config()), authorize=still_active)
    assert (await call(app, bearer(token("alice")))).status_code == 200
    refused = await call(app, bearer(token("mallory")))
    assert refused.status_code == 403
    assert error(refused)["code"] == "account_disabled"
    assert inner.seen == [("acme", "acme")]  # only alice's request went on


async def test_without_the_check_the_signature_alone_decides() -> None:
    app = TenantMiddleware(Inner(), config=TenantConfig(jwt=jwt_config()))
    assert (await call(app, bearer(token("mallory")))).status_code == 200


async def test_the_check_named_in_the_configuration() -> None:
    config = TenantConfig(jwt=jwt_config(), authorize="tests.test_tenant_authorize:still_active")
    app = TenantMiddleware(Inner(), config=config)
    assert (await call(app, bearer(token("mallory")))).status_code == 403


async def test_a_failing_check_is_a_503_not_a_500() -> None:
    app = TenantMiddleware(Inner(), config=TenantConfig(jwt=jwt_config()), authorize=raising)
    response = await call(app, bearer(token("alice")))
    assert response.status_code == 503
    assert error(response)["code"] == "authorize_unavailable"
