"""The hooks a router calls: checked once, at start-up (async, importable), then run per request by
:class:`~asgi_aigw.hooks.run.HookRun`."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..kernel.dotted import DottedPathError, resolve
from ..kernel.errors import ConfigError
from .config import HooksConfig
from .views import HookChunk, HookFailure, HookRequest, HookResponse

#: Returns the changed body, or ``None`` to keep it; raises ``HookRefusal`` to refuse the request.
BeforeHook = Callable[[HookRequest], Awaitable["dict[str, Any] | None"]]
AfterHook = Callable[[HookResponse], Awaitable[None]]
ErrorHook = Callable[[HookFailure], Awaitable[None]]
ChunkHook = Callable[[HookChunk], Awaitable[None]]

_POINTS = ("before_request", "after_response", "on_error", "on_chunk")


def _is_async(hook: object) -> bool:
    """Whether calling ``hook`` gives an awaitable: an ``async def`` function, or an object whose
    ``__call__`` is one (a partial of either counts)."""
    if inspect.iscoroutinefunction(hook):
        return True
    if inspect.isclass(hook):  # calling a class builds an instance, even when its __call__ is async
        return False
    call = getattr(hook, "__call__", None)  # noqa: B004 - the bound method of a callable object
    return call is not None and not inspect.isfunction(hook) and inspect.iscoroutinefunction(call)


def _checked(point: str, hooks: Iterable[Any]) -> tuple[Any, ...]:
    out = tuple(hooks)
    for hook in out:
        name = getattr(hook, "__qualname__", None) or repr(hook)
        if not callable(hook):
            raise ConfigError(f"The {point} hook {name} is not callable.")
        if not _is_async(hook):
            raise ConfigError(
                f"The {point} hook {name} is not async: hooks run on the event loop, where a blocking "
                "call would stall every request. Define it with 'async def' (run blocking work in "
                "asyncio.to_thread inside it)."
            )
    return out


def import_hook(path: str, point: str) -> Any:
    """The object named ``"package.module:attribute"``; a :class:`ConfigError` naming ``path`` when it
    cannot be imported or found."""
    try:
        return resolve(path)
    except DottedPathError as exc:
        cause = exc.__cause__
        if exc.kind == "form":
            message = f"router.hooks.{point}: {path!r} is not a hook path; write 'package.module:function'."
        elif exc.kind == "import":
            message = (
                f"router.hooks.{point}: cannot import {exc.module!r} for {path!r}: "
                f"{type(cause).__name__}: {cause}"
            )
        else:
            message = f"router.hooks.{point}: {exc.module!r} has no {exc.attribute!r} (from {path!r})."
        raise ConfigError(message) from cause


class Hooks:
    """Typed async hooks, by the point of a request they run at (see docs/hooks.md):

    - ``before_request``: ``async (HookRequest) -> dict | None`` before the provider call; returns the
      changed body (``None``: unchanged), or raises :class:`~asgi_aigw.hooks.HookRefusal`;
    - ``after_response``: ``async (HookResponse) -> None`` once a complete answer has gone out;
    - ``on_error``: ``async (HookFailure) -> None`` once an error has gone out;
    - ``on_chunk``: ``async (HookChunk) -> None`` for each streamed event, once it has gone out.

    A hook that is not async is a :class:`~asgi_aigw.ConfigError` here, at start-up.
    """

    __slots__ = ("_tasks", "after_response", "before_request", "on_chunk", "on_error")

    def __init__(
        self,
        *,
        before_request: Iterable[BeforeHook] = (),
        after_response: Iterable[AfterHook] = (),
        on_error: Iterable[ErrorHook] = (),
        on_chunk: Iterable[ChunkHook] = (),
    ) -> None:
        self.before_request: tuple[BeforeHook, ...] = _checked("before_request", before_request)
        self.after_response: tuple[AfterHook, ...] = _checked("after_response", after_response)
        self.on_error: tuple[ErrorHook, ...] = _checked("on_error", on_error)
        self.on_chunk: tuple[ChunkHook, ...] = _checked("on_chunk", on_chunk)
        #: Hooks running after their answer went out: held here so none is collected mid-run.
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, config: HooksConfig) -> Hooks:
        """The hooks ``config`` names, imported and checked; an error names the path."""
        found: dict[str, list[Any]] = {}
        for point in _POINTS:
            found[point] = []
            for path in getattr(config, point):
                hook = import_hook(path, point)
                try:
                    _checked(point, [hook])
                except ConfigError as exc:
                    raise ConfigError(f"router.hooks.{point}: {path!r}: {exc}") from None
                found[point].append(hook)
        return cls(**found)

    def __add__(self, other: Hooks) -> Hooks:
        """These hooks, then ``other``'s, at each point; running ones are held in this object's set, so
        :meth:`drain` on it waits for them too."""
        combined = Hooks(
            before_request=self.before_request + other.before_request,
            after_response=self.after_response + other.after_response,
            on_error=self.on_error + other.on_error,
            on_chunk=self.on_chunk + other.on_chunk,
        )
        combined._tasks = self._tasks
        return combined

    def __bool__(self) -> bool:
        return bool(self.before_request or self.after_response or self.on_error or self.on_chunk)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, held until it ends."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, seconds: float = 5.0) -> None:
        """Wait up to ``seconds`` for the hooks still running (at shutdown), then cancel them."""
        tasks = [task for task in self._tasks if task.get_loop() is asyncio.get_running_loop()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task
