"""The static embedder: a text's vector is the mean of its tokens' rows in the static table
(:mod:`.static_table`), normalised. About 13 µs for a question where the transformer takes 2-5 ms
(plain-ASCII text is tokenized by :mod:`.wordpiece`, word by word from a memo; other text by the
tokenizers library, some 20 µs more).

Short texts are embedded inline: that is less CPU than handing them to a thread, and as short as the
gateway's own JSON parsing. Longer ones (and loading the table, which may derive it) run on one worker
thread, so a burst of long prompts takes one core at most and never holds the event loop. The semantic
cache's precision comes from its verification step, not from the vectors; on the labelled pairs the
static vectors keep the model's verified precision and recall (docs/cache.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernel.optional import require
from .assets import find_embedding_model_dir
from .config import RuntimeConfig
from .embed_error import EmbedderError
from .static_table import StaticTableError, find_or_derive, widened
from .wordpiece import WordPieceMemo

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: Characters (all texts of one call) embedded inline; past this a call goes to the worker thread.
#: 2,000 characters take about 150 µs inline.
INLINE_CHARS = 2000
#: Tokens read per text: far past any question, and a bound on the work a huge prompt can cause.
MAX_TOKENS = 8192


class StaticEmbedder:
    """Unit vectors from the static table of the configured model (all-MiniLM-L6-v2 by default)."""

    #: The semantic cache's threshold unless configured: these cosines run lower than the model's, and
    #: 0.70 gave the model's recall at the model's precision on the labelled set (docs/cache.md).
    default_threshold = 0.70

    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self._config = config or RuntimeConfig()
        self._table: NDArray[np.float32] | None = None
        self._tokenizer: Any = None
        #: The tokenizer's fast path for plain-ASCII text (None: every text goes through the tokenizer).
        self._pieces: WordPieceMemo | None = None
        self._fallback = 0
        self._lock = threading.Lock()  # held while loading, which may derive for 25 s
        self._pool_lock = threading.Lock()  # so the event loop never waits on that one
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loading: concurrent.futures.Future[Any] | None = None
        #: Texts embedded inline and on the worker thread.
        self.inline_texts = 0
        self.thread_texts = 0

    @property
    def dimension(self) -> int:
        """The table's width (loading it, on this thread, if not loaded yet)."""
        return int(self.load().shape[1])

    async def probe_dimension(self) -> int:
        table = self._table if self._table is not None else await self._in_thread(self.load)
        return int(table.shape[1])

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        if not texts:
            return []
        if self._table is None:
            await self._loaded()
        if sum(len(text) for text in texts) > INLINE_CHARS:
            self.thread_texts += len(texts)
            vectors: list[list[float]] = await self._in_thread(lambda: self.embed_sync(texts))
            return vectors
        self.inline_texts += len(texts)
        return self.embed_sync(texts)

    async def _loaded(self) -> None:
        """Load the table on the worker thread; while another call is loading it (a first derivation
        takes about 25 s), fail at once: the caller's lookup is a miss, not a wait."""
        loading = self._loading
        if loading is not None and not loading.done():
            raise EmbedderError(
                "The static embedding table is still being loaded (derived from the model once, about "
                "25 s): this text is not embedded."
            )
        if loading is None or loading.exception() is not None:  # not started, or failed: (re)try
            self._loading = loading = self._pool_submit(self.load)
        await asyncio.wrap_future(loading)

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """:meth:`embed` on this thread (CLI, benchmarks, the worker thread)."""
        table = self.load()
        pieces = self._pieces
        out: list[list[float]] = []
        for text in texts:
            ids = pieces.ids(text) if pieces is not None else None
            if ids is None:
                ids = self._tokenizer.encode(text, add_special_tokens=False).ids
            ids = ids[:MAX_TOKENS] or [self._fallback]
            # the sum points where the mean does: the unit vector needs no division by the count
            vector = table.take(ids, axis=0).sum(axis=0)
            norm = float(np.sqrt(np.dot(vector, vector)))
            if norm > 0:
                vector *= 1.0 / norm
            out.append(vector.tolist())
        return out

    def load(self) -> NDArray[np.float32]:
        """The table and tokenizer, loaded (or derived) now if they are not."""
        if self._table is not None:
            return self._table
        with self._lock:
            if self._table is None:
                tokenizers = require("tokenizers", "embed")
                model_dir = find_embedding_model_dir(self._config)
                table = find_or_derive(self._config)
                assert model_dir is not None  # find_or_derive raised otherwise
                tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length=MAX_TOKENS)
                if tokenizer.get_vocab_size() != table.shape[0]:
                    raise StaticTableError(
                        f"The static table has {table.shape[0]} rows but the tokenizer of {model_dir} "
                        f"has {tokenizer.get_vocab_size()} tokens: they are not of the same model."
                    )
                # an empty text has no token: it gets the row of the tokenizer's unknown token
                self._fallback = tokenizer.token_to_id("[UNK]") or 0
                self._pieces = WordPieceMemo.of(tokenizer)
                self._tokenizer = tokenizer
                # float32 (15.6 MB for the default model, mapped from a file its workers share): numpy
                # widens float16 one value at a time, 11 µs of a 16-µs embedding alone; the sums are the
                # same to the last bit. A plain array over the mapped pages: indexing a memmap builds a
                # memmap each time
                self._table = widened(table, self._config).view(np.ndarray)
        return self._table

    @property
    def loaded(self) -> bool:
        return self._table is not None

    def close(self) -> None:
        """Stop the worker thread (a later long text starts another)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    async def _in_thread(self, call: Any) -> Any:
        return await asyncio.wrap_future(self._pool_submit(call))

    def _pool_submit(self, call: Any) -> concurrent.futures.Future[Any]:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="aigw-static-embedder"
                    )
        return self._pool.submit(call)
