"""Issue 16's word-order swaps through the real stack: SemanticCacheMiddleware, the runtime's
all-MiniLM-L6-v2 embedder, Qdrant Edge. Each swapped question is near enough to pass the threshold (a hit
with verification off), and the verifier makes it a miss."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from asgi_aigw.cache import CacheConfig
from asgi_aigw.testing import FakeProvider

from .cache_support import cache_stack, chat, post

embedder_module = pytest.importorskip("asgi_aigw.runtime.embedder")

SWAPS = [
    ("What is 10 divided by 2?", "What is 2 divided by 10?"),
    ("What is 10 minus 3?", "What is 3 minus 10?"),
    ("Should I sell stocks and buy bonds?", "Should I buy stocks and sell bonds?"),
    ("Why did the dog chase the cat?", "Why did the cat chase the dog?"),
    ("Should I take aspirin before ibuprofen?", "Should I take ibuprofen before aspirin?"),
    ("Are all cats animals?", "Are all animals cats?"),
    ("Should I rank Python above Java?", "Should I rank Java above Python?"),
    ("Write a poem about love and death", "Write a poem about death and love"),
    # and as the issue wrote them
    ("10 minus 3", "3 minus 10"),
    ("sell stocks and buy bonds", "buy stocks and sell bonds"),
    ("the dog chased the cat", "the cat chased the dog"),
    ("take aspirin before ibuprofen", "take ibuprofen before aspirin"),
    ("all cats are animals", "all animals are cats"),
    ("rank Python above Java", "rank Java above Python"),
    ("love and death", "death and love"),
]

PARAPHRASES = [
    ("How do I reverse a list in Python?", "In Python, how do I reverse a list?"),
    ("What is the difference between TCP and UDP?", "What is the difference between UDP and TCP?"),
    ("Who wrote Hamlet?", "Who is the author of Hamlet?"),
    ("How do I install Python on Windows?", "How do I instal Python on Windows?"),
    ("How do I tie a tie?", "Hey, could you show me how to tie a tie?"),
]


@pytest.fixture(scope="module")
def embedder() -> object:
    return embedder_module.get_embedder()


async def _second_status(embedder: object, tmp_path: Path, first: str, second: str, verify: bool) -> str:
    fake = FakeProvider()
    config = CacheConfig(verify=verify, lookup_timeout=30.0)  # a cold model on a busy machine
    app, cache = cache_stack(fake, config=config, vector=f"qdrant-edge://{tmp_path / 'v'}", embedder=embedder)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
            assert (await post(client, chat(first))).headers["x-aigw-cache"] == "miss"
            response = await post(client, chat(second))
        content = response.json()["choices"][0]["message"]["content"]
        status = response.headers["x-aigw-cache"]
        # a miss answers the question asked, a hit the cached one
        assert content == f"Echo: {first if status.startswith('hit') else second}"
        return status
    finally:
        await cache.aclose()


@pytest.mark.parametrize(("first", "second"), SWAPS)
async def test_a_swapped_question_is_a_miss(
    embedder: object, tmp_path: Path, first: str, second: str
) -> None:
    assert await _second_status(embedder, tmp_path / "on", first, second, verify=True) == "miss"
    # what made it a miss is the verifier: the vectors alone serve the other question's answer
    assert await _second_status(embedder, tmp_path / "off", first, second, verify=False) == "hit-semantic"


@pytest.mark.parametrize(("first", "second"), PARAPHRASES)
async def test_a_true_paraphrase_still_hits(
    embedder: object, tmp_path: Path, first: str, second: str
) -> None:
    assert await _second_status(embedder, tmp_path, first, second, verify=True) == "hit-semantic"
