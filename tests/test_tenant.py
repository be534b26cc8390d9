"""TenantMiddleware: header, resolver and JWT tenants, precedence, and every rejection as its own 401."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from asgi_aigw.kernel.context import current_tenant, get_context
from asgi_aigw.tenant import JWTConfig, TenantConfig, TenantMiddleware
from asgi_aigw.tenant.ids import InvalidTenantId, TenantIdValidator, validate_tenant_id

from .support import served

SECRET = "sk-test-hmac-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.test"
AUDIENCE = "aigw"


class Inner:
    """Records the tenant each request reached the inner app with (context and contextvar)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        ctx = get_context(scope)
        self.seen.append((ctx.tenant_id if ctx else None, current_tenant.get()))
        body = b'{"ok": true}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def call(
    app: Any, headers: dict[str, str] | None = None, path: str = "/v1/chat/completions"
) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post(path, json={"model": "m", "messages": []}, headers=headers or {})


def hs_token(
    claims: dict[str, Any] | None = None, key: str | bytes = SECRET, alg: str = "HS256", **headers: Any
) -> str:
    now = int(time.time())
    payload = {"sub": "acme", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **(claims or {})}
    return jwt.encode(payload, key, algorithm=alg, headers=headers or None)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]  # type: ignore[no-any-return]


# -- tenant ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["acme", "team-1", "a.b_c@d", "A" * 64, 42])
def test_valid_tenant_ids(value: object) -> None:
    assert validate_tenant_id(value) == str(value)


@pytest.mark.parametrize(
    "value", ["a:b", "a{b", "a}b", "a*", "a\nb", "a b", "A" * 65, "", "-lead", "a?b", "é", None, ["x"]]
)
def test_invalid_tenant_ids(value: object) -> None:
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(value)


def test_a_validator_remembers_only_the_ids_it_accepted() -> None:
    validate = TenantIdValidator(max_length=8)
    for _ in range(2):  # the second time from memory, with the same outcome
        assert validate("acme") == "acme"
        with pytest.raises(InvalidTenantId):
            validate("a:b")
        with pytest.raises(InvalidTenantId):
            validate("A" * 9)
    # another validator's rules are its own
    with pytest.raises(InvalidTenantId):
        TenantIdValidator(r"[a-z]+")("acme1")


@pytest.mark.parametrize("value", ["a:b", "a{b}", "a*", "a\nb", "A" * 65])
async def test_invalid_tenant_header_is_a_401(value: str) -> None:
    inner = Inner()
    response = await call(TenantMiddleware(inner), {"x-tenant-id": value})
    assert response.status_code == 401
    assert error(response)["code"] == "invalid_tenant"
    assert value not in error(response)["message"] or len(value) < 3
    assert inner.seen == []


# -- header, default, resolver ------------------------------------------------------------------------


async def test_header_tenant_reaches_context_and_contextvar() -> None:
    inner = Inner()
    response = await call(TenantMiddleware(inner), {"x-tenant-id": "acme"})
    assert response.status_code == 200
    assert inner.seen == [("acme", "acme")]
    assert current_tenant.get() is None  # reset after the request


async def test_missing_tenant_is_401_when_required_and_default_otherwise() -> None:
    inner = Inner()
    response = await call(TenantMiddleware(inner))
    assert response.status_code == 401
    assert error(response)["code"] == "missing_tenant"
    assert "x-tenant-id" in error(response)["message"]
    response = await call(
        TenantMiddleware(inner, config=TenantConfig(required=False, default_tenant="public"))
    )
    assert response.status_code == 200
    assert inner.seen == [("public", "public")]


async def test_non_gateway_routes_pass_through_untouched() -> None:
    inner = Inner()
    response = await call(TenantMiddleware(inner), path="/admin/login")
    assert response.status_code == 200
    assert inner.seen == [(None, None)]


async def test_resolver_wins_and_a_contradicting_header_is_403() -> None:
    inner = Inner()

    async def resolver(scope: Any) -> str | None:
        return scope.get("user_org")

    class WithUser:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.app({**scope, "user_org": "org-7"}, receive, send)

    app = WithUser(TenantMiddleware(inner, config=TenantConfig(header_mode="claim"), resolver=resolver))
    assert (await call(app)).status_code == 200
    assert (await call(app, {"x-tenant-id": "org-7"})).status_code == 200
    response = await call(app, {"x-tenant-id": "other"})
    assert response.status_code == 403
    assert error(response)["code"] == "tenant_mismatch"
    assert inner.seen == [("org-7", "org-7"), ("org-7", "org-7")]


async def test_resolver_from_configuration_path() -> None:
    inner = Inner()
    app = TenantMiddleware(
        inner, config=TenantConfig(resolver="tests.test_tenant:_path_resolver", header=None)
    )
    assert (await call(app)).status_code == 200
    assert inner.seen == [("from-path", "from-path")]


def _path_resolver(scope: Any) -> str:
    return "from-path"


# -- JWT with a shared secret ---------------------------------------------------------------------------


def hs_app(inner: Any, header_mode: Any = None, **jwt_options: Any) -> TenantMiddleware:
    options: dict[str, Any] = {
        "algorithms": ["HS256"],
        "secret": SECRET,
        "issuer": ISSUER,
        "audience": AUDIENCE,
    }
    options.update(jwt_options)
    return TenantMiddleware(inner, config=TenantConfig(jwt=JWTConfig(**options), header_mode=header_mode))


async def test_valid_hs256_token_sets_the_tenant() -> None:
    inner = Inner()
    app = hs_app(inner, header_mode="claim")
    assert (await call(app, bearer(hs_token()))).status_code == 200
    # a header that agrees with the token is fine; one that contradicts it is refused
    assert (await call(app, {**bearer(hs_token()), "x-tenant-id": "acme"})).status_code == 200
    response = await call(app, {**bearer(hs_token()), "x-tenant-id": "globex"})
    assert response.status_code == 403
    assert error(response)["code"] == "tenant_mismatch"
    assert inner.seen == [("acme", "acme"), ("acme", "acme")]


async def test_tenant_claim_by_path() -> None:
    inner = Inner()
    app = hs_app(inner, tenant_claim="org.id")
    assert (await call(app, bearer(hs_token({"org": {"id": "initech"}})))).status_code == 200
    response = await call(app, bearer(hs_token()))
    assert response.status_code == 401
    assert "'org.id'" in error(response)["message"]
    assert inner.seen == [("initech", "initech")]


async def test_missing_token_is_401_unless_optional() -> None:
    inner = Inner()
    response = await call(hs_app(inner))
    assert response.status_code == 401
    assert error(response)["code"] == "missing_token"
    # optional tokens and a header explicitly trusted: the header is used when no token is sent
    trusted = TenantMiddleware(
        inner,
        config=TenantConfig(
            header_mode="trusted",
            jwt=JWTConfig(
                algorithms=["HS256"], secret=SECRET, issuer=ISSUER, audience=AUDIENCE, required=False
            ),
        ),
    )
    assert (await call(trusted, {"x-tenant-id": "acme"})).status_code == 200
    assert inner.seen == [("acme", "acme")]


async def test_leeway_accepts_a_token_just_expired() -> None:
    inner = Inner()
    just_expired = hs_token({"exp": int(time.time()) - 5})
    assert (await call(hs_app(inner, leeway=30), bearer(just_expired))).status_code == 200
    assert (await call(hs_app(inner, leeway=0), bearer(just_expired))).status_code == 401


# -- JWT with public keys from a JWKS endpoint --------------------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(private: Any, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


def rs_token(private: Any, kid: str | None, claims: dict[str, Any] | None = None, alg: str = "RS256") -> str:
    now = int(time.time())
    payload = {"sub": "acme", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **(claims or {})}
    return jwt.encode(payload, private, algorithm=alg, headers={"kid": kid} if kid else None)


class JWKSApp:
    """A tiny key server: serves ``keys`` and counts fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        body = orjson.dumps({"keys": self.keys})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"one": rsa_key(), "two": rsa_key(), "stranger": rsa_key()}


async def test_rs256_via_jwks_with_a_rotated_key(keys: dict[str, Any]) -> None:
    server = JWKSApp([jwk(keys["one"], "k1")])
    inner = Inner()
    async with served(server) as base_url:
        app = TenantMiddleware(
            inner,
            config=TenantConfig(
                jwt=JWTConfig(
                    algorithms=["RS256"],
                    jwks_url=f"{base_url}/jwks.json",
                    issuer=ISSUER,
                    audience=AUDIENCE,
                    jwks_min_refresh_seconds=0,
                )
            ),
        )
        for _ in range(3):
            assert (await call(app, bearer(rs_token(keys["one"], "k1")))).status_code == 200
        assert server.fetches == 1  # cached: not fetched per request
        # the issuer rotates: k1 is retired, k2 signs new tokens
        server.keys = [jwk(keys["two"], "k2")]
        assert (await call(app, bearer(rs_token(keys["two"], "k2")))).status_code == 200
        assert server.fetches == 2  # the unknown kid triggered one refresh
        response = await call(app, bearer(rs_token(keys["one"], "k1")))
        assert response.status_code == 401
        assert "'k1'" in error(response)["message"]
        await app.aclose()
    assert list(inner.seen) == [("acme", "acme")] * 4


async def test_unknown_kid_refreshes_are_rate_limited(keys: dict[str, Any]) -> None:
    server = JWKSApp([jwk(keys["one"], "k1")])
    async with served(server) as base_url:
        app = TenantMiddleware(
            Inner(),
            config=TenantConfig(
                jwt=JWTConfig(
                    algorithms=["RS256"], jwks_url=f"{base_url}/jwks", jwks_min_refresh_seconds=60, require=[]
                )
            ),
        )
        for index in range(5):
            response = await call(app, bearer(rs_token(keys["stranger"], f"made-up-{index}", {"aud": None})))
            assert response.status_code == 401
        assert server.fetches == 1
        await app.aclose()


async def test_jwks_unreachable_is_503_not_500(keys: dict[str, Any]) -> None:
    app = TenantMiddleware(
        Inner(),
        config=TenantConfig(
            jwt=JWTConfig(algorithms=["RS256"], jwks_url="http://127.0.0.1:9/jwks", jwks_timeout=1)
        ),
    )
    response = await call(app, bearer(rs_token(keys["one"], "k1")))
    assert response.status_code == 503
    assert error(response)["code"] == "jwks_unavailable"
    assert app.verifier is not None
    assert app.verifier.jwks is not None
    attempted = app.verifier.jwks._attempted_at
    # a second request within the refresh interval is refused without another fetch attempt
    assert (await call(app, bearer(rs_token(keys["one"], "k1")))).status_code == 503
    assert app.verifier.jwks._attempted_at == attempted
    await app.aclose()


async def test_every_bad_token_gets_its_own_401(keys: dict[str, Any]) -> None:
    """alg none, expired, wrong audience, wrong issuer, bad signature, HS256 signed with the RS public
    key, unknown kid, garbage: each refused with a 401 and a message of its own, never a 500."""
    server = JWKSApp([jwk(keys["one"], "k1")])
    public_pem = (
        keys["one"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    inner = Inner()
    async with served(server) as base_url:
        # both families allowed, so key confusion is tried against a configuration that accepts HS256
        config = JWTConfig(
            algorithms=["RS256", "HS256"],
            jwks_url=f"{base_url}/jwks",
            secret=SECRET,
            issuer=ISSUER,
            audience=AUDIENCE,
            leeway=0,
        )
        app = TenantMiddleware(inner, config=TenantConfig(jwt=config))
        unsigned = jwt.encode({"sub": "acme", "exp": int(time.time()) + 60}, None, algorithm="none")
        good = rs_token(keys["one"], "k1")
        head, payload, _ = good.split(".")
        forged_signature = rs_token(keys["stranger"], "k1").split(".")[2]
        cases = {
            "alg none": unsigned,
            "expired": rs_token(keys["one"], "k1", {"exp": int(time.time()) - 60}),
            "wrong audience": rs_token(keys["one"], "k1", {"aud": "someone-else"}),
            "wrong issuer": rs_token(keys["one"], "k1", {"iss": "https://evil.test"}),
            "bad signature": f"{head}.{payload}.{forged_signature}",
            "HS256 with the RS public key": _hmac_with_public_key(public_pem),
            "unknown kid": rs_token(keys["stranger"], "k9"),
            "garbage": "not-a-jwt",
        }
        messages: dict[str, str] = {}
        for name, token in cases.items():
            response = await call(app, bearer(token))
            assert response.status_code == 401, (name, response.text)
            assert error(response)["type"] == "authentication_error"
            messages[name] = error(response)["message"]
        assert (await call(app, bearer(good))).status_code == 200
        await app.aclose()
    assert len(set(messages.values())) == len(messages), messages
    assert "none" in messages["alg none"]
    assert "expired" in messages["expired"]
    assert "audience" in messages["wrong audience"]
    assert "issuer" in messages["wrong issuer"]
    assert "RS256 signature" in messages["bad signature"]
    assert "HS256 signature" in messages["HS256 with the RS public key"]
    assert "kid" in messages["unknown kid"]
    assert "well-formed" in messages["garbage"]
    assert inner.seen == [("acme", "acme")]


def _hmac_with_public_key(public_pem: bytes) -> str:
    """The classic key-confusion forgery: an HS256 token whose HMAC key is the RS256 public key."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time())
    header = b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}))
    claims = b64(orjson.dumps({"sub": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300}))
    signature = b64(hmac.new(public_pem, header + b"." + claims, hashlib.sha256).digest())
    return (header + b"." + claims + b"." + signature).decode()


async def test_hs256_refused_when_only_rs256_is_allowed(keys: dict[str, Any]) -> None:
    public_pem = (
        keys["one"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = TenantMiddleware(
        Inner(),
        config=TenantConfig(jwt=JWTConfig(algorithms=["RS256"], public_key=public_pem, audience=AUDIENCE)),
    )
    response = await call(app, bearer(_hmac_with_public_key(public_pem.encode())))
    assert response.status_code == 401
    assert "HS256" in error(response)["message"]
    assert "RS256" in error(response)["message"]
    assert (await call(app, bearer(rs_token(keys["one"], None)))).status_code == 200


async def test_es256_public_key_from_a_file(tmp_path: Any) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    inner = Inner()
    app = TenantMiddleware(
        inner,
        config=TenantConfig(
            jwt=JWTConfig(algorithms=["ES256"], public_key_file=path, audience=AUDIENCE, issuer=ISSUER)
        ),
    )
    assert (await call(app, bearer(rs_token(private, None, alg="ES256")))).status_code == 200
    # a kid means nothing without a key set: the one configured key verifies it
    assert (await call(app, bearer(rs_token(private, "some-kid", alg="ES256")))).status_code == 200
    assert inner.seen == [("acme", "acme"), ("acme", "acme")]


def test_configuration_refuses_none_and_keyless_algorithms() -> None:
    with pytest.raises(ValueError, match="none"):
        JWTConfig(algorithms=["none"], secret=SECRET)
    with pytest.raises(ValueError, match="no secret"):
        JWTConfig(algorithms=["HS256"])
    with pytest.raises(ValueError, match="no public_key"):
        JWTConfig(algorithms=["RS256"])
    with pytest.raises(ValueError, match="no HS"):
        JWTConfig(algorithms=["RS256"], jwks_url="http://x", secret=SECRET)


def test_tenant_section_in_the_gateway_configuration() -> None:
    from asgi_aigw.config import parse_config

    config = parse_config({"tenant": {"header": "X-Org", "jwt": {"algorithms": ["HS256"], "secret": SECRET}}})
    assert config.tenant is not None
    assert config.tenant.header == "x-org"
    assert TenantConfig().required
