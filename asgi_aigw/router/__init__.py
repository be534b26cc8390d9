"""The ProviderRouter ASGI app and its configuration.

```python
from asgi_aigw.router import ProviderRouter, RouterConfig

router = ProviderRouter(RouterConfig(models=[...]))  # mount it at /ai
```
"""

from .app import ProviderRouter
from .config import (
    CooldownConfig,
    DeploymentConfig,
    ModelConfig,
    ProviderSettings,
    RetryConfig,
    RouterConfig,
    Timeouts,
)

__all__ = [
    "CooldownConfig",
    "DeploymentConfig",
    "ModelConfig",
    "ProviderRouter",
    "ProviderSettings",
    "RetryConfig",
    "RouterConfig",
    "Timeouts",
]
