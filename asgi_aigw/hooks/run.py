"""The hooks of one request: before-hooks awaited in line (they may change or refuse the request); the
others run in one background task per request, in order, after what they are told about went out, so a
slow hook never holds back an answer or a stream.

Errors inside a hook are logged on ``asgi_aigw.hooks`` and never break the request; only a before-hook
raising :class:`~asgi_aigw.hooks.HookRefusal` (or any gateway error) refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import orjson

from ..kernel.body import JSONBody
from ..kernel.context import BODY_CHANGED_BY_HOOK, RequestContext
from ..kernel.dialects import dialect_for
from ..kernel.errors import GatewayError
from ..kernel.sse import SSEDecoder, parse_event
from .registry import Hooks
from .views import HookChunk, HookFailure, HookRequest, HookResponse

logger = logging.getLogger("asgi_aigw.hooks")

#: ``ctx.extra`` key: the request's :class:`HookRun`.
HOOK_RUN = "hooks.run"
#: The routes hooks run on: the three generation dialects (not embeddings, models or count_tokens).
HOOKED_ROUTES = frozenset({"chat", "messages", "responses"})

#: A queued item: streamed events, or the final view for the after/error hooks.
_Item = tuple[str, Any]


def _name(hook: object) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)


def _latency_ms(ctx: RequestContext) -> float:
    return (time.perf_counter() - ctx.started_perf) * 1000.0


def _overreach(old: dict[str, Any], new: dict[str, Any], dialect_name: str) -> str | None:
    """What a before-hook's body changes that the layers in front already acted on, or ``None``.

    The budget reserved for this model, this output cap and this many choices, and the cache and the
    log took ``stream`` as the answer's shape: a hook may lower the cap, never raise or remove it,
    and may not change the others, or a budget's hard cap would stop holding.
    """
    dialect = dialect_for(dialect_name)
    if new.get("model") != old.get("model"):
        return "changed the model"
    if bool(new.get("stream")) != bool(old.get("stream")):
        return "changed stream"
    try:
        cap, new_cap = dialect.client_cap(old), dialect.client_cap(new)
        more_choices = dialect.choices(new) > dialect.choices(old)
    except (ValueError, TypeError):
        return "wrote an invalid output cap or choice count"
    if cap is not None and (new_cap is None or new_cap > cap):
        return "raised or removed the output cap"
    if more_choices:
        return "asked for more choices"
    return None


def _view(ctx: RequestContext, dialect: str, data: dict[str, Any]) -> HookRequest:
    model = data.get("model")
    return HookRequest(
        dialect=dialect,
        model=model if isinstance(model, str) else None,
        stream=data.get("stream") is True,
        body=data,
        tenant_id=ctx.tenant_id,
        user_id=ctx.user_id,
        request_id=ctx.request_id,
        context=ctx,
    )


class HookRun:
    """The hooks of one chat, Messages or Responses request."""

    __slots__ = ("_ctx", "_ended", "_hooks", "_queue", "_wants_events", "request")

    def __init__(self, hooks: Hooks, ctx: RequestContext, dialect: str, body: JSONBody) -> None:
        self._hooks = hooks
        self._ctx = ctx
        data = body.data if isinstance(body.data, dict) else {}
        self.request = _view(ctx, dialect, data)
        # the stream's events are needed to call on_chunk, and to put the text together for after_response
        self._wants_events = bool(hooks.on_chunk or hooks.after_response)
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._ended = False

    # -- in line -------------------------------------------------------------------------------------

    async def before(self, body: JSONBody) -> None:
        """Run the before-hooks in order, each given a copy of the body the one before returned (only
        a returned body counts); a refusal propagates (nothing has been sent upstream), any other error
        is logged and skipped."""
        for hook in self._hooks.before_request:
            current = self.request.body
            try:
                # a copy: a change made in place would otherwise skip the checks below (the budget's
                # cap raised on ``request.body`` itself, returned or not)
                changed = await hook(replace(self.request, body=orjson.loads(orjson.dumps(current))))
            except GatewayError:
                raise
            except Exception:
                logger.exception(
                    "before_request hook %s failed on request %s; the request goes on without its change",
                    _name(hook),
                    self.request.request_id,
                )
                continue
            if changed is None:
                continue
            if not isinstance(changed, dict):
                logger.error(
                    "before_request hook %s returned %s, not a dict or None; ignored",
                    _name(hook),
                    type(changed).__name__,
                )
                continue
            try:
                orjson.dumps(changed)
            except TypeError as exc:
                logger.error(
                    "before_request hook %s returned a body that is not JSON (%s); ignored", _name(hook), exc
                )
                continue
            if (overreach := _overreach(current, changed, self.request.dialect)) is not None:
                logger.error(
                    "before_request hook %s %s on request %s; its change is ignored",
                    _name(hook),
                    overreach,
                    self.request.request_id,
                )
                continue
            if changed != current:
                self._ctx.extra[BODY_CHANGED_BY_HOOK] = True
            body.replace(changed)
            self.request = _view(self._ctx, self.request.dialect, changed)

    # -- after the fact, in the background -----------------------------------------------------------

    def events(self, events: list[bytes]) -> None:
        """Streamed events that just went to the client."""
        if self._wants_events and not self._ended:
            self._put(("events", events))

    def answered(self, body: bytes | None) -> None:
        """The answer is complete: ``body`` is a JSON answer, ``None`` the end of a stream."""
        if self._ended:
            return
        if self._hooks.after_response:
            self._put(("answered", (body, _latency_ms(self._ctx))))
        self.close()

    def failed(self, error: GatewayError, stream_started: bool) -> None:
        """The router answered with ``error`` (as a status, or as the stream's last event)."""
        if self._ended:
            return
        if self._hooks.on_error:
            self._put(("failed", failure(self._ctx, self.request, error, stream_started)))
        self.close()

    def close(self) -> None:
        """Nothing more will come (a client that left gets neither after- nor error-hooks)."""
        if not self._ended:
            self._ended = True
            if self._queue is not None:
                self._queue.put_nowait(None)

    def _put(self, item: _Item) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._hooks.spawn(self._work(self._queue))
        self._queue.put_nowait(item)

    async def _work(self, queue: asyncio.Queue[_Item | None]) -> None:
        dialect = dialect_for(self.request.dialect)
        meter = dialect.stream_meter()
        decoder = SSEDecoder()
        text: list[str] = []
        index = 0
        while (item := await queue.get()) is not None:
            kind, value = item
            if kind == "events":
                for raw in decoder.feed(value[0] if len(value) == 1 else b"".join(value)):
                    event = parse_event(raw)
                    try:
                        payload: Any = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        payload = event.data.decode("utf-8", "replace")
                    if self._hooks.after_response:
                        text.append(meter.feed(event.event, payload))
                    if self._hooks.on_chunk:
                        chunk = HookChunk(self.request, index, event.event, payload, raw)
                        for hook in self._hooks.on_chunk:
                            await _call("on_chunk", hook, chunk)
                    index += 1
            elif kind == "answered":
                body, latency = value
                await self._after(dialect.answer_text, body, "".join(text), latency)
            else:
                for on_error in self._hooks.on_error:
                    await _call("on_error", on_error, value)

    async def _after(self, answer_text: Any, body: bytes | None, text: str, latency: float) -> None:
        answer: dict[str, Any] | None = None
        if body is not None:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                answer = parsed
                text = answer_text(parsed)
        ctx = self._ctx
        response = HookResponse(
            request=self.request,
            status=ctx.status or 200,
            stream=body is None,
            answer=answer,
            text=text,
            usage=ctx.usage,
            provider=ctx.provider,
            model=ctx.upstream_model,
            deployment=ctx.deployment,
            latency_ms=latency,
        )
        for hook in self._hooks.after_response:
            await _call("after_response", hook, response)


def failure(
    ctx: RequestContext, request: HookRequest | None, error: GatewayError, stream_started: bool
) -> HookFailure:
    return HookFailure(
        request=request,
        status=error.status,
        error=error,
        stream_started=stream_started,
        attempts=ctx.attempts,
        latency_ms=_latency_ms(ctx),
    )


def report_failure(hooks: Hooks, ctx: RequestContext, error: GatewayError, stream_started: bool) -> None:
    """Tell the error hooks of a failure before the request's hooks began (its body unread)."""
    view = failure(ctx, None, error, stream_started)

    async def run() -> None:
        for hook in hooks.on_error:
            await _call("on_error", hook, view)

    hooks.spawn(run())


async def _call(point: str, hook: Any, view: Any) -> None:
    try:
        await hook(view)
    except Exception:
        logger.exception("%s hook %s failed; the request was not affected", point, _name(hook))
