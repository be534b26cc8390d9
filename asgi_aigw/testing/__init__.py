"""Test helpers for applications that use the gateway: a fake provider and ways to serve it.

```python
from asgi_aigw.testing import FakeProvider, StreamingASGITransport

fake = FakeProvider()
router = ProviderRouter(config.router, transports={"http://fake/v1": StreamingASGITransport(fake)})
```
"""

from ._fake_text import fake_embedding
from .fake_provider import FakeBehaviour, FakeProvider, ReceivedRequest
from .server import ServerThread, serve
from .transport import StreamingASGITransport

__all__ = [
    "FakeBehaviour",
    "FakeProvider",
    "ReceivedRequest",
    "ServerThread",
    "StreamingASGITransport",
    "fake_embedding",
    "serve",
]
