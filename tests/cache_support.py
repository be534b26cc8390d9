"""Helpers for the cache tests: a small deterministic embedder and a chat app stack around FakeProvider."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from asgi_aigw.cache import CacheConfig, SemanticCacheMiddleware
from asgi_aigw.cache.verify import _STOPWORDS, _TOKEN, _stem, normalise
from asgi_aigw.kernel.context import ensure_context
from asgi_aigw.router import ProviderRouter
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

from .support import FAKE_URL, fake_config

#: A question and its paraphrase: the same key words, so the semantic layer takes one for the other.
QUESTION = "How do I undo the last git commit?"
PARAPHRASE = "How can I undo my last commit in git?"
#: The headers that say who answered, stored with an answer and replayed on a hit.
WHO = ("x-aigw-provider", "x-aigw-model", "x-aigw-deployment")


class BagOfWordsEmbedder:
    """Unit vectors from the hashed content words of a text: questions sharing their content words are
    close, others far. Deterministic and instant; it stands in for a sentence model where the test is
    about the middleware, not the model. Runs in a worker thread like a real embedder."""

    dimension = 128

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def _vector(self, text: str) -> list[float]:
        values = [0.0] * self.dimension
        for token in _TOKEN.findall(normalise(text)):
            if token in _STOPWORDS:
                continue
            digest = hashlib.sha256(_stem(token).encode()).digest()
            values[digest[0] % self.dimension] += 1.0 if digest[1] % 2 else -1.0
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return [v / norm for v in values]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the embedder was told to fail")
        return await asyncio.to_thread(lambda: [self._vector(t) for t in texts])


class TenantFromHeader:
    """A stand-in for TenantMiddleware: the tenant comes from ``x-tenant``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope, ctx = ensure_context(scope)
            for key, value in scope.get("headers", ()):
                if key == b"x-tenant":
                    ctx.tenant_id = value.decode()
        await self.app(scope, receive, send)


def cache_stack(
    fake: FakeProvider, *, config: CacheConfig | None = None, **options: Any
) -> tuple[Any, SemanticCacheMiddleware]:
    """TenantFromHeader -> SemanticCacheMiddleware -> ProviderRouter -> FakeProvider."""
    router = ProviderRouter(
        fake_config("gpt-4o-mini", "gpt-4o").router,
        transports={FAKE_URL: StreamingASGITransport(fake)},
        env={},
    )
    # URLs go into the configuration, store objects are injected; exact=None: the configuration's
    # store, vector=None: no semantic layer
    config = config or CacheConfig()
    exact = options.pop("exact", "memory://")
    vector = options.pop("vector", "memory://")
    if isinstance(exact, str):
        config, exact = config.model_copy(update={"store": exact}), None
    if vector is None or isinstance(vector, str):
        config = config.model_copy(update={"vector_store": None if vector in (None, "none") else vector})
        vector = None
    options.setdefault("embedder", BagOfWordsEmbedder())
    cache = SemanticCacheMiddleware(router, config=config, exact=exact, vector=vector, **options)
    return TenantFromHeader(cache), cache


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}], **extra}


async def post(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=body, headers=headers)


# -- the Messages dialect ------------------------------------------------------------------------------

#: The headers ProviderRouter sets on every answer, which a hit must replay.
WHO_HEADERS = (b"x-aigw-provider", b"x-aigw-model", b"x-aigw-deployment")


class WhoAnswered:
    """Sets the router's who-answered headers on an app's answers (FakeProvider served directly, as the
    router's Messages route would serve it)."""

    def __init__(self, app: Any, provider: str = "anthropic", deployment: str = "claude-primary") -> None:
        self.app = app
        self.values = [provider.encode(), b"claude-sonnet-4-5", deployment.encode()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_who(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *zip(WHO_HEADERS, self.values, strict=True)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_who if scope["type"] == "http" else send)


def messages_body(question: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


#: Sent by every Anthropic SDK, and required by the real API.
ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}


async def post_messages(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post("/v1/messages", json=body, headers={**ANTHROPIC_VERSION, **headers})


def edge_cache(
    inner: Any, redis_url: str, redis_prefix: str, tmp_path: Path, embedder: object, **config: Any
) -> tuple[Any, SemanticCacheMiddleware]:
    """TenantFromHeader -> SemanticCacheMiddleware (Redis, Qdrant Edge, ``embedder``) -> ``inner``; and
    the cache layer."""
    cache = SemanticCacheMiddleware(
        inner,
        config=CacheConfig(
            store=redis_url,
            key_prefix=redis_prefix,
            vector_store=f"qdrant-edge://{tmp_path / 'vectors'}",
            **config,
        ),
        embedder=embedder,  # type: ignore[arg-type]
    )
    return TenantFromHeader(cache), cache
