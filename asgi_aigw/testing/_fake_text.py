"""FakeProvider's deterministic text: token counts, streamed pieces, embeddings from a hash."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECE = re.compile(r"\s*\S+")


def count_tokens(text: str) -> int:
    """The fake's token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def split_pieces(text: str) -> list[str]:
    """The answer as streamed: one piece per word, with its leading whitespace (one token each)."""
    return _PIECE.findall(text) or [text]


def fake_embedding(text: str, dimensions: int = 64) -> list[float]:
    """A deterministic unit vector for ``text`` (equal texts, equal vectors; nothing semantic)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embedding_size(requested: Any) -> int:
    """The length of the fake's vectors: the ``dimensions`` a request asked for, else 64."""
    return requested if isinstance(requested, int) and requested > 0 else 64


def embedding_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


#: One generated token's log probability and its ``top`` alternatives: ``(token, logprob, [(token,
#: logprob), ...])``.
TokenLogprob = tuple[str, float, list[tuple[str, float]]]


def fake_logprobs(pieces: list[str], top: int) -> list[TokenLogprob]:
    """The fake's log probability of each streamed piece (one token each), deterministic: the first
    token is certain (0.0, which Gemini's proto3 JSON leaves out), the others lose a quarter per
    character past the first, at most 1.0. The ``top`` alternatives are the token itself, then
    ``<token>_1``, ``<token>_2``..., each 1.5 less likely than the one before."""
    out: list[TokenLogprob] = []
    for position, piece in enumerate(pieces):
        logprob = 0.0 if position == 0 else -min(0.25 * len(piece), 1.0)
        alternatives = [(piece if k == 0 else f"{piece}_{k}", logprob - 1.5 * k) for k in range(top)]
        out.append((piece, logprob, alternatives))
    return out
