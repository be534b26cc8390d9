"""PII redaction: Presidio finds it, placeholders replace it upstream, the answer gets it back.

```python
from asgi_aigw.redact import RedactConfig, RedactMiddleware

app = RedactMiddleware(app, config=RedactConfig(actions={"US_SSN": "block"}))
```

See docs/redaction.md.
"""

from .config import DEFAULT_ENTITIES, Action, RedactConfig, RegexPattern, RegexRecognizerConfig
from .middleware import PIIBlocked, RedactionUnavailable, RedactMiddleware
from .placeholders import PlaceholderMap
from .scanner import Finding, Scanner

__all__ = [
    "DEFAULT_ENTITIES",
    "Action",
    "Finding",
    "PIIBlocked",
    "PlaceholderMap",
    "RedactConfig",
    "RedactMiddleware",
    "RedactionUnavailable",
    "RegexPattern",
    "RegexRecognizerConfig",
    "Scanner",
]
