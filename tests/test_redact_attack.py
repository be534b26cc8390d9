"""The attack list for redaction: personal data in every field of a chat or embeddings request that
carries client text, written plainly, escaped, disguised against the recognisers, and split across
the text parts of one message. The whole gateway runs on a real uvicorn with real Redis (budgets,
exact cache), Qdrant Edge (semantic cache) and chDB (request log, with bodies); afterwards the
upstream (FakeProvider's record), every Redis key and value, every vector payload and every log row
are searched for the values, in every spelling. docs/security.md lists these cases.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aredis

pytest.importorskip("chdb")
pytest.importorskip("qdrant_edge")

from asgi_aigw import build_app
from asgi_aigw.budget.config import BudgetConfig, Limits
from asgi_aigw.cache.config import CacheConfig
from asgi_aigw.logs import ClickHouseSink, LogConfig
from asgi_aigw.redact import RedactConfig
from asgi_aigw.tenant.config import TenantConfig
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config, served, sse_payloads

CHAT = "/ai/v1/chat/completions"
EMBEDDINGS = "/ai/v1/embeddings"
HEADERS = {"x-tenant-id": "acme"}

#: The name every case hides; its e-mail addresses are ``<who>.garcia@example.com``.
NAME = "José García"


def email(who: str) -> str:
    return f"{who}.garcia@example.com"


#: Disguises that defeat a recogniser reading the text as written, each of an address.
DISGUISES: dict[str, Callable[[str], str]] = {
    "plain": lambda value: value,
    "full-width at sign": lambda value: value.replace("@", "\uff20"),
    "full-width letters": lambda value: "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in value),
    "zero-width characters": lambda value: value[:3] + "\u200b" + value[3:9] + "\u200d" + value[9:],
    "HTML entity &#64;": lambda value: value.replace("@", "&#64;"),
    "HTML entity &#x40;, encoded twice": lambda value: value.replace("@", "&amp;#x40;"),
}


def clean(blob: bytes) -> str:
    """A stored blob as a reader would see it: JSON escapes, HTML entities, full-width and invisible
    characters and accents undone, lower case: a value in any spelling reads as itself here."""
    text = blob.decode("utf-8", "replace")
    for _ in range(3):  # escapes inside escaped JSON (tool-call arguments in a log row)
        text = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
        text = html.unescape(text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Mn"))
    return text.lower()


def assert_nothing_leaked(places: dict[str, list[bytes]]) -> None:
    leaks = []
    for where, blobs in places.items():
        assert blobs, f"nothing reached {where}: the test would pass vacuously"
        for blob in blobs:
            text = clean(blob)
            squeezed = text.replace(" ", "").replace("-", "")
            for value in ("garcia", "example.com", "8828080"):
                if value in squeezed:
                    at = squeezed.index(value)
                    leaks.append(f"{value!r} reached {where}: ...{squeezed[max(0, at - 80) : at + 40]}...")
    assert not leaks, "\n".join(leaks)


# -- the stack -------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    base_url: str
    fake: FakeProvider


class Stores:
    """Where the gateway keeps things, read after it shut down (so every write is flushed)."""

    def __init__(self, redis_url: str, prefix: str, vectors: Path, chdb_url: str, table: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.vectors = vectors
        self.chdb_url = chdb_url
        self.table = table

    async def redis(self) -> list[bytes]:
        client = aredis.Redis.from_url(self.redis_url)
        blobs: list[bytes] = []
        try:
            async for key in client.scan_iter(match=f"{self.prefix}*"):
                blobs.append(key)
                kind = (await client.type(key)).decode()
                if kind == "string":
                    blobs.append(await client.get(key) or b"")
                elif kind == "hash":
                    blobs.extend(b"%s=%s" % item for item in (await client.hgetall(key)).items())
                elif kind == "zset":
                    blobs.extend(member for member, _ in await client.zrange(key, 0, -1, withscores=True))
                elif kind == "list":
                    blobs.extend(await client.lrange(key, 0, -1))
                else:
                    blobs.append(f"<{kind}>".encode())
            for key in [key async for key in client.scan_iter(match=f"{self.prefix}*")]:
                await client.delete(key)
        finally:
            await client.aclose()
        return blobs

    def vector_payloads(self) -> list[bytes]:
        import qdrant_edge as qe

        if not (self.vectors / "edge_config.json").exists():
            return []
        shard = qe.EdgeShard.load(str(self.vectors))
        try:
            records, _ = shard.scroll(qe.ScrollRequest(limit=10_000, with_payload=True))
        finally:
            shard.close()
        return [orjson.dumps(record.payload) for record in records]

    def log_rows(self) -> list[dict[str, Any]]:
        reader = ClickHouseSink(self.chdb_url, table=self.table)
        try:
            rows = reader.query("SELECT * FROM {table}")
            names = [
                name
                for (name,) in reader.query(f"SELECT name FROM system.columns WHERE table = '{self.table}'")
            ]
        finally:
            reader.close()
        return [dict(zip(names, row, strict=True)) for row in rows]


@asynccontextmanager
async def gateway(
    redis_url: str,
    redis_prefix: str,
    chdb_url: str,
    tmp_path: Path,
    *,
    redact: RedactConfig | None = None,
    limits: Limits | None = None,
) -> AsyncIterator[tuple[Gateway, Stores]]:
    fake = FakeProvider()
    table = f"attack_{uuid.uuid4().hex[:10]}"
    config = fake_config()
    config.log = LogConfig(
        store=chdb_url, table=table, spool_dir=str(tmp_path / "spool"), flush_interval=3600, log_bodies=True
    )
    config.tenant = TenantConfig(header="x-tenant-id")
    config.budget = BudgetConfig(
        store=redis_url,
        key_prefix=f"{redis_prefix}budget:",
        limits=limits or Limits(tokens_per_minute=1_000_000),
    )
    config.redact = redact or RedactConfig()
    config.cache = CacheConfig(
        store=redis_url, key_prefix=f"{redis_prefix}cache:", vector_store=f"qdrant-edge://{tmp_path / 'edge'}"
    )
    app = build_app(config, transports={FAKE_URL: StreamingASGITransport(fake)}, env={})
    stores = Stores(redis_url, redis_prefix, tmp_path / "edge", chdb_url, table)
    async with served(app) as base_url:  # leaving it shuts the server down: the log and cache flush
        yield Gateway(base_url, fake), stores


# -- the requests ------------------------------------------------------------------------------------------


def kitchen_sink(who: str, disguise: Callable[[str], str] = DISGUISES["plain"]) -> dict[str, Any]:
    """A chat request with personal data in every field that carries client text."""
    mail = disguise(email(who))
    arguments = json.dumps({"to": email(who + "-args"), "name": NAME})  # json.dumps: "Jos\u00e9 Garc\u00eda"
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {
                "role": "system",
                "content": f"The customer is {NAME}, reachable at {mail}.",
                "name": "Maria Garcia",
            },
            {
                "role": "developer",
                "content": [{"type": "text", "text": f"Escalate to {disguise(email(who + '-dev'))}"}],
            },
            {"role": "user", "content": f"Please write to {mail} today.", "name": NAME},
            {
                "role": "assistant",
                "content": None,
                "refusal": f"I will not share {email(who + '-refusal')}.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        # escaped as a client library would (\u0040 for @), non-ASCII as \u00e9
                        "function": {"name": "send_mail", "arguments": arguments.replace("@", "\\u0040")},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"Sent to {email(who + '-tool')}."},
            {
                "role": "user",
                "content": [
                    # split across the text parts of one message
                    {"type": "text", "text": f"And copy {who}-split.gar"},
                    {"type": "text", "text": "cia@example.com please, or call +1 425 882 8080."},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "send_mail",
                    "description": f"Sends mail on behalf of {email(who + '-tooldesc')}.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "to": {
                                "type": "string",
                                "description": f"For example {email(who + '-param')}",
                                "enum": [email(who + "-enum"), "someone else"],
                            }
                        },
                        "required": ["to"],
                    },
                },
            }
        ],
        "user": email(who + "-user"),
        "metadata": {"customer": email(who + "-meta"), email(who + "-metakey"): "key"},
        "x_unknown_field": f"note from {email(who + '-extra')}",
    }


def questions(who: str) -> list[dict[str, Any]]:
    """Plain questions (no tools: answered and stored by the caches), one per disguise."""
    return [
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Who is {disguise(email(who + str(n)))}?"}],
        }
        for n, disguise in enumerate(DISGUISES.values())
    ]


def escaped_bytes(body: dict[str, Any]) -> bytes:
    """``body`` as a client that escapes everything sends it: non-ASCII and ``@`` as ``\\uXXXX``."""
    return json.dumps(body).replace("@", "\\u0040").encode()


async def test_personal_data_in_every_field_in_every_spelling_reaches_no_store(
    redis_url: str, redis_prefix: str, chdb_url: str, tmp_path: Path
) -> None:
    async with gateway(redis_url, redis_prefix, chdb_url, tmp_path) as (gw, stores):
        async with httpx.AsyncClient(base_url=gw.base_url, headers=HEADERS, timeout=60) as client:
            statuses = []
            for n, (name, disguise) in enumerate(DISGUISES.items()):
                response = await client.post(CHAT, json=kitchen_sink(f"sink{n}", disguise))
                statuses.append((name, response.status_code))
                # the tool call the fake makes from the last user message: restored, JSON-escaped
                call = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]
                query = json.loads(call["arguments"])["query"]
                assert f"sink{n}-split.garcia@example.com" in query
            escaped = await client.post(
                CHAT,
                content=escaped_bytes(kitchen_sink("escaped")),
                headers={"content-type": "application/json"},
            )
            statuses.append(("escaped body", escaped.status_code))
            streamed = await client.post(CHAT, json={**kitchen_sink("stream"), "stream": True})
            statuses.append(("stream", streamed.status_code))
            events = [p for p in sse_payloads(streamed.text) if p != "[DONE]"]
            arguments = "".join(
                call["function"].get("arguments") or ""
                for p in events
                for choice in p["choices"]
                for call in choice["delta"].get("tool_calls") or []
            )
            assert "stream-split.garcia@example.com" in json.loads(arguments)["query"]
            for body in questions("question"):
                answer = await client.post(CHAT, json=body)
                statuses.append(("question", answer.status_code))
                # the client gets its own spelling back
                assert (
                    answer.json()["choices"][0]["message"]["content"]
                    == "Echo: " + body["messages"][0]["content"]
                )
            embedded = await client.post(
                EMBEDDINGS,
                json={
                    "model": "text-embedding-3-small",
                    "input": [disguise(email(f"embed{n}")) for n, disguise in enumerate(DISGUISES.values())],
                    "user": email("embed-user"),
                },
            )
            statuses.append(("embeddings", embedded.status_code))
            one = await client.post(
                EMBEDDINGS,
                content=escaped_bytes(
                    {"model": "text-embedding-3-small", "input": f"I am {NAME}, {email('embed-one')}"}
                ),
                headers={"content-type": "application/json"},
            )
            statuses.append(("embeddings, escaped", one.status_code))
        assert all(status == 200 for _, status in statuses), statuses
    upstream = [request.body for request in gw.fake.requests]
    places = {
        "the provider": upstream,
        "Redis": await stores.redis(),
        "Qdrant payloads": stores.vector_payloads(),
        "the request log": [orjson.dumps(row, default=str) for row in stores.log_rows()],
    }
    assert_nothing_leaked(places)
    # what did reach them is the redacted request, not nothing
    first = json.loads(upstream[0])
    assert first["user"] == "<EMAIL_ADDRESS_10>"  # numbered in body order
    assert "<PERSON_1>" in first["messages"][0]["content"]
    assert [part["text"] for part in first["messages"][5]["content"]] == [
        "And copy <EMAIL_ADDRESS_6>",
        " please, or call <PHONE_NUMBER_1>.",
    ]
    assert json.loads(first["messages"][3]["tool_calls"][0]["function"]["arguments"]) == {
        "to": "<EMAIL_ADDRESS_4>",
        "name": "<PERSON_1>",
    }
    assert any(b"EMAIL_ADDRESS_" in blob for blob in places["the request log"])
    assert any(b"EMAIL_ADDRESS_" in blob for blob in places["Qdrant payloads"])
    assert any(b"EMAIL_ADDRESS_" in blob for blob in places["Redis"])


# -- refused before redaction ran: no body in the log ---------------------------------------------------------


async def test_a_request_refused_before_or_by_redaction_is_logged_without_its_body(
    redis_url: str, redis_prefix: str, chdb_url: str, tmp_path: Path
) -> None:
    redact = RedactConfig(actions={"US_SSN": "block"})
    async with (
        gateway(
            redis_url, redis_prefix, chdb_url, tmp_path, redact=redact, limits=Limits(requests_per_minute=3)
        ) as (gw, stores),
        httpx.AsyncClient(base_url=gw.base_url, headers=HEADERS, timeout=60) as client,
    ):

        def chat(role: str, text: str) -> dict[str, Any]:
            return {"model": "gpt-4o-mini", "messages": [{"role": role, "content": text}]}

        ok = await client.post(CHAT, json=chat("user", f"Mail {email('ok')}"))
        role = await client.post(CHAT, json=chat("User", f"Mail {email('role')}"))
        blocked = await client.post(
            CHAT, json=chat("user", f"My SSN is 536-22-1234, mail {email('blocked')}")
        )
        budget = await client.post(CHAT, json=chat("user", f"Mail {email('budget')}"))
    assert [r.status_code for r in (ok, role, blocked, budget)] == [200, 400, 422, 429]
    assert role.json()["error"]["param"] == "messages[0].role"
    assert "system, developer, user, assistant, tool, function" in role.json()["error"]["message"]
    rows = {row["status"]: row for row in stores.log_rows()}
    assert sorted(rows) == [200, 400, 422, 429]
    assert "<EMAIL_ADDRESS_1>" in rows[200]["request_body"]  # a redacted body is logged
    for status in (400, 422):
        assert rows[status]["request_body"] == "", f"the {status} row holds the client's raw body"
    # the budget refuses once the cache has looked (it might have been a hit), after redaction: the
    # row may hold the body as redaction left it, never the client's
    refused_body = rows[429]["request_body"]
    assert refused_body == "" or "Mail <EMAIL_ADDRESS_1>" in refused_body, refused_body
    for row in rows.values():
        text = clean(orjson.dumps(row, default=str))
        assert "garcia" not in text
        assert "536-22-1234" not in text
    assert rows[422]["pii_entities"] == {"US_SSN": 1, "EMAIL_ADDRESS": 1}
    assert len(gw.fake.requests) == 1
