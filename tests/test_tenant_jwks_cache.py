"""The JWKS cache on its own, against an in-process key endpoint and a clock the test moves: expiry,
the refresh rate limit, concurrent callers sharing one fetch, what a key set may hold, who closes the
HTTP client. Each test names the check it holds (found by ``python bench/mutation.py tenant-jwt``)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from asgi_aigw.tenant import JWTConfig
from asgi_aigw.tenant import jwt as jwt_module
from asgi_aigw.tenant.jwt import JWKSCache, JWTVerifier, KeysUnavailable, TokenRejected, claim_at

URL = "https://issuer.test/jwks.json"


def public_jwk(private: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


@pytest.fixture(scope="module")
def private() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Endpoint:
    """A JWKS endpoint: serves ``keys`` (or fails), counts requests, can be slow."""

    def __init__(self, keys: list[Any]) -> None:
        self.keys = keys
        self.requests = 0
        self.fail = False
        self.delay = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            return httpx.Response(503)
        return httpx.Response(200, json={"keys": self.keys})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(jwt_module.time, "monotonic", clock)
    return clock


def cache_for(endpoint: Endpoint, **options: Any) -> tuple[JWKSCache, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    return JWKSCache(URL, client=client, **options), client


async def test_keys_are_trusted_for_cache_seconds_then_fetched_again(private: Any, clock: Clock) -> None:
    endpoint = Endpoint([public_jwk(private, "k1", alg="RS256")])
    cache, _ = cache_for(endpoint, cache_seconds=300, min_refresh_seconds=10)
    await cache.key("k1", "RS256")
    assert (cache.fetches, endpoint.requests) == (1, 1)
    clock.now += 300  # exactly cache_seconds old: still trusted
    await cache.key("k1", "RS256")
    assert endpoint.requests == 1
    clock.now += 0.5  # older than cache_seconds: fetched again
    await cache.key("k1", "RS256")
    assert (cache.fetches, endpoint.requests) == (2, 2)


async def test_an_expired_set_is_not_fetched_again_within_the_refresh_interval(
    private: Any, clock: Clock
) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    cache, _ = cache_for(endpoint, cache_seconds=1, min_refresh_seconds=10)
    await cache.key("k1", "RS256")
    clock.now += 5  # expired, but fetched only 5 s ago: the refresh limit holds
    await cache.key("k1", "RS256")
    assert endpoint.requests == 1
    clock.now += 5  # exactly min_refresh_seconds since the last attempt: allowed
    await cache.key("k1", "RS256")
    assert endpoint.requests == 2


async def test_a_failed_first_fetch_is_a_503_and_is_not_retried_at_once(private: Any, clock: Clock) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    endpoint.fail = True
    cache, _ = cache_for(endpoint, min_refresh_seconds=10)
    with pytest.raises(KeysUnavailable):
        await cache.key("k1", "RS256")
    assert (cache.fetches, endpoint.requests) == (0, 1)
    with pytest.raises(KeysUnavailable):
        await cache.key("k1", "RS256")  # no request: the endpoint failed a moment ago
    assert endpoint.requests == 1
    endpoint.fail = False
    clock.now += 10
    assert await cache.key("k1", "RS256") is not None
    assert endpoint.requests == 2


async def test_a_failed_refresh_keeps_the_cached_keys(private: Any, clock: Clock) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    cache, _ = cache_for(endpoint, cache_seconds=1, min_refresh_seconds=0)
    await cache.key("k1", "RS256")
    endpoint.fail = True
    clock.now += 2
    assert await cache.key("k1", "RS256") is not None
    assert (cache.fetches, endpoint.requests) == (1, 2)


async def test_concurrent_first_calls_share_one_fetch(private: Any) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    endpoint.delay = 0.05
    cache, _ = cache_for(endpoint)
    await asyncio.gather(*(cache.key("k1", "RS256") for _ in range(8)))
    assert (cache.fetches, endpoint.requests) == (1, 1)


async def test_concurrent_calls_share_one_failing_fetch(private: Any) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    endpoint.fail, endpoint.delay = True, 0.05
    cache, _ = cache_for(endpoint, min_refresh_seconds=0)
    results = await asyncio.gather(*(cache.key("k1", "RS256") for _ in range(8)), return_exceptions=True)
    assert all(isinstance(result, KeysUnavailable) for result in results)
    assert endpoint.requests == 1  # the waiters saw the attempt and did not repeat it


async def test_keys_without_kid_are_kept_apart(private: Any) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cache, _ = cache_for(Endpoint([public_jwk(private, None), public_jwk(other, None)]))
    with pytest.raises(TokenRejected, match="holds 2 keys"):
        await cache.key(None, "RS256")
    single, _ = cache_for(Endpoint([public_jwk(private, None)]))
    assert await single.key(None, "RS256") is not None


async def test_a_set_without_signing_keys_is_unavailable(private: Any) -> None:
    endpoint = Endpoint([public_jwk(private, "e1", use="enc"), "not a key", {"kty": "oct", "k": "c2VjcmV0"}])
    cache, _ = cache_for(endpoint)
    with pytest.raises(KeysUnavailable):
        await cache.key("e1", "RS256")
    assert cache.fetches == 0  # a set that verifies nothing is a failed fetch, not a fetched set


async def test_a_key_without_alg_verifies_any_allowed_algorithm_it_can(private: Any) -> None:
    cache, _ = cache_for(Endpoint([public_jwk(private, "k1")]))  # no "alg" member
    first = await cache.key("k1", "RS256")
    assert await cache.key("k1", "RS256") is first  # prepared once, then reused
    assert await cache.key("k1", "PS256") is not first
    with pytest.raises(TokenRejected, match="cannot verify ES256"):
        await cache.key("k1", "ES256")


async def test_the_cache_closes_only_the_client_it_opened(
    private: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    cache, given = cache_for(endpoint)
    await cache.key("k1", "RS256")
    await cache.aclose()
    assert not given.is_closed  # the application's client is the application's to close
    opened: list[httpx.AsyncClient] = []
    real_client = httpx.AsyncClient

    def own_client(**options: Any) -> httpx.AsyncClient:
        client = real_client(transport=httpx.MockTransport(endpoint), **options)
        opened.append(client)
        return client

    monkeypatch.setattr(jwt_module.httpx, "AsyncClient", own_client)
    own = JWKSCache(URL)
    await own.key("k1", "RS256")
    await own.aclose()
    assert len(opened) == 1
    assert opened[0].is_closed


def test_a_claim_path_through_a_string_is_no_claim() -> None:
    assert claim_at({"org": {"id": "acme"}}, "org.id") == "acme"
    assert claim_at({"org": "idaho"}, "org.id") is None  # "id" is in the string, but it has no claims
    assert claim_at({"org": ["id"]}, "org.id") is None


async def test_an_unknown_kid_refetches_once_the_refresh_interval_has_passed(
    private: Any, clock: Clock
) -> None:
    endpoint = Endpoint([public_jwk(private, "k1")])
    cache, _ = cache_for(endpoint, min_refresh_seconds=10)
    await cache.key("k1", "RS256")
    endpoint.keys = [public_jwk(private, "k2")]  # the issuer rotated its key
    clock.now += 9
    with pytest.raises(TokenRejected, match="not in the trusted key set"):
        await cache.key("k2", "RS256")
    assert endpoint.requests == 1
    clock.now += 1  # exactly min_refresh_seconds since the last fetch
    assert await cache.key("k2", "RS256") is not None
    assert endpoint.requests == 2


async def test_junk_in_a_key_set_is_skipped_not_fatal(private: Any) -> None:
    cache, _ = cache_for(Endpoint(["not a key", 7, public_jwk(private, "k1")]))
    assert await cache.key("k1", "RS256") is not None


async def test_closing_a_cache_that_never_fetched() -> None:
    await JWKSCache(URL).aclose()  # it opened no client: nothing to close, and no error


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.c2ln"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"typ": "JWT"}, "names no signing algorithm"),
        ({"alg": ""}, "names no signing algorithm"),
        ({"alg": 256}, "names no signing algorithm"),
        ({"alg": "none"}, "alg 'none') are never accepted"),
        ({"alg": "NONE"}, "alg 'none') are never accepted"),
        ({"alg": "RS256", "kid": 5}, "not a well-formed JWT"),  # PyJWT refuses a kid that is no string
    ],
)
async def test_each_malformed_header_is_refused_with_its_own_reason(
    private: Any, header: dict[str, Any], message: str
) -> None:
    config = JWTConfig(algorithms=["RS256"], jwks_url=URL, require=[])
    verifier = JWTVerifier(config, http_client=httpx.AsyncClient(transport=httpx.MockTransport(Endpoint([]))))
    with pytest.raises(TokenRejected, match=re.escape(message)):
        await verifier.verify(_unsigned(header, {"sub": "acme"}))


async def test_a_prefetch_fetches_the_set_before_any_token_and_one_that_fails_is_tried_again_at_once(
    private: Any, clock: Clock
) -> None:
    endpoint = Endpoint([public_jwk(private, "k1", alg="RS256")])
    cache, _ = cache_for(endpoint, min_refresh_seconds=10)
    endpoint.fail = True
    cache.prefetch()
    task = cache._prefetching
    assert task is not None
    await task
    assert (cache.fetches, endpoint.requests) == (0, 1)
    endpoint.fail = False  # the endpoint is back a moment later: the first token does not wait 10 s
    await cache.key("k1", "RS256")
    assert (cache.fetches, endpoint.requests) == (1, 2)
    cache.prefetch()  # a set fetched already: nothing more
    assert cache._prefetching is None


async def test_the_tenant_layer_fetches_its_key_set_at_startup(private: Any) -> None:
    from asgi_lifespan import LifespanManager

    from asgi_aigw import TenantMiddleware
    from asgi_aigw.tenant import TenantConfig
    from asgi_aigw.testing import FakeProvider

    endpoint = Endpoint([public_jwk(private, "k1", alg="RS256")])
    endpoint.delay = 0.05
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint))
    config = TenantConfig(jwt=JWTConfig(algorithms=["RS256"], jwks_url=URL))
    tenant = TenantMiddleware(FakeProvider(), config=config, http_client=client)
    assert tenant.verifier is not None
    cache = tenant.verifier.jwks
    assert cache is not None
    async with LifespanManager(tenant):
        task = cache._prefetching  # started by the startup, in the background (the endpoint is slow)
        assert task is not None
        await task
        assert (cache.fetches, endpoint.requests) == (1, 1)  # no token was sent
