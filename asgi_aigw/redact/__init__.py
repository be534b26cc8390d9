"""PII redaction: Presidio finds it, placeholders replace it upstream, the answer gets it back.

```python
from asgi_aigw.redact import RedactConfig, RedactMiddleware

app = RedactMiddleware(app, config=RedactConfig(actions={"US_SSN": "block"}))
```

See docs/redaction.md.
"""

from .config import DEFAULT_ENTITIES, Action, RedactConfig, RegexPattern, RegexRecognizerConfig
from .middleware import PIIBlocked, RedactionUnavailable, RedactMiddleware

__all__ = [
    "DEFAULT_ENTITIES",
    "Action",
    "PIIBlocked",
    "RedactConfig",
    "RedactMiddleware",
    "RedactionUnavailable",
    "RegexPattern",
    "RegexRecognizerConfig",
]
