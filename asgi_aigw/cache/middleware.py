"""SemanticCacheMiddleware: exact hit, then verified semantic hit, else the app; completed answers stored.

```
request ─► exact store (Redis / LRU) ──hit──► replay (JSON or SSE)          x-aigw-cache: hit-exact
        └► embed last user message ─► vector store top-k (tenant, scope, unexpired)
             ─► cosine ≥ threshold and verify() ──hit──► replay             x-aigw-cache: hit-semantic
        └► the app, answer teed ─► stored once it ended normally            x-aigw-cache: miss
```

Chat Completions (``/v1/chat/completions``), Anthropic Messages (``/v1/messages``) and OpenAI
Responses (``/v1/responses``) requests are cached alike; the dialect is part of every key, and an
answer is replayed in the dialect that stored it.

A failing store or embedder is a miss (logged once per interval), never an error for the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..kernel.body import ClientDisconnect, read_json
from ..kernel.body_memo import BodyMemo
from ..kernel.context import BODY_CHANGED_BY_HOOK, RequestContext, ensure_context
from ..kernel.deadlines import deadline
from ..kernel.dialects import dialect_for
from ..kernel.errors import GatewayError, InvalidRequest, clip, send_error
from ..kernel.gate import AnswerWrite, BudgetGate, RedisEntry
from ..kernel.lifespan import lifespan_passthrough
from ..kernel.response import ResponseTap, watch_disconnect
from ..kernel.routes import classify
from ..kernel.types import ASGIApp, Headers, Message, Receive, Scope, Send
from ..stores.registry import EXACT_STORES, VECTOR_STORES
from .config import DEFAULT_THRESHOLD, CacheConfig
from .embedding import Embedder, runtime_embedder
from .exact import ExactStore
from .formats import FORMATS, Entry, EntryFormat, RequestView
from .keys import CacheKeys, cache_keys, memo_kind, tenant_tag
from .vector import VectorEntry, VectorStore, point_id
from .verify import verify

logger = logging.getLogger("asgi_aigw.cache")

HEADER = b"x-aigw-cache"
SCORE_HEADER = b"x-aigw-cache-score"
TTL_HEADER = b"x-aigw-cache-ttl"
HIT_EXACT, HIT_SEMANTIC, MISS, BYPASS = "hit-exact", "hit-semantic", "miss", "bypass"

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

#: Decoded answers kept for hot entries, and the largest kept (bounds the table at 64 MiB).
_DECODED_ENTRIES = 1024
_DECODED_MAX_BYTES = 64 * 1024


@dataclass(slots=True)
class _Controls:
    lookup: bool = True
    store: bool = True
    ttl: float = 0.0


class _ThrottledLog:
    """Log a failure of one kind at most once per interval (a dead Redis must not flood the logs)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, kind: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e18) < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        logger.warning(
            "semantic cache: %s failed, treated as a miss (%s: %s)%s",
            kind,
            type(exc).__name__,
            exc,
            f"; {suppressed} more since the last report" if suppressed else "",
        )


class SemanticCacheMiddleware:
    """Answer chat, Messages and Responses requests from the cache; see the module docstring and
    docs/cache.md.

    Every setting is in ``config``; the stores are the ones ``config.store`` and ``config.vector_store``
    name (``vector_store: null``: no semantic layer). Injected objects: ``exact`` and ``vector``, stores
    you built (replacing those of the configuration); ``embedder``, any object with ``dimension`` and
    ``async embed(texts)`` (or a callable returning one), else the runtime's shared embedder, resolved
    on first use.
    """

    #: A budget outside lets this layer look before it reserves (see :mod:`asgi_aigw.kernel.gate`):
    #: every request of these routes passes the gate before the app runs.
    budget_gate = "keeper"
    gated_routes = frozenset(FORMATS)

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: CacheConfig | None = None,
        exact: ExactStore | None = None,
        vector: VectorStore | None = None,
        embedder: Embedder | Callable[[], Embedder | None] | None = None,
    ) -> None:
        self.app = app
        self.config = config = config or CacheConfig()
        if exact is None:
            # the exact lookup is bounded like the others: a slow Redis must not hold every miss for
            # the client's default 2 s
            exact = EXACT_STORES.open(
                config.store,
                max_entries=config.max_entries,
                prefix=config.key_prefix,
                timeout=config.lookup_timeout,
            )
        self.exact: ExactStore = exact
        if vector is None and config.vector_store is not None:
            vector = VECTOR_STORES.open(
                config.vector_store,
                collection=config.collection,
                api_key=config.qdrant_api_key,
                max_entries=config.max_entries,  # the in-process store's bound (memory://)
            )
        self.vector: VectorStore | None = vector
        self._embedder: Embedder | None = None
        self._embedder_factory: Callable[[], Embedder | None] | None = None
        if isinstance(embedder, Embedder):
            self._embedder = embedder
        elif embedder is not None:
            self._embedder_factory = embedder
        elif vector is not None:
            # as documented: the runtime's shared embedder, resolved (not loaded) on first use
            self._embedder_factory = runtime_embedder
        self._max_body = config.max_body_bytes
        self._body_timeout = config.body_timeout
        self._log_failure = _ThrottledLog(config.error_log_interval)
        self._last_cleanup = time.monotonic()
        self._background: set[asyncio.Task[None]] = set()
        #: Semantic stores (embedding, upsert) under way after their answers have gone.
        self._stores: set[asyncio.Task[None]] = set()
        #: Answers not added to the semantic layer because ``max_pending_stores`` were under way.
        self.stores_skipped = 0
        self._decoded: dict[bytes, Entry] = {}
        #: The view and exact key of recent bodies, per tenant and route (see :class:`BodyMemo`): a
        #: question asked again (every exact hit) is not read, made canonical and hashed again.
        self._keyed: BodyMemo[tuple[RequestView, str]] = BodyMemo()

    # -- public helpers -------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder | None:
        if self._embedder is None and self._embedder_factory is not None:
            factory, self._embedder_factory = self._embedder_factory, None
            try:
                self._embedder = factory()
            except Exception as exc:
                self._log_failure("loading the embedder", exc)
        return self._embedder

    async def purge(self, tenant: str | None = None) -> tuple[int, int]:
        """Delete cached answers (of one tenant when given): (exact entries, vectors) removed."""
        tag = tenant_tag(tenant) if tenant is not None else None
        exact = await self.exact.purge(tag)
        vectors = await self.vector.purge(tag) if self.vector is not None else 0
        return exact, vectors

    async def drain(self) -> None:
        """Wait for background work (embedder warm-up, semantic stores, expired-vector sweeps) started
        so far."""
        while self._background or self._stores:
            await asyncio.gather(*self._background, *self._stores, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.exact.aclose()
        if self.vector is not None:
            await self.vector.aclose()

    # -- ASGI -----------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan_passthrough(
                self.app, scope, receive, send, on_startup=self._start, on_shutdown=self.aclose
            )
            return
        route = classify(scope)
        fmt = FORMATS.get(route or "")
        if route is None or fmt is None:
            await self.app(scope, receive, send)
            return
        dialect = dialect_for(route)
        scope, ctx = ensure_context(scope)
        try:
            scope, receive, body = await read_json(
                scope, receive, limit=self._max_body, time_limit=self._body_timeout
            )
        except ClientDisconnect:
            ctx.client_disconnected = True
            return
        except GatewayError as exc:
            await send_error(send, exc, dialect=dialect)
            return
        gate = ctx.budget_gate
        app = self.app if gate is None else _behind(self.app, gate)
        tenant = ctx.tenant_id or self.config.default_tenant
        headers = scope.get("headers", ())
        # a Messages key holds two request headers: they are part of what is remembered
        kind = memo_kind(route, headers)
        asked = body.raw
        known = self._keyed.get(tenant, kind, asked)
        view = known[0] if known is not None and fmt.view_shared else fmt.view(body)
        if view is None:
            # Not a valid request of its dialect: the app answers it (with its own 400), uncached.
            await app(scope, receive, send)
            return
        try:
            controls = self._controls(scope, view.cacheable(self.config.max_temperature))
        except InvalidRequest as exc:  # the x-aigw-cache-ttl header
            await send_error(send, exc, dialect=dialect)
            return
        if not controls.lookup and not controls.store:
            ctx.cache_status = BYPASS
            await app(scope, receive, _with_headers(send, [(HEADER, BYPASS.encode())]))
            return
        keys = cache_keys(
            body.data,
            tenant,
            max_question_chars=self.config.max_question_chars,
            dialect=route,
            headers=headers,
            exact=None if known is None else known[1],
        )
        if known is None:
            self._keyed.put(tenant, kind, asked, (view, keys.exact))
        vector: list[float] | None = None
        if controls.lookup:
            # An exact hit needs no validation: the same body was validated and answered before (the
            # fields left out of the key were type-checked by the view's read).
            if gate is None:
                answer, status, score = await self._lookup_exact(keys, fmt)
            else:
                # the budget reserves with the lookup: a hit's cost when found, else the estimate
                raw, admitted = await gate.lookup(
                    lambda: self._get_exact(keys.exact), self._redis_entry(keys.exact)
                )
                if not admitted:
                    return  # refused: the budget answers
                answer = self._decode(raw, fmt) if raw is not None else None
                status, score = (HIT_EXACT if answer is not None else MISS), None
            if answer is None:
                if not fmt.valid(body):
                    await app(scope, receive, send)
                    return
                answer, status, score, vector = await self._lookup_semantic(keys, fmt)
            if answer is not None:
                await self._replay(send, ctx, view, fmt.bind(answer, view), status, score)
                return
        ctx.cache_status = MISS if controls.lookup else BYPASS
        await self._forward_and_store(app, scope, receive, send, ctx, keys, controls, vector, fmt)

    async def _start(self) -> None:
        if self.vector is not None:
            # Load the embedding model now, in the background, rather than in the first request.
            self._spawn(self._warm_up())

    async def _warm_up(self) -> None:
        embedder = self.embedder  # resolving loads nothing; the first embed loads the model
        if embedder is None:
            return
        try:
            vectors = await embedder.embed(["warm-up"])
        except Exception as exc:
            self._log_failure("the embedder", exc)
            return
        # then the vector store, when it opens slowly (Qdrant Edge creating its shard: 60-80 ms, which
        # the lookups behind the first answer's store waited for)
        prepare: Callable[[int], Awaitable[None]] | None = getattr(self.vector, "prepare", None)
        if prepare is not None and vectors:
            try:
                await prepare(len(vectors[0]))
            except Exception as exc:
                self._log_failure("the vector store", exc)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- controls -------------------------------------------------------------------------------------

    def _controls(self, scope: Scope, cacheable: bool) -> _Controls:
        """Lookup, store and TTL from the request's headers; neither when the request is not
        ``cacheable`` (its view said so)."""
        controls = _Controls(ttl=self.config.ttl)
        cache_control: bytes | None = None
        raw_ttl: bytes | None = None
        for key, value in scope.get("headers", ()):
            if key == b"cache-control":
                cache_control = value
            elif key == TTL_HEADER:
                raw_ttl = value
        if cache_control:
            directives = {d.strip().split(b"=", 1)[0].lower() for d in cache_control.split(b",")}
            if b"no-cache" in directives:
                controls.lookup = False
            if b"no-store" in directives:
                controls.store = False
        if raw_ttl is not None:
            try:
                ttl = float(raw_ttl)
                if ttl != ttl or ttl < 0:  # NaN or negative
                    raise ValueError
            except ValueError:
                raise InvalidRequest(
                    "The x-aigw-cache-ttl header must be a number of seconds (0 or more), "
                    f"not {clip(repr(raw_ttl))}.",
                    param=TTL_HEADER.decode(),
                ) from None
            controls.ttl = min(ttl, self.config.max_ttl)
            if ttl == 0:
                controls.store = False
        if not cacheable:
            controls.lookup = controls.store = False
        return controls

    # -- lookup ---------------------------------------------------------------------------------------

    async def _lookup_exact(
        self, keys: CacheKeys, fmt: EntryFormat
    ) -> tuple[Entry | None, str, float | None]:
        raw = await self._get_exact(keys.exact)
        if raw is not None:
            answer = self._decode(raw, fmt)
            if answer is not None:
                return answer, HIT_EXACT, None
        return None, MISS, None

    async def _get_exact(self, key: str) -> bytes | None:
        """The exact entry at ``key``; None when absent or when the store failed (a miss)."""
        try:
            # No asyncio.timeout here: it costs more than a memory lookup, and the Redis client made
            # from a URL has its own socket timeouts.
            return await self.exact.get(key)
        except Exception as exc:
            self._log_failure("the exact store", exc)
            return None

    def _redis_entry(self, key: str, value: bytes | None = None, ttl: float = 0.0) -> RedisEntry | None:
        """Where the exact entry ``key`` lives in Redis, when the store can say (see kernel/gate.py)."""
        where = getattr(self.exact, "redis_entry", None)
        return where(key, value, ttl) if where is not None else None

    def _decode(self, raw: bytes | str, fmt: EntryFormat) -> Entry | None:
        """The answer of ``fmt``'s dialect stored as ``raw``, decoded once while it stays in a small
        table (hot entries are asked for again and again; bytes hash once and compare fast)."""
        key = raw if isinstance(raw, bytes) else raw.encode()
        entry_type = fmt.entry
        answer = self._decoded.get(key)
        if answer is not None and not isinstance(answer, entry_type):
            return None  # keys never let a dialect reach another's entry; this is the second lock
        if answer is None:
            answer = entry_type.from_bytes(key)
            if answer is not None and len(key) <= _DECODED_MAX_BYTES:
                if len(self._decoded) >= _DECODED_ENTRIES:
                    self._decoded.pop(next(iter(self._decoded)))
                self._decoded[key] = answer
        return answer

    async def _lookup_semantic(
        self, keys: CacheKeys, fmt: EntryFormat
    ) -> tuple[Entry | None, str, float | None, list[float] | None]:
        """(answer, status, score, embedding of the question if one was computed)."""
        if self.vector is None or keys.scope is None or keys.question is None:
            return None, MISS, None, None
        embedder = self.embedder
        if embedder is None:
            return None, MISS, None, None
        earlier = set(self._stores)
        try:
            with deadline(self.config.lookup_timeout):
                vector = (await embedder.embed([keys.question]))[0]
        except Exception as exc:
            self._log_failure("the embedder", exc)
            return None, MISS, None, None
        pending = {task for task in earlier if not task.done()}
        if pending:
            # read the writes started before this lookup: their embeddings were queued before this
            # one's, so what is left of them is mostly the upsert; bounded like any lookup step
            await asyncio.wait(pending, timeout=self.config.lookup_timeout)
        threshold = self.config.threshold
        if threshold is None:
            threshold = getattr(embedder, "default_threshold", DEFAULT_THRESHOLD)
        # a store that can asks only for entries close enough to answer: their payloads alone are read
        above = getattr(self.vector, "search_above", None)
        search = self.vector.search if above is None else functools.partial(above, min_score=threshold)
        try:
            with deadline(self.config.lookup_timeout):
                matches = await search(
                    vector,
                    tenant=tenant_tag(keys.tenant),
                    scope=keys.scope,
                    limit=self.config.candidates,
                    now=time.time(),
                )
        except Exception as exc:
            self._log_failure("the vector store", exc)
            return None, MISS, None, vector
        for match in matches:
            if match.score < threshold:
                break
            if self.config.verify and not verify(keys.question, match.question, tenant=keys.tenant).ok:
                continue
            answer = self._decode(match.answer, fmt)
            if answer is not None:
                return answer, HIT_SEMANTIC, match.score, vector
        return None, MISS, None, vector

    async def _replay(
        self,
        send: Send,
        ctx: RequestContext,
        request: RequestView,
        answer: Entry,
        status: str,
        score: float | None,
    ) -> None:
        ctx.cache_status = status
        ctx.cache_score = score
        ctx.status = 200
        ctx.model = ctx.model or request.model
        ctx.upstream_model = answer.model
        # The answer's own usage, as the provider reported it: BudgetMiddleware decides from
        # ctx.cache_status whether a hit is charged (see docs/cache.md).
        ctx.usage = answer.replay_usage()
        # who answered, as the miss that stored it said; only the cache headers tell a hit apart
        headers: Headers = [*answer.replayed_headers(), (HEADER, status.encode())]
        if score is not None:
            headers.append((SCORE_HEADER, f"{score:.4f}".encode()))
        if request.stream:
            body = b"".join(answer.to_sse(include_usage=request.include_usage))
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers})
        else:
            body = answer.to_json()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        ctx.first_byte_at = time.perf_counter()
        await send({"type": "http.response.body", "body": body, "more_body": False})
        ctx.finished_at = time.perf_counter()

    # -- miss: forward, tee, store --------------------------------------------------------------------

    async def _forward_and_store(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        keys: CacheKeys,
        controls: _Controls,
        vector: list[float] | None,
        fmt: EntryFormat,
    ) -> None:
        status = ctx.cache_status or MISS
        outer = _with_headers(send, [(HEADER, status.encode())])
        if not controls.store:
            await app(scope, receive, outer)
            return
        captured: list[Entry | None] = []
        assembler = fmt.assembler()
        gate = ctx.budget_gate
        handed_over = False

        def on_json(code: int, body: bytes) -> None:
            if code == 200:
                captured.append(fmt.from_json(body))

        def on_event(raw: bytes) -> None:
            assembler.feed(raw)

        async def send_answer(message: Message) -> None:
            nonlocal handed_over
            raw = None
            if gate is not None and message["type"] == "http.response.body" and not message.get("more_body"):
                # the answer is whole: its entry goes to the budget, written beside the settlement
                raw = self._storable(ctx, tap, captured, assembler)
                if raw is not None:
                    handed_over = True
                    self._hand_over(gate, ctx, keys, raw, controls.ttl)
            try:
                await outer(message)
            finally:
                if raw is not None:  # the answer has gone: its semantic entry now
                    self._store_semantic(ctx, keys, raw, controls.ttl, vector)

        tap = ResponseTap(send_answer, on_json=on_json, on_event=on_event)
        try:
            await app(scope, watch_disconnect(receive, ctx, tap), tap)
        finally:
            tap.release()  # send_answer refers to the tap: no cycle left for the garbage collector
        if handed_over or gate is not None:
            return
        raw = self._storable(ctx, tap, captured, assembler)
        if raw is not None:
            await self._store(ctx, keys, raw, controls.ttl, vector)

    def _storable(
        self, ctx: RequestContext, tap: ResponseTap, captured: list[Entry | None], assembler: Any
    ) -> bytes | None:
        """The entry to store for the answer ``tap`` saw, or None when it is not to be stored."""
        if not tap.ended_normally or tap.status != 200 or ctx.client_disconnected:
            return None
        if ctx.extra.get(BODY_CHANGED_BY_HOOK):
            # the key is the client's body; the answer is to what a hook made of it, which may depend on
            # who asked (a user's details added): replayed to another, it would answer a different question
            return None
        answer = captured[0] if tap.kind == "json" and captured else None
        if tap.kind == "sse":
            answer = assembler.answer()
            if answer is not None and answer.usage is None and ctx.usage is not None:
                # The client did not ask for usage in the stream; the router read it anyway.
                answer.fill_usage(ctx.usage)
        if answer is None or not answer.worth_storing(cache_tool_calls=self.config.cache_tool_calls):
            return None
        answer.keep_headers(tap.headers)
        raw = answer.to_bytes()
        return raw if len(raw) <= self.config.max_entry_bytes else None

    def _hand_over(
        self,
        gate: BudgetGate,
        ctx: RequestContext,
        keys: CacheKeys,
        raw: bytes,
        ttl: float,
    ) -> None:
        """Give the exact entry to the budget's gate (written beside the settlement, one round trip on a
        shared Redis)."""

        async def write() -> None:
            await self._set_exact(keys.exact, raw, ttl)

        def failed(exc: BaseException) -> None:
            self._log_failure("the exact store", exc)

        gate.after_answer(AnswerWrite(write, self._redis_entry(keys.exact, raw, ttl), failed))

    async def _store(
        self, ctx: RequestContext, keys: CacheKeys, raw: bytes, ttl: float, vector: list[float] | None
    ) -> None:
        # the exact entry is written before the request ends (one quick SET), so the same question
        # asked next is a hit; the semantic entry (an embedding, an upsert) is left to a task, bounded
        await self._set_exact(keys.exact, raw, ttl)
        self._store_semantic(ctx, keys, raw, ttl, vector)

    async def _set_exact(self, key: str, raw: bytes, ttl: float) -> None:
        try:
            await self.exact.set(key, raw, ttl)
        except Exception as exc:
            self._log_failure("the exact store", exc)

    def _store_semantic(
        self, ctx: RequestContext, keys: CacheKeys, raw: bytes, ttl: float, vector: list[float] | None
    ) -> None:
        if self.vector is None or keys.scope is None or keys.question is None:
            return
        upsert_now: Callable[[VectorEntry], bool] | None = getattr(self.vector, "upsert_now", None)
        if vector is not None and upsert_now is not None:
            # embedded already (by the lookup): written here when the store can at once, not in a task
            # (which cost as much as the upsert, and made the next lookups wait for it)
            try:
                done = upsert_now(_vector_entry(keys, keys.question, keys.scope, raw, ttl, vector))
            except Exception as exc:
                self._log_failure("the vector store", exc)
                return
            if done:
                self._maybe_sweep()
                return
        if len(self._stores) >= self.config.max_pending_stores:
            # overloaded: answers keep their pace, the semantic layer misses this one
            self.stores_skipped += 1
            ctx.cache_store_skipped = True
            return
        work = self._store_vector(self.vector, keys, keys.question, keys.scope, raw, ttl, vector)
        task = asyncio.get_running_loop().create_task(work)
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)

    async def _store_vector(
        self,
        store: VectorStore,
        keys: CacheKeys,
        question: str,
        scope: str,
        raw: bytes,
        ttl: float,
        vector: list[float] | None,
    ) -> None:
        if vector is None:
            embedder = self.embedder
            if embedder is None:
                return
            try:
                vector = (await embedder.embed([question]))[0]
            except Exception as exc:
                self._log_failure("the embedder", exc)
                return
        entry = _vector_entry(keys, question, scope, raw, ttl, vector)
        try:
            await store.upsert(entry)
        except Exception as exc:
            self._log_failure("the vector store", exc)
            return
        self._maybe_sweep()

    def _maybe_sweep(self) -> None:
        """Start a sweep of expired vectors when the last one is older than ``cleanup_interval``."""
        now = time.monotonic()
        if self.vector is None or now - self._last_cleanup < self.config.cleanup_interval:
            return
        self._last_cleanup = now
        self._spawn(self._sweep(self.vector))

    async def _sweep(self, store: VectorStore) -> None:
        try:
            removed = await store.delete_expired(time.time())
            if removed:
                logger.debug("semantic cache: removed %d expired vectors", removed)
        except Exception as exc:
            self._log_failure("sweeping expired vectors", exc)


def _vector_entry(
    keys: CacheKeys, question: str, scope: str, raw: bytes, ttl: float, vector: list[float]
) -> VectorEntry:
    return VectorEntry(
        id=point_id(keys.exact),
        vector=vector,
        tenant=tenant_tag(keys.tenant),
        scope=scope,
        expires_at=time.time() + ttl,
        question=question,
        answer=raw.decode(),
    )


def _behind(app: ASGIApp, gate: BudgetGate) -> ASGIApp:
    """``app``, run only once the budget's gate admitted the request (else nothing is sent: the budget
    answers with its refusal)."""

    async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
        if await gate.admit():
            await app(scope, receive, send)

    return admitted


def _with_headers(send: Send, extra: Headers) -> Send:
    """``send`` with ``extra`` headers added to the response start."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_headers
