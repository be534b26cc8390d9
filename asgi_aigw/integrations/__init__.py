"""Serve the gateway from inside a framework's own router, after the app's own authentication.

One framework-neutral core (:class:`GatewayEndpoint`) and a thin adapter per framework, each in its own
module so importing one never imports another framework: :mod:`asgi_aigw.integrations.django`
(``gateway_urls``, ``GatewayView``) and :mod:`asgi_aigw.integrations.fastapi` (``gateway_router``).
"""

from ..kernel.context import Identity
from .core import GatewayEndpoint, GatewayRequest, GatewayResponse, IdentityResult, WithGatewayLifespan

__all__ = [
    "GatewayEndpoint",
    "GatewayRequest",
    "GatewayResponse",
    "Identity",
    "IdentityResult",
    "WithGatewayLifespan",
]
