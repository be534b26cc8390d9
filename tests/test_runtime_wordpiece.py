"""The static embedder's tokenizer fast path gives the ids the tokenizers library gives, or none."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from asgi_aigw.runtime.assets import find_embedding_model_dir
from asgi_aigw.runtime.config import RuntimeConfig
from asgi_aigw.runtime.static_embedder import MAX_TOKENS
from asgi_aigw.runtime.wordpiece import MEMO_WORDS, WordPieceMemo

tokenizers = pytest.importorskip("tokenizers")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    model_dir = find_embedding_model_dir(RuntimeConfig())
    if model_dir is None:
        pytest.skip("the embedding model is not installed")
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # as the static embedder sets it up (the file pads and truncates to 128 tokens)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer


@pytest.fixture(scope="module")
def memo(tokenizer: Any) -> WordPieceMemo:
    memo = WordPieceMemo.of(tokenizer)
    assert memo is not None, "the default model's tokenizer is BERT's uncased one"
    return memo


def _library(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def _texts() -> list[str]:
    pairs = [json.loads(line) for line in (DATA / "cache_pairs.jsonl").read_text().splitlines()]
    texts = [pair[side] for pair in pairs for side in ("a", "b")]
    rnd = random.Random(7)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\n\r"
    for _ in range(3000):
        texts.append("".join(rnd.choice(alphabet) for _ in range(rnd.randrange(60))))
        words = (
            "".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randrange(1, 30))) for _ in range(5)
        )
        texts.append(" ".join(words))
    return [*texts, "", "   ", "x" * 100, "x" * 101, "don't stop-believing!!", "C++ vs. C#: 3.14?"]


def test_plain_ascii_gets_the_library_s_ids(tokenizer: Any, memo: WordPieceMemo) -> None:
    texts = _texts()
    assert all(memo.ids(text) == _library(tokenizer, text) for text in texts)
    # again, every word now from the memo
    assert all(memo.ids(text) == _library(tokenizer, text) for text in texts)


@pytest.mark.parametrize(
    "text",
    [
        "naïve café",  # accents: the library folds them
        "a\x0bb",  # a control character: the library drops it and joins the words
        "a\x00b",
        "Tell me about [CLS] tokens",  # a special token written in the text is that token
        "what does [mask] mean",
        "東京",
    ],
)
def test_other_text_goes_through_the_library(memo: WordPieceMemo, text: str) -> None:
    assert memo.ids(text) is None


def test_a_full_memo_starts_again(tokenizer: Any, memo: WordPieceMemo) -> None:
    words = [f"w{n}" for n in range(MEMO_WORDS + 10)]
    for word in words:
        assert memo.ids(word) == _library(tokenizer, word)
    assert len(memo._memo) <= MEMO_WORDS


def test_only_bert_s_uncased_pipeline_is_read_so(tokenizer: Any) -> None:
    spec = json.loads(tokenizer.to_str())
    spec["normalizer"]["lowercase"] = False  # a cased model: its ids depend on the case
    cased = tokenizers.Tokenizer.from_str(json.dumps(spec))
    assert WordPieceMemo.of(cased) is None
    assert WordPieceMemo.of(object()) is None
