"""Helpers for the bad-input and isolation tests: the full gateway stack in process, run from hypothesis'
synchronous tests through an anyio blocking portal, and the checks every refusal must pass.

``AIGW_FUZZ_EXAMPLES`` sets hypothesis' examples per input class (default: a short CI run);
``AIGW_FUZZ_REPORT=path.json`` writes the cases tried and the statuses seen per class when the run ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt as pyjwt
import orjson
import redis
from anyio.from_thread import BlockingPortal
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, settings

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.logs import RequestLogMiddleware
from asgi_aigw.logs.config import LogConfig
from asgi_aigw.redact import RedactConfig
from asgi_aigw.tenant.config import JWTConfig, TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from ..support import FAKE_URL, fake_config

CHAT = "/ai/v1/chat/completions"
EMBEDDINGS = "/ai/v1/embeddings"
#: The router's body limit in these stacks: small, so bodies near and over it stay cheap to build.
BODY_LIMIT = 256 * 1024
#: Examples per input class: short in CI, longer with AIGW_FUZZ_EXAMPLES=2000.
EXAMPLES = int(os.environ.get("AIGW_FUZZ_EXAMPLES", "25"))

HMAC_SECRET = "fake-hmac-secret-for-tests-" * 3  # 81 bytes: long enough for HS512
ISSUER = "https://issuer.test"
AUDIENCE = "aigw"


def fuzz_settings(examples: int | None = None) -> settings:
    """Hypothesis settings for one input class: an explicit example count, no deadline (two shared
    cores), no example database in the repository."""
    return settings(
        max_examples=examples or EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# -- what was tried -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Cases tried and statuses seen for one input class."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def record(self, status: int) -> None:
        self.cases += 1
        self.statuses[status] += 1


TALLIES: dict[str, Tally] = {}


def tally(name: str) -> Tally:
    return TALLIES.setdefault(name, Tally())


def write_report() -> None:
    """Print the tallies, and add them to the JSON file AIGW_FUZZ_REPORT names, when it is set."""
    if not TALLIES:
        return
    rows = {
        name: {"cases": t.cases, "statuses": dict(sorted(t.statuses.items()))}
        for name, t in sorted(TALLIES.items())
    }
    for name, row in rows.items():
        print(f"fuzz {name}: {row['cases']} cases, statuses {row['statuses']}")
    if path := os.environ.get("AIGW_FUZZ_REPORT"):
        existing = orjson.loads(Path(path).read_bytes()) if Path(path).exists() else {}
        options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        Path(path).write_bytes(orjson.dumps({**existing, **rows}, option=options))
    TALLIES.clear()  # each module reports its own classes


# -- the checks ---------------------------------------------------------------------------------------

#: A response header value a server may send: visible characters, spaces and tabs, nothing else.
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def json(self) -> Any:
        return orjson.loads(self.body)


def check_refusal(answer: Answer, *, statuses: range | set[int] = range(400, 500)) -> dict[str, Any]:
    """``answer`` is a 4xx in OpenAI's error shape with a message a client can act on; the error."""
    assert answer.status in statuses, (answer.status, answer.body[:500])
    assert (answer.header(b"content-type") or b"").startswith(b"application/json"), answer.headers
    body = answer.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}, error
    message = error["message"]
    assert isinstance(message, str), error
    # a sentence, not a stack trace nor an echo of a huge input
    assert 20 <= len(message) <= 1000, message
    assert "unexpectedly" not in message, message
    assert isinstance(error["type"], str), error
    assert error["type"], error
    assert error["code"] is None or isinstance(error["code"], str), error
    check_headers(answer)
    return error  # type: ignore[no-any-return]


def check_headers(answer: Answer) -> None:
    """No response header carries a line break or a control byte (no response splitting)."""
    for key, value in answer.headers:
        assert _FIELD_VALUE.fullmatch(value), (key, value[:200])


# -- the stack ----------------------------------------------------------------------------------------


class Stack:
    """build_app's whole stack around FakeProvider, called in process from synchronous tests.

    Tenant from ``x-tenant-id`` (or a verified JWT), budget in Redis, regex-only redaction, the exact
    cache in Redis (and a semantic layer when ``vector`` is given), the request log in a MemorySink.
    """

    def __init__(
        self,
        portal: BlockingPortal,
        redis_url: str,
        *,
        jwt: JWTConfig | None = None,
        vector: str = "none",
    ) -> None:
        self.portal = portal
        self.prefix = f"aigw-test:{uuid.uuid4().hex[:12]}:"
        self.fake = FakeProvider()
        config = fake_config()
        config.router.max_body_bytes = BODY_LIMIT
        config.log = LogConfig(store="memory://", spool_dir=None, flush_interval=3600)
        config.tenant = TenantConfig(header="x-tenant-id", jwt=jwt)
        config.budget = BudgetConfig(
            store=redis_url,
            key_prefix=f"{self.prefix}budget:",
            limits=Limits(requests_per_minute=10**9, tokens_per_minute=10**12),
        )  # its own body limit is the default (20 MiB): build_app lowers it to the router's
        config.redact = RedactConfig(regex_only=True)
        config.cache = CacheConfig(
            store=redis_url,
            key_prefix=f"{self.prefix}cache:",
            vector_store=None if vector == "none" else vector,
        )
        self.app = build_app(config, transports={FAKE_URL: StreamingASGITransport(self.fake)}, env={})
        self.redis = redis.Redis.from_url(redis_url)
        self._client: httpx.AsyncClient | None = None

    # -- requests -------------------------------------------------------------------------------------

    def post(
        self,
        path: str,
        content: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        chunk: int | None = None,
    ) -> Answer:
        """POST ``content`` with exactly ``headers`` (repeats kept) through a raw ASGI call; with
        ``chunk``, the body comes in pieces of that size and no Content-Length (a chunked upload)."""
        headers = headers if headers is not None else [(b"x-tenant-id", b"acme")]
        return self.portal.call(self._asgi, "POST", path, content, headers, chunk)

    def post_json(self, path: str, body: Any, **headers: str) -> httpx.Response:
        """POST a JSON body through httpx (StreamingASGITransport), for ordinary requests."""
        return self.portal.call(self._httpx_post, path, body, headers or {"x-tenant-id": "acme"})

    async def _httpx_post(self, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=StreamingASGITransport(self.app), base_url="http://t")
        response = await self._client.post(path, json=body, headers=headers)
        await response.aread()
        return response

    async def _asgi(
        self, method: str, path: str, content: bytes, headers: list[tuple[bytes, bytes]], chunk: int | None
    ) -> Answer:
        if chunk is None and not any(k.lower() == b"content-length" for k, _ in headers):
            headers = [*headers, (b"content-length", str(len(content)).encode())]
        pieces = [content[i : i + chunk] for i in range(0, len(content), chunk)] if chunk else [content]
        pieces = pieces or [b""]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        messages: list[dict[str, Any]] = []
        answered = anyio.Event()

        async def receive() -> dict[str, Any]:
            if pieces:
                return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}
            await answered.wait()  # the client stays until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered.set()

        await self.app(scope, receive, send)
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return Answer(start["status"], list(start.get("headers", [])), body)

    # -- what the stores hold -------------------------------------------------------------------------

    def provider_calls(self) -> int:
        return len(self.fake.requests)

    def redis_keys(self) -> set[bytes]:
        return set(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))

    def snapshot(self, keys: set[bytes]) -> dict[bytes, Any]:
        """The value of each key (hashes and strings), to compare before and after."""
        out: dict[bytes, Any] = {}
        for key in sorted(keys):
            kind = self.redis.type(key)
            out[key] = self.redis.hgetall(key) if kind == b"hash" else self.redis.get(key)
        return out

    def log_rows(self) -> list[Any]:
        log = self.app
        while not isinstance(log, RequestLogMiddleware):
            log = log.app  # type: ignore[attr-defined]
        assert self.portal.call(log.writer.flush)
        return list(log.writer.sink.rows)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._client is not None:
            self.portal.call(self._client.aclose)
        self.portal.call(self.app.aclose)  # type: ignore[attr-defined]
        for key in self.redis_keys():
            self.redis.delete(key)
        self.redis.close()


def refused_untouched(
    stack: Stack, call: Callable[[], Answer], **check: Any
) -> tuple[Answer, dict[str, Any]]:
    """Make ``call``; the answer is a clean refusal and the provider was not called."""
    before = stack.provider_calls()
    answer = call()
    error = check_refusal(answer, **check)
    assert stack.provider_calls() == before, "the provider was called for a refused request"
    return answer, error


def chat_body(content: Any = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    """JSON text of ``depth`` nested arrays (orjson will not serialise past 254 levels)."""
    return b"[" * depth + leaf + b"]" * depth


# -- tokens -------------------------------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def jwt_config() -> JWTConfig:
    """HS256 with a shared secret and RS256 with a public key, issuer and audience checked."""
    return JWTConfig(
        algorithms=["HS256", "RS256"],
        secret=HMAC_SECRET,  # type: ignore[arg-type]
        public_key=RSA_PUBLIC_PEM,
        issuer=ISSUER,
        audience=AUDIENCE,
    )


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for tenant ``acme``; ``changes`` override them (``MISSING_CLAIM`` removes one)."""
    now = int(time.time())
    out: dict[str, Any] = {"sub": "acme", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    for name, value in changes.items():
        if value is MISSING_CLAIM:
            out.pop(name, None)
        else:
            out[name] = value
    return out


MISSING_CLAIM = object()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: Any, payload: Any, *, secret: bytes | None = HMAC_SECRET.encode(), signature: bytes = b""
) -> str:
    """A compact JWT with any header and payload JSON (any types), HMAC-SHA256-signed with ``secret``
    (or carrying ``signature`` as is when ``secret`` is None)."""
    signing_input = f"{b64url(_json(header))}.{b64url(_json(payload))}"
    if secret is not None:
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def rs256(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256") -> str:
    return pyjwt.encode(payload, key, algorithm=alg)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode() if not isinstance(value, bytes) else value
