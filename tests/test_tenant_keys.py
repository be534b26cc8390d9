"""Gateway API keys kept in the configuration: the key's shape and digest, both headers the SDKs use, the
401 of each bad key in the client's dialect, a bearer that is not a key going to JWT verification, the
header that no longer identifies anyone once keys exist, and the constant-time comparison."""

from __future__ import annotations

import hmac
from typing import Any

import anyio
import httpx
import jwt
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from asgi_aigw.budget.config import Limits
from asgi_aigw.budget.subjects import API_KEY_CONTEXT as BUDGET_KEY_CONTEXT
from asgi_aigw.kernel.context import get_context
from asgi_aigw.tenant import JWTConfig, TenantConfig, TenantMiddleware
from asgi_aigw.tenant import keys as keys_module
from asgi_aigw.tenant.config import APIKeyEntry, KeyLimits
from asgi_aigw.tenant.keys import KEY_PREFIX, KeyRecord, MalformedKey, hash_key, key_id, matches, new_key
from asgi_aigw.tenant.middleware import API_KEY_CONTEXT

SECRET = "test-only-hmac-secret-not-a-real-one-32b"
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


class Inner:
    """Records the identity (and key) each request reached the inner app with."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None, str | None, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ctx = get_context(scope)
        assert ctx is not None
        self.seen.append((ctx.tenant_id, ctx.user_id, ctx.identity_source, ctx.extra.get(API_KEY_CONTEXT)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


def entry(key: str, tenant: str = "acme", **extra: Any) -> APIKeyEntry:
    return APIKeyEntry(id=key_id(key), hash=hash_key(key), tenant=tenant, **extra)


async def call(app: Any, headers: dict[str, str], path: str = CHAT) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as client:
        return await client.post(path, json=BODY, headers=headers)


# -- the key ---------------------------------------------------------------------------------------


def test_a_new_key_has_the_prefix_its_id_and_a_256_bit_secret() -> None:
    ident, key = new_key()
    assert key.startswith(KEY_PREFIX + ident + "_")
    secret = key.rsplit("_", 1)[1]
    assert len(secret) == 64
    assert int(secret, 16) >= 0
    assert key_id(key) == ident
    assert len({new_key()[1] for _ in range(50)}) == 50


def test_only_the_digest_is_kept_and_it_matches_only_its_key() -> None:
    _, key = new_key()
    _, other = new_key()
    digest = hash_key(key)
    assert digest.startswith("sha256:")
    assert key not in digest
    assert key.rsplit("_", 1)[1] not in digest
    assert matches(key, digest)
    assert not matches(other, digest)
    assert not matches(key, None)  # an unknown id


@pytest.mark.parametrize(
    "bad",
    [
        "sk_0123456789ab_" + "0" * 64,  # wrong prefix
        "aigw_0123456789a_" + "0" * 64,  # id one short
        "aigw_0123456789ab_" + "0" * 63,  # secret one short
        "aigw_0123456789ab_" + "0" * 65,  # secret one long
        "aigw_0123456789AB_" + "0" * 64,  # upper case
        "aigw_0123456789ab" + "0" * 64,  # no separator
    ],
)
def test_malformed_keys_are_refused_by_shape(bad: str) -> None:
    with pytest.raises(MalformedKey):
        key_id(bad)


def test_the_digest_comparison_is_constant_time_for_wrong_and_unknown_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", spy)
    _, key = new_key()
    _, wrong = new_key()
    assert not matches(wrong, hash_key(key))
    assert not matches(wrong, None)
    # both went through compare_digest, with digests of equal length: same work whatever is wrong
    assert len(calls) == 2
    assert all(len(a) == len(b) for a, b in calls)


def test_a_new_record_is_live_and_its_listing_has_everything_but_the_digest() -> None:
    ident, key = new_key()
    record = KeyRecord(ident, hash_key(key), "acme")
    assert record.public() == {
        "id": ident,
        "tenant": "acme",
        "user": None,
        "name": "",
        "created": 0.0,
        "revoked": False,
        "limits": {},
    }


def test_the_configuration_refuses_a_key_where_a_digest_belongs() -> None:
    _, key = new_key()
    with pytest.raises(ValidationError, match="never the key itself"):
        APIKeyEntry(id=key_id(key), hash=key, tenant="acme")
    with pytest.raises(ValidationError, match="listed twice"):
        TenantConfig(api_keys=[entry(key), entry(key, tenant="other")])


def test_key_limits_have_the_budget_windows() -> None:
    # one window syntax for budgets and keys; the two classes must not drift apart
    assert list(KeyLimits.model_fields) == list(Limits.model_fields)
    assert API_KEY_CONTEXT == BUDGET_KEY_CONTEXT


# -- the middleware ----------------------------------------------------------------------------------


async def test_a_key_identifies_its_tenant_from_either_header() -> None:
    _, key = new_key()
    _, bobs = new_key()
    inner = Inner()
    app = TenantMiddleware(
        inner,
        config=TenantConfig(
            api_keys=[
                entry(key, limits=KeyLimits(tokens_per_day=100)),
                entry(bobs, tenant="beta", user="bob"),
            ]
        ),
    )
    ident = key_id(key)
    assert (await call(app, {"authorization": f"Bearer {key}"})).status_code == 200
    assert (await call(app, {"x-api-key": key}, MESSAGES)).status_code == 200
    assert (await call(app, {"authorization": f"Bearer {key}", "x-api-key": key})).status_code == 200
    assert (await call(app, {"x-api-key": bobs})).status_code == 200
    # only the Bearer scheme carries a key in Authorization ("Token: " is as long as "Bearer ")
    other_scheme = await call(app, {"authorization": f"Token: {key}"})
    assert other_scheme.status_code == 401
    assert other_scheme.json()["error"]["code"] == "missing_tenant"
    limits = {"id": ident, "limits": {"tokens_per_day": 100}}
    assert inner.seen == [
        ("acme", f"key-{ident}", "api_key", limits),
        ("acme", f"key-{ident}", "api_key", limits),
        ("acme", f"key-{ident}", "api_key", limits),
        ("beta", "bob", "api_key", {"id": key_id(bobs), "limits": {}}),
    ]


async def test_every_bad_key_is_a_401_in_the_clients_dialect() -> None:
    _, key = new_key()
    _, revoked = new_key()
    _, unknown = new_key()
    wrong_secret = key[:-1] + ("0" if key[-1] != "0" else "1")
    inner = Inner()
    app = TenantMiddleware(inner, config=TenantConfig(api_keys=[entry(key), entry(revoked, revoked=True)]))
    cases = [
        ({"authorization": f"Bearer {unknown}"}, "invalid_api_key", "not valid"),
        ({"authorization": f"Bearer {wrong_secret}"}, "invalid_api_key", "not valid"),
        ({"x-api-key": key[:-2]}, "invalid_api_key", "malformed"),
        ({"x-api-key": "sk-ant-not-a-gateway-key"}, "invalid_api_key", "does not hold a gateway API key"),
        ({"x-api-key": revoked}, "revoked_api_key", "revoked"),
    ]
    for headers, code, text in cases:
        chat = await call(app, headers)
        assert chat.status_code == 401, headers
        error = chat.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", code)
        assert text in error["message"]
        messages = await call(app, headers, MESSAGES)
        assert messages.status_code == 401
        # Anthropic's shape, which its SDK raises as AuthenticationError with this message
        assert messages.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": error["message"]},
        }
    assert inner.seen == []


async def test_every_refusal_of_the_middleware_speaks_the_messages_dialect() -> None:
    inner = Inner()
    _, key = new_key()
    _, other = new_key()
    app = TenantMiddleware(inner, config=TenantConfig(api_keys=[entry(key)]))
    missing = await call(app, {}, MESSAGES)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert "API key" in missing.json()["error"]["message"]
    conflicting = await call(app, {"authorization": f"Bearer {key}", "x-api-key": other}, MESSAGES)
    assert conflicting.status_code == 400
    assert conflicting.json()["type"] == "error"
    assert conflicting.json()["error"]["type"] == "invalid_request_error"
    header_app = TenantMiddleware(inner, config=TenantConfig(header_mode="trusted"))
    bad_header = await call(header_app, {"x-tenant-id": "no:colons"}, MESSAGES)
    assert bad_header.status_code == 401
    assert bad_header.json()["type"] == "error"


async def test_with_keys_the_bare_header_identifies_no_one() -> None:
    _, key = new_key()
    inner = Inner()
    app = TenantMiddleware(inner, config=TenantConfig(api_keys=[entry(key)]))
    assert app.header_mode == "off"
    refused = await call(app, {"x-tenant-id": "acme"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_tenant"
    # the header still may not contradict the key when the deployment asks for claim checks
    claim = TenantMiddleware(inner, config=TenantConfig(api_keys=[entry(key)], header_mode="claim"))
    mismatch = await call(claim, {"x-api-key": key, "x-tenant-id": "other"})
    assert mismatch.status_code == 403
    assert inner.seen == []


async def test_a_bearer_that_is_not_a_key_goes_to_jwt_verification() -> None:
    _, key = new_key()
    inner = Inner()
    config = TenantConfig(
        api_keys=[entry(key)], jwt=JWTConfig(algorithms=["HS256"], secret=SECRET, require=[])
    )
    app = TenantMiddleware(inner, config=config)
    token = jwt.encode({"sub": "jwt-tenant"}, SECRET, algorithm="HS256")
    assert (await call(app, {"authorization": f"Bearer {token}"})).status_code == 200
    # a key in the bearer is checked as a key: the required JWT is not asked for
    assert (await call(app, {"authorization": f"Bearer {key}"})).status_code == 200
    bad_jwt = await call(app, {"authorization": "Bearer not-a-jwt"})
    assert bad_jwt.status_code == 401
    assert bad_jwt.json()["error"]["code"] == "invalid_token"
    # a JWT and a key of different tenants together: refused
    clash = await call(app, {"authorization": f"Bearer {token}", "x-api-key": key})
    assert clash.status_code == 403
    assert [seen[:3] for seen in inner.seen] == [
        ("jwt-tenant", None, "jwt"),
        ("acme", f"key-{key_id(key)}", "api_key"),
    ]


def test_key_limits_without_a_budget_are_refused_at_start_up() -> None:
    from asgi_aigw import build_app
    from asgi_aigw.budget import BudgetConfig
    from asgi_aigw.config import ConfigError, GatewayConfig

    _, key = new_key()
    limited = entry(key, limits=KeyLimits(tokens_per_day=10))
    with pytest.raises(ConfigError, match=f"API key {key_id(key)} has budget limits"):
        build_app(GatewayConfig(tenant=TenantConfig(api_keys=[limited])), env={})
    build_app(GatewayConfig(tenant=TenantConfig(api_keys=[limited]), budget=BudgetConfig()), env={})
    build_app(GatewayConfig(tenant=TenantConfig(api_keys=[entry(key)])), env={})


def test_a_key_store_url_of_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValidationError, match="Unknown API key store"):
        TenantConfig(key_store="memcached://127.0.0.1:11211")


_STATIC_KEY = new_key()[1]
_FUZZ_APP_INNER = Inner()
_FUZZ_APP = TenantMiddleware(_FUZZ_APP_INNER, config=TenantConfig(api_keys=[entry(_STATIC_KEY)]))


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(
        st.binary(max_size=120),
        st.text(alphabet="aigw_0123456789abcdefABCDEF-", max_size=100).map(lambda t: ("aigw_" + t).encode()),
        st.integers(0, 81).map(lambda n: _STATIC_KEY[:n].encode()),
    ),
    header=st.sampled_from([b"x-api-key", b"authorization"]),
)
def test_any_header_value_is_a_4xx_and_never_reaches_the_app(value: bytes, header: bytes) -> None:
    raw = b"Bearer " + value if header == b"authorization" else value
    assume(raw.strip() != _STATIC_KEY.encode() and raw != b"Bearer " + _STATIC_KEY.encode())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": CHAT, "headers": [(header, raw)]}
    anyio.run(_FUZZ_APP, scope, receive, send)
    assert sent[0]["status"] in (400, 401)
    assert _FUZZ_APP_INNER.seen == []
