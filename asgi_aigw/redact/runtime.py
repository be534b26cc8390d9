"""Where the shared Presidio engine comes from: the offline runtime's analyzer factory."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from .._optional import require
from .config import RedactConfig

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine


def default_analyzer(config: RedactConfig, runtime: Any = None) -> AnalyzerEngine:
    """The process-wide engine of ``asgi_aigw.runtime.pii.get_analyzer`` (built offline, once)."""
    require("presidio_analyzer", "pii")
    pii = require("asgi_aigw.runtime.pii", "pii")
    runtime_config = runtime
    if runtime_config is None:
        runtime_config = require("asgi_aigw.runtime.config", "pii").RuntimeConfig()
    get_analyzer = pii.get_analyzer
    if "regex_only" in inspect.signature(get_analyzer).parameters:
        return get_analyzer(runtime_config, regex_only=config.regex_only)  # type: ignore[no-any-return]
    return get_analyzer(runtime_config)  # type: ignore[no-any-return]
