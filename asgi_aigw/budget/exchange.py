"""One request's answer on its way out through the budget, in one object per request.

It holds an answer back until something is reserved (the gate: the cache inside may answer first),
and drops a refused one (the budget then sends its 429); adds the rate-limit headers; reads the usage
the answer carries (a :class:`~asgi_aigw.kernel.response.ResponseTap` and a :class:`Meter`); and settles
the reservation as soon as the last byte has gone. An exact cache hit whose reservation needs no
settlement (it reserved what a hit costs, unmarked) is neither tapped nor metered: its bytes go
straight out, with the headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from ..kernel.context import RequestContext
from ..kernel.dialects import Dialect
from ..kernel.http import without_headers
from ..kernel.response import ResponseTap, released
from ..kernel.types import Message, Send
from .gate import HIT, WAITING, Pending
from .headers import HEADER_NAMES, ratelimit_headers
from .usage import decode_event


class Meter:
    """What the answer showed on its way out: a JSON body, the SSE events carrying usage (read by the
    dialect's stream meter as they pass), the other events."""

    __slots__ = ("_final_mark", "_usage_mark", "events", "final", "json_body", "reader", "texts")

    def __init__(self, dialect: Dialect) -> None:
        self.json_body: bytes | None = None
        self.reader = dialect.stream_meter()
        # only the events holding these bytes are decoded on their way
        self._usage_mark = dialect.usage_mark
        self._final_mark = dialect.final_mark
        #: The event with the stream's final usage passed (a stream cut before it reported input only).
        self.final = False
        #: Raw events, decoded only if the stream ends early (the text generated so far is counted).
        self.events: list[bytes] = []
        #: Text generated in the events read on their way (those carrying usage).
        self.texts: list[str] = []

    def on_json(self, status: int, body: bytes) -> None:
        if 200 <= status < 300:
            self.json_body = body

    def on_event(self, raw: bytes) -> None:
        if self._usage_mark in raw:
            self.texts.append(self.reader.feed(*decode_event(raw)))
            if self._final_mark in raw and self.reader.usage is not None:
                self.final = True
        else:
            self.events.append(raw)


#: How the budget settles a request: ``(ctx, pending, prompt estimate, model, tap, meter)``.
Settle = Callable[[RequestContext, Pending, int, "str | None", ResponseTap, Meter], Coroutine[Any, Any, None]]
#: Runs a settlement in a task of its own (one whose request was cancelled while it ran).
SettleLater = Callable[[Coroutine[Any, Any, None]], None]


class Exchange:
    """The ``send`` the budget hands the app for one request, and its settlement."""

    __slots__ = (
        "_ctx",
        "_direct",
        "_gated",
        "_headers",
        "_later",
        "_model",
        "_pending",
        "_prompt",
        "_send",
        "_settle",
        "_settled",
        "complete",
        "meter",
        "started",
        "tap",
    )

    def __init__(
        self,
        settle: Settle,
        later: SettleLater,
        ctx: RequestContext,
        pending: Pending,
        prompt: int,
        model: str | None,
        *,
        gated: bool,
        headers: bool,
        send: Send,
    ) -> None:
        self._settle = settle
        self._later = later
        self._ctx = ctx
        self._pending = pending
        self._prompt = prompt
        self._model = model
        self._gated = gated
        self._headers = headers
        self._send = send
        self._settled = False
        #: The answer goes straight out (a hit with nothing to settle), not through the tap.
        self._direct = False
        self.tap: ResponseTap | None = None
        self.meter: Meter | None = None
        #: The status line, and the last body message, have gone to the client.
        self.started = False
        self.complete = False

    async def send(self, message: Message) -> None:
        """The app's ``send``: gated, then tapped (or straight out for a hit), then headed and settled."""
        pending = self._pending
        kind = message["type"]
        if kind == "http.response.start":
            if self._gated and pending.state == WAITING:
                # a layer between the budget and the cache answered: reserve for it first
                await pending.ensure()
            if pending.state == HIT and pending.marker is None and not pending.writes:
                self._direct = True
        if self._gated and not pending.admitted:
            return  # refused: held back, the budget sends its refusal instead
        if self._direct:
            if kind == "http.response.start":
                await self._out(message)
            elif kind == "http.response.body" and not message.get("more_body", False):
                self.complete = True
                await self._send(message)
                await self.settle()
            else:
                await self._send(message)
            return
        tap = self.tap if self.tap is not None else self._tap()
        await tap(message)

    async def settle(self) -> None:
        """Replace the reservation by what the answer cost, once (even if this task is being cancelled:
        the reservation must not outlive the request)."""
        if self._settled:
            return
        self._settled = True
        pending = self._pending
        if pending.state == HIT and pending.marker is None and not pending.writes:
            # the lookup reserved exactly what a hit costs (no tokens, no money), unmarked
            self._ctx.cost = 0.0
            return
        tap = self.tap if self.tap is not None else self._tap()
        assert self.meter is not None
        args = (self._ctx, pending, self._prompt, self._model, tap, self.meter)
        if pending.marker is None and pending.held is not None:
            # a reservation without a token: a settlement that may have landed must not be sent again,
            # so this one is shielded (from an anyio scope's cancellation; a task's own cancel() still
            # reaches it)
            with anyio.CancelScope(shield=True):
                await self._settle(*args)
            return
        try:
            await self._settle(*args)
        except asyncio.CancelledError:
            # cancelled while settling (a client gone, a server shutting down, from asyncio or from an
            # anyio scope alike): settled again in a task of its own, which the reservation's token
            # makes harmless if this one landed. Cheaper than a shield on every request (about 5 µs).
            self._later(self._settle(*args))
            raise

    def release(self) -> None:
        """Let go of the tap, whose ``send`` is this object's (a cycle per request otherwise, freed only
        by the garbage collector)."""
        if self.tap is not None:
            self.tap.release()
        self._send = released

    def _tap(self) -> ResponseTap:
        meter = self.meter = Meter(self._pending.dialect)
        self.tap = ResponseTap(self._after_tap, on_json=meter.on_json, on_event=meter.on_event)
        return self.tap

    async def _after_tap(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._out(message)
            return
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        if last:
            self.complete = True
        await self._send(message)
        if last:
            # the answer is complete: settle now, not when inner layers finish their own work after
            # it, so the next request sees the real figures
            await self.settle()

    async def _out(self, start: Message) -> None:
        """The status line, with the reservation's rate-limit headers (replacing same-named ones)."""
        self.started = True
        reservation = self._pending.reservation
        if self._headers and reservation is not None:
            pending = self._pending
            extra = ratelimit_headers(pending.slots, reservation.used, reservation.limits, pending.now)
            if extra:
                headers = without_headers(start.get("headers", ()), HEADER_NAMES)
                headers.extend(extra)
                start = {**start, "headers": headers}
        await self._send(start)
