"""Tenant isolation through build_app's whole stack: no cached answer (exact or semantic, JSON or stream)
crosses tenants, one tenant's requests never touch another's budget counters, and tenant ids built to
inject into store keys are refused before anything is written to Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal

import asgi_aigw.cache.middleware as cache_middleware

from ..support import sse_payloads
from ._fuzz_support import (
    CHAT,
    Stack,
    chat_body,
    claims,
    forge,
    jwt_config,
    refused_untouched,
    tally,
)

pytest.importorskip("asgi_aigw.runtime.embedder")

#: A question and a paraphrase the offline embedder (all-MiniLM-L6-v2) matches (see test_cache_runtime).
QUESTION = "How do I undo the last git commit?"
PARAPHRASE = "How can I undo my last commit in git?"


@pytest.fixture(scope="module")
def stack(
    portal: BlockingPortal, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Exact cache in Redis and the semantic layer on Qdrant Edge with the real offline embedder."""
    vectors = tmp_path_factory.mktemp("isolation") / "vectors"
    stack = Stack(portal, redis_url, vector=f"qdrant-edge://{vectors}")
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def jwt_stack(portal: BlockingPortal, redis_url: str) -> Iterator[Stack]:
    stack = Stack(portal, redis_url, jwt=jwt_config())
    yield stack
    stack.close()


def ask(stack: Stack, tenant: str, question: str, *, stream: bool) -> tuple[str, str]:
    """The cache status and the answer's text for ``tenant``; the provider answers with a text naming
    the tenant, so an answer cached for another tenant shows whose it was."""
    stack.fake.behaviour.answer = f"answer for {tenant}"
    response = stack.post_json(CHAT, chat_body(question, stream=stream), **{"x-tenant-id": tenant})
    assert response.status_code == 200, response.text
    if stream:
        payloads = sse_payloads(response.text)
        text = "".join(
            p["choices"][0]["delta"].get("content") or "" for p in payloads if p != "[DONE]" and p["choices"]
        )
    else:
        text = response.json()["choices"][0]["message"]["content"]
    return response.headers["x-aigw-cache"], text


def leaks(stack: Stack, *, stream: bool, asked_by_b: str) -> list[str]:
    """Tenant A caches an answer; what tenant B was given that was A's (an empty list when isolated)."""
    run = uuid.uuid4().hex[:8]
    a, b = f"tenant-a-{run}", f"tenant-b-{run}"
    found: list[str] = []
    calls = stack.provider_calls()
    assert ask(stack, a, QUESTION, stream=stream) == ("miss", f"answer for {a}")
    # the controls: A's own repeat and paraphrase are answered from the cache, so B's misses mean something
    assert ask(stack, a, QUESTION, stream=stream) == ("hit-exact", f"answer for {a}")
    assert ask(stack, a, PARAPHRASE, stream=stream) == ("hit-semantic", f"answer for {a}")
    assert stack.provider_calls() == calls + 1
    status, text = ask(stack, b, asked_by_b, stream=stream)
    if status != "miss":
        found.append(f"{b} got x-aigw-cache: {status}")
    if a in text:
        found.append(f"{b} was given {a}'s answer: {text!r}")
    if stack.provider_calls() != calls + 2:
        found.append("the provider was not asked for B's request")
    return found


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("asked_by_b", [QUESTION, PARAPHRASE], ids=["identical", "paraphrased"])
def test_no_cached_answer_crosses_tenants(stack: Stack, stream: bool, asked_by_b: str) -> None:
    assert leaks(stack, stream=stream, asked_by_b=asked_by_b) == []
    tally("isolation: cache (B's requests checked)").record(200)


@pytest.mark.parametrize("asked_by_b", [QUESTION, PARAPHRASE], ids=["identical", "paraphrased"])
def test_the_isolation_check_catches_a_key_without_the_tenant(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, asked_by_b: str
) -> None:
    """Mutation check: with the tenant left out of the cache keys, the same check reports the leak."""
    real = cache_middleware.cache_keys
    everyone = f"everyone-{uuid.uuid4().hex[:8]}"  # fresh, so earlier runs' entries do not answer

    def shared_keys(body: Any, tenant: str, **options: Any) -> Any:
        return real(body, everyone, **options)

    monkeypatch.setattr(cache_middleware, "cache_keys", shared_keys)
    found = leaks(stack, stream=False, asked_by_b=asked_by_b)
    assert any("was given" in leak for leak in found), found


def test_one_tenants_requests_never_touch_anothers_budget_counters(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    a, b = f"tenant-a-{run}", f"tenant-b-{run}"
    budget = f"{stack.prefix}budget:".encode()

    def counters() -> set[bytes]:
        return {key for key in stack.redis_keys() if key.startswith(budget)}

    before = counters()
    ask(stack, b, f"Budget question {run} from B", stream=False)
    b_keys = counters() - before
    assert b_keys, "B's request wrote no budget counter: the test would pass vacuously"
    assert all(f"{{{b}}}".encode() in key for key in b_keys), b_keys
    b_values = stack.snapshot(b_keys)

    for i in range(3):
        ask(stack, a, f"Budget question {run} number {i} from A", stream=i == 1)
    a_keys = counters() - before - b_keys
    assert a_keys
    assert all(f"{{{a}}}".encode() in key and b.encode() not in key for key in a_keys), a_keys
    assert stack.snapshot(b_keys) == b_values, "A's requests changed B's budget counters"


BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Which tenant am I?"}]}'

#: Tenant ids that try to reach into store keys, key patterns, hash tags or log lines.
INJECTIONS = [
    "acme:budget",
    "acme:*",
    "{acme}",
    "acme}x{",
    "*",
    "acme?",
    "acme[0]",
    "acme\\x",
    "acme\nx-evil: 1",
    "acme\r\n",
    "acme\x00",
    "acme x",
    " acme",
    "a" * 65,
    "a" * 10_000,
    "\u0430cme",  # Cyrillic a
    "ac\u200bme",  # zero-width space
    "acme\uff1a",  # fullwidth colon
    "\uff0aacme",  # fullwidth asterisk
    "",
]


@pytest.mark.parametrize("source", ["header", "jwt claim"])
def test_tenant_ids_that_try_key_injection_are_refused_before_redis(
    request: pytest.FixtureRequest, source: str
) -> None:
    target: Stack = request.getfixturevalue("stack" if source == "header" else "jwt_stack")
    for tenant in INJECTIONS:
        if source == "header":
            headers = [(b"x-tenant-id", tenant.encode("utf-8"))]
        else:
            token = forge({"alg": "HS256", "typ": "JWT"}, claims(sub=tenant))
            headers = [(b"authorization", f"Bearer {token}".encode())]
        keys = target.redis_keys()
        answer, error = refused_untouched(target, lambda h=headers: target.post(CHAT, BODY, h))
        tally(f"isolation: injected tenant ids ({source})").record(answer.status)
        assert (answer.status, error["code"]) == (401, "invalid_tenant"), (tenant[:40], error)
        assert "not valid" in error["message"], error
        assert target.redis_keys() == keys, f"{tenant[:40]!r} wrote to Redis"
    # the control: a valid tenant from the same source does reach the budget store
    keys = target.redis_keys()
    if source == "header":
        headers = [(b"x-tenant-id", b"acme-control")]
    else:
        headers = [
            (b"authorization", f"Bearer {forge({'alg': 'HS256'}, claims(sub='acme-control'))}".encode())
        ]
    assert target.post(CHAT, BODY, headers).status == 200
    assert target.redis_keys() - keys, "a valid tenant wrote nothing: the checks above would pass vacuously"


def test_stack_stores_are_where_the_test_looks(stack: Stack) -> None:
    """The prefix the tests scan is the one the stores write under."""
    ask(stack, f"tenant-{uuid.uuid4().hex[:6]}", "Where are the keys?", stream=False)
    keys = stack.redis_keys()
    assert any(key.startswith(f"{stack.prefix}budget:".encode()) for key in keys)
    assert any(key.startswith(f"{stack.prefix}cache:".encode()) for key in keys)
