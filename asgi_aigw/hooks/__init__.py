"""Hooks: the app's own async code at four points of each chat, Messages and Responses request the
router serves (see docs/hooks.md).

```python
from asgi_aigw.hooks import HookRefusal, HookRequest, Hooks

async def guardrail(request: HookRequest) -> None:
    if "forbidden" in str(request.body.get("messages")):
        raise HookRefusal("This topic is not allowed here.", status=403)

router = ProviderRouter(config, hooks=Hooks(before_request=[guardrail]))
```
"""

from .config import HooksConfig
from .registry import AfterHook, BeforeHook, ChunkHook, ErrorHook, Hooks
from .views import HookChunk, HookFailure, HookRefusal, HookRequest, HookResponse

__all__ = [
    "AfterHook",
    "BeforeHook",
    "ChunkHook",
    "ErrorHook",
    "HookChunk",
    "HookFailure",
    "HookRefusal",
    "HookRequest",
    "HookResponse",
    "Hooks",
    "HooksConfig",
]
