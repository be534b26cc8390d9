"""Plain-ASCII text through a BERT WordPiece tokenizer, word by word from a memo: the ids the
``tokenizers`` library gives, in a few microseconds where the library takes some 35 (most of a
question's embedding). Questions repeat their words, so a word is split into pieces once.

Only the pipeline of BERT's uncased tokenizers is read this way (the embedding models': a lower-casing
``BertNormalizer``, ``BertPreTokenizer``, ``WordPiece``); any other tokenizer, and any text with a
character outside printable ASCII, tabs and line breaks, goes through the library.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Text this module reads: printable ASCII, tabs and line breaks. The library drops other control
#: characters (joining the words around them) and folds accents: those texts go through it.
_PLAIN = re.compile(r"[\t\n\r\x20-\x7e]*")
#: BertPreTokenizer on lower-cased ASCII: runs of letters and digits, and each punctuation mark alone.
_WORDS = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")
#: Words kept with their pieces; the memo starts again when full (a bound on its memory).
MEMO_WORDS = 16_384


class WordPieceMemo:
    """The ids of plain-ASCII text (:meth:`ids`), as the tokenizer it was made from gives them."""

    def __init__(
        self, vocab: dict[str, int], unknown: int, prefix: str, max_chars: int, added: tuple[str, ...] = ()
    ) -> None:
        self.vocab = vocab
        self.unknown = unknown
        self.prefix = prefix
        self.max_chars = max_chars
        #: The longest piece: no longer one is looked up.
        self.longest = max((len(piece.removeprefix(prefix)) for piece in vocab), default=0)
        #: Tokens the library finds in the text itself ("[CLS]", "[MASK]"), lower-cased: a text holding
        #: one goes through the library.
        self.added = tuple(token.lower() for token in added)
        self._memo: dict[str, list[int]] = {}

    @classmethod
    def of(cls, tokenizer: Any) -> WordPieceMemo | None:
        """The memo of a ``tokenizers.Tokenizer`` with BERT's uncased pipeline, else None."""
        try:
            spec = json.loads(tokenizer.to_str())
            normalizer, pre, model = spec["normalizer"], spec["pre_tokenizer"], spec["model"]
            bert = (
                normalizer.get("type") == "BertNormalizer"
                and normalizer.get("lowercase") is True
                and normalizer.get("clean_text") is True
                and pre.get("type") == "BertPreTokenizer"
                and model.get("type") == "WordPiece"
            )
            if not bert:
                return None
            vocab = {str(k): int(v) for k, v in model["vocab"].items()}
            return cls(
                vocab,
                vocab[model["unk_token"]],
                str(model["continuing_subword_prefix"]),
                int(model["max_input_chars_per_word"]),
                tuple(str(token["content"]) for token in spec.get("added_tokens") or ()),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def ids(self, text: str) -> list[int] | None:
        """The ids of ``text`` with no special token, or None when it is not plain ASCII."""
        if not text.isascii() or _PLAIN.fullmatch(text) is None:
            return None
        lower = text.lower()
        if any(token in lower for token in self.added):
            return None
        memo = self._memo
        out: list[int] = []
        for word in _WORDS.findall(lower):
            pieces = memo.get(word)
            if pieces is None:
                pieces = self._pieces(word)
                if len(memo) >= MEMO_WORDS:
                    memo.clear()
                memo[word] = pieces
            out += pieces
        return out

    def _pieces(self, word: str) -> list[int]:
        """WordPiece: the longest piece of the vocabulary at each point, left to right; a word that
        cannot be cut so (or is too long) is the unknown token, whole."""
        if len(word) > self.max_chars:
            return [self.unknown]
        vocab, prefix = self.vocab, self.prefix
        pieces: list[int] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self.longest)
            while end > start:
                found = vocab.get(word[start:end] if start == 0 else prefix + word[start:end])
                if found is not None:
                    pieces.append(found)
                    break
                end -= 1
            else:
                return [self.unknown]
            start = end
        return pieces
