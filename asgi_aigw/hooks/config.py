"""The ``router.hooks`` section: hooks named by ``"package.module:callable"`` path."""

from __future__ import annotations

from pydantic import Field

from ..kernel.config import ConfigSection


class HooksConfig(ConfigSection):
    """Async callables the router calls at four points of each chat, Messages and Responses request
    (see docs/hooks.md), each named ``"package.module:callable"`` and run in the order listed, after
    the hooks given in code."""

    #: Before the provider call: may return a changed body, or refuse with ``HookRefusal``.
    before_request: list[str] = Field(default_factory=list)
    #: After a complete answer (a JSON answer, or a stream's last event) has gone to the client.
    after_response: list[str] = Field(default_factory=list)
    #: After the router answered with an error (a refusal, an invalid request, an upstream failure).
    on_error: list[str] = Field(default_factory=list)
    #: For each event of a streamed answer, after it went to the client (read-only).
    on_chunk: list[str] = Field(default_factory=list)
