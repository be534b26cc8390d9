"""Where the shared Presidio engine comes from: the offline runtime's analyzer factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernel.optional import require
from ..runtime.tokens import runtime_config
from .config import RedactConfig

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine


def default_analyzer(config: RedactConfig) -> AnalyzerEngine:
    """The process-wide engine of ``asgi_aigw.runtime.pii.get_analyzer``, built offline once from the
    process's runtime configuration (``asgi_aigw.runtime.configure``; ``build_app`` sets it). Regex-only
    when either the redact section or the runtime's analyzer settings say so (then no model is loaded)."""
    require("presidio_analyzer", "pii")
    from ..runtime.pii import get_analyzer

    runtime = runtime_config()
    if config.regex_only and not runtime.analyzer.regex_only:
        analyzer = runtime.analyzer.model_copy(update={"regex_only": True})
        runtime = runtime.model_copy(update={"analyzer": analyzer})
    return get_analyzer(runtime)
