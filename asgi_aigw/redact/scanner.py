"""Find PII in texts: Presidio in a worker thread, results cached per text.

A conversation is re-sent whole each turn, so each message is analysed once: the results (entity
type, offsets, score; never the text) are kept in a bounded LRU under a keyed BLAKE2 hash of the
message. The key is random per process, so the cache holds nothing from which a short value (an
SSN sent alone) could be recovered by hashing guesses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import anyio
import anyio.to_thread

from ..kernel.optional import require
from .config import RedactConfig
from .engine import NER_ENTITIES, build_analyzer, name_segments, possible_entities, supported_entities
from .normalize import normalise

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

logger = logging.getLogger("asgi_aigw.redact")

#: Texts up to this long get the cheap "nothing to find" check on the event loop.
INLINE_LIMIT = 4096


class Finding(NamedTuple):
    """One piece of PII: its type and where it is (never its value)."""

    entity_type: str
    start: int
    end: int
    score: float


class AnalysisCache:
    """A bounded LRU of findings per text, keyed by a keyed hash of the tenant and the text: a text found
    here skips the analysis (milliseconds with NER), and that must not tell a tenant that another one
    sent the same text."""

    __slots__ = ("_data", "_key", "hits", "maxsize", "misses")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[bytes, tuple[Finding, ...]] = OrderedDict()
        self._key = os.urandom(32)
        self.hits = 0
        self.misses = 0

    def key(self, text: str, tenant: str = "") -> bytes:
        digest = hashlib.blake2b(key=self._key, digest_size=16)
        digest.update(tenant.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")  # tenant ids cannot hold it: ("a", "b...") and ("ab", "...") differ
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.digest()

    def get(self, key: bytes) -> tuple[Finding, ...] | None:
        found = self._data.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return found

    def put(self, key: bytes, findings: tuple[Finding, ...]) -> None:
        if self.maxsize <= 0:
            return
        self._data[key] = findings
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class Scanner:
    """Analyses texts with a tuned Presidio engine, off the event loop, with a cache.

    ``analyzer`` is the shared engine (``asgi_aigw.runtime.pii.get_analyzer``) or a callable
    returning it; it is built lazily, in a worker thread, on first use. The tuned engine derived
    from it (see :mod:`asgi_aigw.redact.engine`) does the work.
    """

    def __init__(
        self,
        config: RedactConfig,
        analyzer: AnalyzerEngine | Callable[[], AnalyzerEngine] | None = None,
    ) -> None:
        self.config = config
        self._source = analyzer
        self._engine: AnalyzerEngine | None = None
        self._entities: list[str] = []
        self._build_lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(config.threads)
        self.cache = AnalysisCache(config.cache_size)
        #: Texts handed to Presidio (cache misses that were analysed).
        self.analyzed = 0

    # -- the engine ------------------------------------------------------------------------------

    def engine(self) -> AnalyzerEngine:
        """The tuned engine, built on first use (blocking: call from a worker thread)."""
        if self._engine is None:
            with self._build_lock:
                if self._engine is None:
                    engine = self._regex_engine() or build_analyzer(self._base(), self.config)
                    available = supported_entities(engine, self.config.language)
                    self._entities = [e for e in self.config.scanned_entities() if e in available]
                    missing = set(self.config.scanned_entities()) - available
                    if self.config.regex_only:
                        missing -= NER_ENTITIES  # documented: regex-only finds no names
                    if missing:
                        logger.warning("No recognizer for %s: not looked for.", sorted(missing))
                    self._engine = engine
        return self._engine

    def _regex_engine(self) -> AnalyzerEngine | None:
        """The regex-only engine that needs neither Presidio nor spaCy (see
        :mod:`asgi_aigw.redact.patterns`), when no analyzer was injected and it covers the config."""
        if self._source is not None:
            return None
        from ..runtime.pii import keep_tldextract_offline
        from ..runtime.tokens import runtime_config
        from .patterns import build_regex_analyzer, supports

        runtime = runtime_config()
        settings = runtime.analyzer
        # the shared engine's own recognizer filter or language would change what Presidio finds
        if (
            not supports(self.config)
            or settings.entities is not None
            or settings.language != self.config.language
        ):
            return None
        keep_tldextract_offline(runtime)
        tldextract: Any = require("tldextract", "pii")
        return cast("AnalyzerEngine | None", build_regex_analyzer(self.config, tldextract.extract))

    def _base(self) -> AnalyzerEngine:
        source = self._source
        if source is None:
            from .runtime import default_analyzer

            return default_analyzer(self.config)
        if callable(source) and not hasattr(source, "analyze"):
            return source()
        return source  # type: ignore[return-value]

    async def warm_up(self) -> None:
        """Build the engine now (in a worker thread) instead of on the first request."""
        await anyio.to_thread.run_sync(self.engine, limiter=self._limiter)

    # -- analysis -------------------------------------------------------------------------------

    def analyze_sync(self, text: str) -> tuple[Finding, ...]:
        """Analyse one text (blocking, uncached): detection runs on its normalised form (see
        :mod:`asgi_aigw.redact.normalize`), findings are spans of ``text`` itself."""
        normal = normalise(text)
        if normal is None:
            return self._analyze_normal(text)
        found = self._analyze_normal(normal.text)
        spans = (Finding(f.entity_type, *normal.original_span(f.start, f.end), f.score) for f in found)
        return tuple(sorted(spans))

    def _analyze_normal(self, text: str) -> tuple[Finding, ...]:
        engine = self.engine()
        entities = possible_entities(text, self._entities)
        self.analyzed += 1
        if not entities:
            return ()
        config = self.config
        results = engine.analyze(
            text=text,
            language=config.language,
            entities=entities,
            score_threshold=config.score_threshold,
            allow_list=config.allow_list or None,
            allow_list_match=config.allow_list_match,
        )
        return tuple(
            sorted(Finding(r.entity_type, r.start, r.end, float(r.score)) for r in results if r.end > r.start)
        )

    def certainly_clean(self, text: str) -> bool:
        """True when the cheap checks alone show ``text`` has nothing to find: no recognizer's
        necessary condition holds and (with NER) no sentence could hold a name. Regular expressions
        over at most ``INLINE_LIMIT`` characters (tens of microseconds), so it runs on the event loop
        and saves the worker-thread hop for the commonest text, one with no PII at all."""
        engine = self._engine
        if engine is None or len(text) > INLINE_LIMIT:
            return False
        normal = normalise(text)
        if normal is not None:
            text = normal.text
        remaining = possible_entities(text, self._entities)
        if any(entity not in NER_ENTITIES for entity in remaining):
            return False
        if remaining:
            nlp: Any = engine.nlp_engine
            if nlp.ner is not None and (not nlp.gate or name_segments(text, nlp.stop_words)):
                return False
        return True

    def _analyze_batch(self, texts: Sequence[str]) -> list[tuple[Finding, ...]]:
        return [self.analyze_sync(text) for text in texts]

    async def analyze(self, texts: Sequence[str]) -> list[tuple[Finding, ...]]:
        """Findings for each text, uncached (answers are seen once), in a worker thread."""
        return await anyio.to_thread.run_sync(self._analyze_batch, texts, limiter=self._limiter)

    async def scan(self, texts: Sequence[str], tenant: str = "") -> list[tuple[Finding, ...]]:
        """Findings for each text: those the tenant's requests had recently at once, the rest in one
        worker-thread call."""
        out: list[tuple[Finding, ...] | None] = []
        todo: dict[bytes, list[int]] = {}
        todo_texts: list[str] = []
        for index, text in enumerate(texts):
            if len(text) < self.config.min_length:
                out.append(())
                continue
            key = self.cache.key(text, tenant)
            cached = self.cache.get(key)
            if cached is None and self.certainly_clean(text):
                self.analyzed += 1
                cached = ()
                self.cache.put(key, cached)
            out.append(cached)
            if cached is None:
                if key not in todo:
                    todo[key] = []
                    todo_texts.append(text)
                todo[key].append(index)
        if todo_texts:
            results = await anyio.to_thread.run_sync(self._analyze_batch, todo_texts, limiter=self._limiter)
            for (key, indexes), findings in zip(todo.items(), results, strict=True):
                self.cache.put(key, findings)
                for index in indexes:
                    out[index] = findings
        return [findings or () for findings in out]  # (None only for texts left to the thread)


def describe(engine: Any) -> str:
    """The recognizers of an engine, for logs and the benchmark."""
    return ", ".join(sorted(r.name for r in engine.registry.recognizers))
