"""What a dialect's routes use of the router: one small interface, so the route modules (``messages``,
``responses``) never reach into :class:`~asgi_aigw.router.ProviderRouter` itself.

A route builds each attempt's upstream request (:data:`BuildRequest`) and turns the upstream's answer
into the client's (:data:`Deliver`); the router's :class:`RouteKit` runs the attempts (retries,
fallbacks, cooldowns, client disconnects) and sends answers the way every route does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ..kernel.body import JSONBody
from ..kernel.context import RequestContext
from ..kernel.errors import GatewayError
from ..kernel.types import Receive, Scope, Send
from ..providers import Deployment, ProviderAdapter, TranslatedResponse, UpstreamRequest
from .registry import ModelRegistry, ResolvedModel
from .upstream import UpstreamResponse

#: Builds one attempt's upstream request for a deployment.
BuildRequest = Callable[[Deployment, ProviderAdapter], UpstreamRequest]
#: Turns one upstream response into the client's answer (``deadline``: when the first chunk is due).
Deliver = Callable[[Deployment, ProviderAdapter, UpstreamResponse, "float | None"], Awaitable[None]]
#: Reads a non-2xx upstream answer into the error for the client (default: the adapter's ``error``).
ReadError = Callable[[Deployment, ProviderAdapter, int, bytes, dict[str, str]], GatewayError]


class Progress:
    """What has gone to the client so far (decides between a status code and an SSE error event)."""

    __slots__ = ("finished", "started")

    def __init__(self) -> None:
        self.started = False
        self.finished = False


class RouteCall(NamedTuple):
    """One request as a route gets it: the ASGI triple, its context, its parsed body, and what has
    gone to the client so far."""

    scope: Scope
    receive: Receive
    send: Send
    ctx: RequestContext
    body: JSONBody
    progress: Progress


#: Attempts deployments until one delivers (``ReadError``: ``None`` for the adapter's), cancelling
#: everything if the client leaves.
Route = Callable[
    [Receive, RequestContext, Progress, ResolvedModel, BuildRequest, Deliver, "ReadError | None"],
    Awaitable[None],
]
#: The whole body of a one-shot answer.
Read = Callable[[Deployment, UpstreamResponse], Awaitable[bytes]]
#: Sends a one-shot answer.
SendTranslated = Callable[[Send, RequestContext, Deployment, TranslatedResponse, Progress], Awaitable[None]]
#: Relays a stream through a translator as its events complete (``deadline``: when the first is due).
RelayStream = Callable[
    [Send, RequestContext, Deployment, UpstreamResponse, Any, Progress, "float | None"], Awaitable[None]
]


class RouteKit:
    """The router's routing as a dialect's routes use it.

    - ``registry``: resolves a model name to its deployments;
    - ``route``: attempts deployments until one delivers (:data:`Route`);
    - ``read``, ``send_translated``: a one-shot answer read whole, and sent;
    - ``relay_stream``: a stream relayed through a translator (:data:`RelayStream`).
    """

    __slots__ = ("read", "registry", "relay_stream", "route", "send_translated")

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        route: Route,
        read: Read,
        send_translated: SendTranslated,
        relay_stream: RelayStream,
    ) -> None:
        self.registry = registry
        self.route = route
        self.read = read
        self.send_translated = send_translated
        self.relay_stream = relay_stream
