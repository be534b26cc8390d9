"""JWT checks that mutation testing showed no test would miss: each test here fails when the check it
names is deleted from asgi_aigw/tenant/jwt.py (required ``exp``, a JWKS key's declared algorithm, the
JWKS filters of shared-secret and encryption keys, tokens without ``kid``, the NumericDate type checks,
``secret_file``, and the key choice when both a JWKS and a PEM key are configured)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from asgi_aigw.tenant import JWTConfig, TenantConfig, TenantMiddleware

from .support import served
from .test_tenant import SECRET, Inner, JWKSApp, bearer, call, error, jwk, rsa_key


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"a": rsa_key(), "b": rsa_key()}


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "acme", "iat": now, "exp": now + 300, **extra}


def rs(private: Any, payload: dict[str, Any], kid: str | None = None, alg: str = "RS256") -> str:
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid} if kid else None)


def app_for(inner: Any, **jwt_options: Any) -> TenantMiddleware:
    return TenantMiddleware(inner, config=TenantConfig(jwt=JWTConfig(**jwt_options)))


def pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_a_token_without_exp_is_refused_by_default() -> None:
    inner = Inner()
    app = app_for(inner, algorithms=["HS256"], secret=SECRET)
    no_exp = jwt.encode({"sub": "acme", "iat": int(time.time())}, SECRET, algorithm="HS256")
    response = await call(app, bearer(no_exp))
    assert response.status_code == 401
    assert error(response)["message"] == "The token lacks the required 'exp' claim."
    # the control: the same token with an exp is accepted, so the refusal is about exp alone
    with_exp = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert (await call(app, bearer(with_exp))).status_code == 200
    assert inner.seen == [("acme", "acme")]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_numeric_dates_must_be_json_numbers(claim: str) -> None:
    """PyJWT converts with int(): a string "exp" or "iat" would otherwise pass as a number."""
    app = app_for(Inner(), algorithms=["HS256"], secret=SECRET)
    value = str(int(time.time()) + (300 if claim == "exp" else -10))
    response = await call(app, bearer(jwt.encode(claims(**{claim: value}), SECRET, algorithm="HS256")))
    assert response.status_code == 401
    assert f"{claim!r} claim must be a number" in error(response)["message"]


async def test_secret_from_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "hmac.secret"
    path.write_text(SECRET + "\n")
    inner = Inner()
    app = app_for(inner, algorithms=["HS256"], secret_file=path)
    assert (await call(app, bearer(jwt.encode(claims(), SECRET, algorithm="HS256")))).status_code == 200
    forged = jwt.encode(claims(), "another-secret-of-at-least-32-bytes!!", algorithm="HS256")
    assert (await call(app, bearer(forged))).status_code == 401
    assert inner.seen == [("acme", "acme")]


async def test_a_jwks_key_is_used_only_for_the_algorithm_it_declares(keys: dict[str, Any]) -> None:
    server = JWKSApp([jwk(keys["a"], "k1")])  # declares alg RS256
    inner = Inner()
    async with served(server) as base_url:
        app = app_for(inner, algorithms=["RS256", "RS384"], jwks_url=f"{base_url}/jwks")
        response = await call(app, bearer(rs(keys["a"], claims(), "k1", alg="RS384")))
        assert response.status_code == 401
        assert "is for RS256" in error(response)["message"]
        assert (await call(app, bearer(rs(keys["a"], claims(), "k1")))).status_code == 200
        await app.aclose()
    assert inner.seen == [("acme", "acme")]


async def test_jwks_encryption_keys_never_verify_tokens(keys: dict[str, Any]) -> None:
    encryption = {**jwk(keys["b"], "enc-1"), "use": "enc"}
    server = JWKSApp([jwk(keys["a"], "k1"), encryption])
    async with served(server) as base_url:
        app = app_for(Inner(), algorithms=["RS256"], jwks_url=f"{base_url}/jwks")
        response = await call(app, bearer(rs(keys["b"], claims(), "enc-1")))
        assert response.status_code == 401
        assert "not in the trusted key set" in error(response)["message"]
        await app.aclose()


async def test_jwks_shared_secrets_are_not_keys(keys: dict[str, Any]) -> None:
    """An ``oct`` entry is dropped: the set holds one signing key, so a token without kid uses it."""
    secret = base64.urlsafe_b64encode(SECRET.encode()).rstrip(b"=").decode()
    shared = {"kty": "oct", "k": secret, "kid": "shared", "use": "sig"}
    server = JWKSApp([jwk(keys["a"], "k1"), shared])
    inner = Inner()
    async with served(server) as base_url:
        app = app_for(inner, algorithms=["RS256"], jwks_url=f"{base_url}/jwks")
        assert (await call(app, bearer(rs(keys["a"], claims())))).status_code == 200
        response = await call(app, bearer(rs(keys["a"], claims(), "shared")))
        assert response.status_code == 401
        assert "not in the trusted key set" in error(response)["message"]
        await app.aclose()
    assert inner.seen == [("acme", "acme")]


async def test_tokens_without_kid_need_a_key_set_of_one(keys: dict[str, Any]) -> None:
    server = JWKSApp([jwk(keys["a"], "k1"), jwk(keys["b"], "k2")])
    async with served(server) as base_url:
        app = app_for(Inner(), algorithms=["RS256"], jwks_url=f"{base_url}/jwks")
        response = await call(app, bearer(rs(keys["a"], claims())))
        assert response.status_code == 401
        assert "no key id (kid)" in error(response)["message"]
        assert "2 keys" in error(response)["message"]
        assert (await call(app, bearer(rs(keys["b"], claims(), "k2")))).status_code == 200
        await app.aclose()


async def test_with_a_jwks_and_a_pem_the_kid_decides_the_key(keys: dict[str, Any]) -> None:
    """Tokens with a kid are checked against the key set, tokens without one against the PEM key."""
    server = JWKSApp([jwk(keys["b"], "kb")])
    inner = Inner()
    async with served(server) as base_url:
        app = app_for(inner, algorithms=["RS256"], jwks_url=f"{base_url}/jwks", public_key=pem(keys["a"]))
        assert (await call(app, bearer(rs(keys["b"], claims(sub="via-jwks"), "kb")))).status_code == 200
        assert (await call(app, bearer(rs(keys["a"], claims(sub="via-pem"))))).status_code == 200
        # crossed over: each key is tried only where the kid sends it
        assert (await call(app, bearer(rs(keys["b"], claims())))).status_code == 401
        assert (await call(app, bearer(rs(keys["a"], claims(), "kb")))).status_code == 401
        await app.aclose()
    assert [tenant for tenant, _ in inner.seen] == ["via-jwks", "via-pem"]
