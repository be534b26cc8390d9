"""BudgetMiddleware: reserve an estimate in every window before the call, settle with real usage after.

Before: estimate = prompt tokens + ``max_tokens`` (or the configured cap), reserved atomically in every
window of the tenant (one store call); 429 if any window lacks room. After: the reservation is replaced
by what the answer really cost: the router's ``ctx.usage``, else the answer's ``usage`` (JSON body or
SSE usage chunk), else the counted text; released on an error before any output; counted up to the
disconnect when the client leaves mid-stream. Cache hits cost what ``cache_hits`` says.

Chat completions, Anthropic Messages (``/v1/messages``) and OpenAI Responses (``/v1/responses``) are
budgeted alike, each read through its dialect (its output cap, error shape, usage and generated text);
``count_tokens`` is free, so it passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ..kernel.body import ClientDisconnect, forward_scope, read_json
from ..kernel.body_memo import BodyMemo
from ..kernel.context import RequestContext, Usage, ensure_context
from ..kernel.dialects import CHAT, MESSAGES, Dialect, dialect_for
from ..kernel.errors import ConfigError, GatewayError, InvalidRequest, RateLimited, Unauthorized, send_error
from ..kernel.gate import AnswerWrite, find_keeper
from ..kernel.lifespan import lifespan_passthrough
from ..kernel.response import ResponseTap, watch_disconnect
from ..kernel.routes import classify, is_generation
from ..kernel.types import ASGIApp, Receive, Scope, Send
from ..kernel.unique_ids import IdSource
from ..stores.registry import BUDGET_STORES
from ..tenant.ids import KEY_SAFE_PATTERN, InvalidTenantId, TenantIdValidator
from .config import BudgetConfig, Limits
from .estimate import Estimate, slot_deltas
from .exchange import Exchange, Meter
from .gate import Pending, hit_amounts
from .headers import ratelimit_headers, retry_after
from .pricing import PriceTable
from .store import BudgetStore, Reservation, StoreError
from .subjects import BudgetSubjects, key_limits
from .tokens import RuntimeTokenCounter, TokenCounter, WarmCounter, cache_lifetime
from .unseen import thinks_unseen
from .usage import json_answer, streamed_text
from .windows import WINDOWS, Slot, SlotClock, format_amount, format_duration, to_units

logger = logging.getLogger("asgi_aigw.budget")

_T = TypeVar("_T")

#: Reservation tokens: unique across every process sharing the store (a random prefix per process,
#: drawn again in a forked worker) without a system call per request.
_TOKENS = IdSource(8)


def _reservation_token() -> str:
    return f"{_TOKENS.prefix}{_TOKENS.next_number():x}"


#: Statuses of a Responses API answer still to be generated (``background: true``).
_LATER = frozenset({"queued", "in_progress"})
#: The most choices (``n``) a chat request may ask for, as at OpenAI.
_MAX_CHOICES = 128
#: Settlements the store did not take, kept for a retry; past this many the oldest are given up.
_MAX_UNSETTLED = 10_000
#: The longest pause between two retries of the settlements the store did not take, in seconds.
_SETTLE_RETRY_MAX = 30.0


class BudgetUnavailable(GatewayError):
    """503: the budget store is down and the middleware is configured to fail closed."""

    status = 503
    type = "server_error"
    code = "budget_unavailable"


def limits_vector(limits: Limits, base: Limits | None = None) -> list[int]:
    """Limits in store units, in :data:`WINDOWS` order; a field unset in ``limits`` comes from ``base``."""
    out: list[int] = []
    for window in WINDOWS:
        value = getattr(limits, window.name)
        if value is None and base is not None:
            value = getattr(base, window.name)
        out.append(-1 if value is None else to_units(window, value))
    return out


class BudgetMiddleware:
    """Token, request and money limits per tenant, atomically reserved and settled with real usage.

    Every setting is in ``config``. Injected objects: ``store``, a :class:`BudgetStore` you built (else
    the one ``config.store`` names); ``token_counter``, replacing the runtime's tokenizers; ``clock``
    (epoch seconds), deciding the windows, for tests.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: BudgetConfig | None = None,
        store: BudgetStore | None = None,
        token_counter: TokenCounter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.config = cfg = config or BudgetConfig()
        self.store: BudgetStore = store or BUDGET_STORES.open(
            cfg.store, key_prefix=cfg.key_prefix, timeout=cfg.store_timeout
        )
        self.counter = WarmCounter(token_counter or RuntimeTokenCounter())
        #: What recent bodies ask (prompt tokens, output cap, price), per tenant and route.
        self._estimates: BodyMemo[Estimate] = BodyMemo()
        self.prices = PriceTable(cfg.pricing, default=cfg.default_price, aliases=cfg.model_aliases)
        self.slot_clock = SlotClock()
        self._now = clock
        # only what store keys need: TenantMiddleware applies the deployment's own id rules
        self.validate = TenantIdValidator(KEY_SAFE_PATTERN, 256)
        self.validate(cfg.default_tenant)
        self._defaults = limits_vector(cfg.limits)
        self._per_tenant = {
            self.validate(tenant): limits_vector(limits, cfg.limits) for tenant, limits in cfg.tenants.items()
        }
        # per-user windows (``per``) live in their own module: who is charged, beside how much
        self.subjects = BudgetSubjects(
            cfg,
            self.validate,
            lambda tenant: self._per_tenant.get(tenant, self._defaults),
            limits_vector(cfg.user_limits),
        )
        _check_prices(
            self.prices, cfg, [self._defaults, *self._per_tenant.values(), limits_vector(cfg.user_limits)]
        )
        #: Reservations carry a token (unless the store predates them), which makes settling idempotent
        #: and lets a reservation whose reply was lost be given back safely.
        self._tokens = _takes_tokens(self.store)
        self._down_until = 0.0
        self._logged_at = float("-inf")
        self._unlogged = 0
        #: (tenant, slots, deltas) of settlements that failed: without a retry each would leave its
        #: whole reservation counted (a store restart mid-request leaked thousands of tokens)
        self._unsettled: deque[tuple[str, Sequence[Slot], list[int] | None, str | None]] = deque()
        self._settle_retry: asyncio.Task[None] | None = None
        #: Settlements of cancelled requests, finishing in tasks of their own.
        self._settling: set[asyncio.Task[None]] = set()
        #: Set when a reservation succeeds while settlements are kept: the retry need not wait longer.
        self._store_back: asyncio.Event | None = None
        #: The store's test for an exact cache entry it can read in its own script (Redis), if any.
        self._reads: Callable[[str], bool] | None = getattr(self.store, "reads", None)
        #: The slots of the last hit's reservation, and what a hit reserves in them (never changed in place).
        self._last_hit: tuple[Sequence[Slot] | None, list[int]] = (None, [])
        #: Routes on which the cache inside looks before the budget reserves (see kernel/gate.py).
        keeper = find_keeper(app)
        self._gated_routes: frozenset[str] = frozenset(getattr(keeper, "gated_routes", ()))

    # -- the request path ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan_passthrough(
                    self.app, scope, receive, send, on_startup=self._load_tokenizer, on_shutdown=self.aclose
                )
            else:
                await self.app(scope, receive, send)
            return
        route = classify(scope)
        # count_tokens is free at Anthropic: neither charged nor counted as a request
        generation = is_generation(route)
        if not generation and route != "embeddings":
            await self.app(scope, receive, send)
            return
        dialect = dialect_for(route)
        scope, ctx = ensure_context(scope)
        try:
            scope, receive, body = await read_json(
                scope, receive, limit=self.config.max_body_bytes, time_limit=self.config.body_timeout
            )
            tenant = self._tenant(ctx)
            user = self.subjects.user(ctx.user_id)
            key = key_limits(ctx.extra)  # an API key's own limits, on top of the tenant's
        except ClientDisconnect:
            ctx.client_disconnected = True
            return
        except GatewayError as exc:
            await self._refuse(send, ctx, exc, dialect)
            return

        data = body.data
        kind = route or ""
        estimate = self._estimates.get(tenant, kind, body.raw)
        if estimate is None:
            try:
                estimate = await self._estimate_body(kind, dialect, data, body.raw, tenant)
            except GatewayError as exc:
                await self._refuse(send, ctx, exc, dialect)
                return
        ctx.token_estimate = estimate.tokens
        if estimate.cap_field is not None:
            # the reservation is a cap: ask the upstream for at most the output tokens reserved, or a
            # long answer is served (and charged past the limit) though it was never reserved
            data[estimate.cap_field] = self.config.default_max_tokens
            body.mark_changed()
            scope = forward_scope(scope, body)
        now = self._now()
        slots, limits = self.subjects.windows(tenant, user, self.slot_clock.slots(now), key)
        unpriced = estimate.unpriced
        if unpriced is not None and _money_limited(slots, limits):
            await self._refuse(send, ctx, _unpriced(unpriced), dialect)
            return
        amounts = estimate.amounts(slots)
        token = _reservation_token() if self._tokens else None
        pending = Pending(self, ctx, tenant, slots, amounts, limits, token, now, dialect)
        pending.unpriced = unpriced
        gated = route in self._gated_routes
        if gated:
            # the cache inside looks first and reserves through the gate: a hit costs what a hit costs
            pending.hit_amounts = self._hit_amounts(slots)
            ctx.budget_gate = pending
        elif not await pending.admit():
            assert pending.refusal is not None
            await self._refuse(send, ctx, pending.refusal, dialect)
            return
        model = data.get("model")
        model = model if isinstance(model, str) else None
        await self._forward(scope, receive, send, ctx, pending, estimate.prompt, model, gated)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        ctx: RequestContext,
        pending: Pending,
        prompt: int,
        model: str | None,
        gated: bool,
    ) -> None:
        """Call the app with the answer metered; settle once it has gone (or failed)."""
        exchange = Exchange(
            self._settle,
            self._settle_later,
            ctx,
            pending,
            prompt,
            model,
            gated=gated,
            headers=self.config.headers,
            send=send,
        )
        try:
            # the client counts as gone only if it left before the answer was complete
            await self.app(scope, watch_disconnect(receive, ctx, exchange), exchange.send)
        finally:
            await exchange.settle()  # an error, a disconnect, or an answer that never ended
            # no reference cycle outlives the request (the tap's send is the exchange's, the context
            # and its gate): refcounting frees them at once, not the garbage collector
            exchange.release()
            if gated:
                ctx.budget_gate = None
        if pending.refusal is not None and not exchange.started:
            # refused at the gate (or at the first byte of an inner layer's answer): nothing went out
            await self._refuse(send, ctx, pending.refusal, pending.dialect)

    # -- what the gate calls (see budget/gate.py) --------------------------------------------------

    def reads(self, url: str) -> bool:
        """Whether the store can read an exact cache entry of the Redis at ``url`` in its own script."""
        return self._reads is not None and bool(self._reads(url))

    async def reserve(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        token: str | None,
        limits: Sequence[int],
    ) -> Reservation | None:
        """Reserve ``amounts``; None when the store failed open (raises when it fails closed)."""
        grace = self.config.key_grace_seconds
        store = self.store
        if token is None:
            return await self._guarded(
                lambda: store.reserve(tenant, slots, amounts, limits, grace), tenant, slots, amounts, token
            )
        return await self._guarded(
            lambda: store.reserve(tenant, slots, amounts, limits, grace, token=token),
            tenant,
            slots,
            amounts,
            token,
        )

    async def reserve_and_get(
        self, pending: Pending, entry: bytes
    ) -> tuple[Reservation, bytes | None, bool] | None:
        """Read the exact entry ``entry`` and reserve in one script (see :meth:`reads`)."""
        store: Any = self.store
        grace = self.config.key_grace_seconds

        def call() -> Awaitable[tuple[Reservation, bytes | None, bool]]:
            return store.reserve_and_get(  # type: ignore[no-any-return]
                pending.tenant,
                pending.slots,
                pending.amounts,
                pending.hit_amounts,
                pending.limits,
                grace,
                entry,
                token=pending.token,
            )

        # a lost reply gives back what the marker records: the script reserved a hit's cost or the estimate
        return await self._guarded(call, pending.tenant, pending.slots, None, pending.token)

    def over_limit(self, pending: Pending, amounts: Sequence[int], reservation: Reservation) -> GatewayError:
        return self._over_limit(
            pending.tenant, pending.slots, amounts, reservation, pending.now, pending.dialect
        )

    def unpriced_refusal(self, pending: Pending, reservation: Reservation) -> GatewayError | None:
        """The refusal of an unpriced model that a live override made money-limited, else None."""
        model = pending.unpriced
        if model is not None and _money_limited(pending.slots, reservation.limits):
            return _unpriced(model)
        return None

    async def give_back(
        self, tenant: str, slots: Sequence[Slot], deltas: list[int], token: str | None
    ) -> None:
        try:
            await self._store_settle(tenant, slots, deltas, token)
        except Exception as exc:
            self._log_store_error("settle", exc)
            self._keep_unsettled(tenant, slots, deltas, token)

    def _tenant(self, ctx: RequestContext) -> str:
        tenant = ctx.tenant_id or self.config.default_tenant
        try:
            return self.validate(tenant)
        except InvalidTenantId as exc:
            raise Unauthorized(f"The tenant id is not valid: {exc}.", code="invalid_tenant") from None

    async def _refuse(
        self, send: Send, ctx: RequestContext, exc: GatewayError, dialect: Dialect | None = None
    ) -> None:
        ctx.status = exc.status
        ctx.error_code = exc.code
        ctx.budget_decision = _decision(exc.status)
        await send_error(send, exc, dialect=dialect)

    # -- estimate and reserve -----------------------------------------------------------------------

    def _reserved_cost(
        self, route: str | None, data: Mapping[str, Any], model: str | None, prompt: int, output: int
    ) -> int:
        """Nano-dollars to reserve: a prompt with cache breakpoints may be written to the provider's
        cache, so it is reserved at the dearest write price its breakpoints' lifetimes allow."""
        # chat content parts carry breakpoints too: the router passes them on to Anthropic
        lifetime = cache_lifetime(data) if route in ("messages", "chat") else None
        if lifetime is None:
            return self.prices.cost_nanos(model, prompt, output)
        cost = self.prices.cost_nanos(model, prompt, output, cache_write_tokens=prompt)
        if lifetime == "1h":
            # 1-hour and 5-minute breakpoints may be mixed: whichever write price is dearer
            hour = self.prices.cost_nanos(
                model, prompt, output, cache_write_tokens=prompt, cache_write_1h_tokens=prompt
            )
            cost = max(cost, hour)
        return cost

    async def _estimate_body(
        self, route: str, dialect: Dialect, data: dict[str, Any], raw: bytes, tenant: str
    ) -> Estimate:
        """What the body ``data`` (``raw``: its bytes) asks of the budget; remembered for the tenant
        unless its prompt could not be counted. Raises :class:`GatewayError` for a body it refuses."""
        model = data.get("model")
        model = model if isinstance(model, str) else None
        cap: int | None = None
        generation = route != "embeddings"
        if generation:
            try:
                cap = dialect.client_cap(data)
            except ValueError as exc:
                raise _bad_cap(str(exc), dialect) from None
            if cap is None and dialect.cap_required:
                # Anthropic requires max_tokens (and refuses a request without it): so does the reservation
                raise _missing_cap(dialect.cap_field(model))
            if dialect is CHAT and not _valid_choices(data.get("n")):
                # the reservation covers n answers: an n it cannot count must not reach an app that may
                # generate more than was reserved
                raise _bad_choices()
        counted = True
        if not generation:
            output = 0
            try:
                prompt = await self._count_input(data.get("input"), model)
            except Exception:
                prompt, counted = len(raw) // 4 + 1, False
        else:
            output = self._max_output(dialect, data, cap)
            try:
                prompt = await self._count_prompt(dialect, data, model, len(raw))
            except Exception:
                # a body the router will refuse anyway (400): reserve something proportionate meanwhile
                prompt, counted = len(raw) // 4 + 1, False
        estimate = Estimate(
            prompt=prompt,
            output=output,
            cost=self._reserved_cost(route, data, model, prompt, output),
            unpriced=model if model is not None and self.prices.price(model) is None else None,
            cap_field=dialect.cap_field(model) if generation and cap is None else None,
        )
        if counted:
            self._estimates.put(tenant, route, raw, estimate)
        return estimate

    async def _count_prompt(
        self, dialect: Dialect, data: Mapping[str, Any], model: str | None, size: int
    ) -> int:
        """The prompt's tokens; ``size``, the body's bytes, sends a large one to a worker thread."""
        if dialect.name == "messages":
            return await self.counter.count_messages(data, model, size=size)
        if dialect.name == "responses":
            return await self.counter.count_responses(data, model, size=size)
        return await self.counter.count_chat(data, model, size=size)

    def _max_output(self, dialect: Dialect, data: Mapping[str, Any], cap: int | None) -> int:
        """The cap (the client's, else ``default_max_tokens``, which is then sent) times the choices."""
        return (cap or self.config.default_max_tokens) * min(dialect.choices(data), _MAX_CHOICES)

    async def _count_input(self, value: Any, model: str | None) -> int:
        if isinstance(value, str):
            return await self.counter.count_text(value, model)
        if isinstance(value, list):
            total = 0
            for item in value:
                if isinstance(item, str):
                    total += await self.counter.count_text(item, model)
                elif isinstance(item, int):
                    total += 1  # a list of token ids
                elif isinstance(item, list):
                    total += len(item)
            return total
        return 0

    def _hit_amounts(self, slots: Sequence[Slot]) -> list[int] | None:
        """What a cache hit reserves; None when hits are charged tokens or money (known only once the
        answer is read: a hit then reserves the whole estimate and is settled like any answer)."""
        policy = self.config.cache_hits
        if policy.tokens or policy.cost:
            return None
        last, amounts = self._last_hit
        if slots is not last:  # the slots change once a minute (and per user): one list per set of them
            amounts = hit_amounts(slots, policy.requests)
            self._last_hit = (slots, amounts)
        return amounts

    async def _guarded(
        self,
        call: Callable[[], Awaitable[_T]],
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int] | None,
        token: str | None,
    ) -> _T | None:
        """``call()``, a reservation of ``amounts`` (None: what its marker records); None when the store
        is down and the budget fails open (it raises :class:`BudgetUnavailable` when failing closed)."""
        if time.monotonic() < self._down_until:
            self._store_down(None)
            return None
        try:
            outcome = await call()
        except asyncio.CancelledError:
            if token is not None:
                # cancelled while the store worked (a client gone, a shutdown): the reservation may have
                # been made, and nothing will settle it; given back by its token, which changes nothing
                # if it was not made
                self._keep_unsettled(tenant, slots, None if amounts is None else [-a for a in amounts], token)
            raise
        except Exception as exc:  # StoreError, or anything unexpected: never a 500
            self._down_until = time.monotonic() + self.config.store_retry_seconds
            if token is not None:
                # the store may have made the reservation and lost only its reply (a Redis that stops
                # right after running the script): give it back, which changes nothing if it was not made
                deltas = None if amounts is None else [-amount for amount in amounts]
                self._keep_unsettled(tenant, slots, deltas, token)
            self._store_down(exc)
            return None
        if self._unsettled and self._store_back is not None:
            self._store_back.set()  # the store answers again: settle what it missed now
        return outcome

    def _store_down(self, exc: BaseException | None) -> None:
        """Log a failure; raise :class:`BudgetUnavailable` when failing closed."""
        if exc is not None:
            self._log_store_error("reserve", exc)
        if self.config.failure_mode == "closed":
            raise BudgetUnavailable(
                "Budgets cannot be checked right now (the budget store is unreachable), so requests are "
                "refused. Try again shortly."
            )

    def _log_store_error(self, action: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at < self.config.error_log_interval:
            self._unlogged += 1
            return
        level = logging.WARNING if isinstance(exc, StoreError) else logging.ERROR
        logger.log(
            level,
            "Budget store failed on %s (%s: %s); failing %s. %d more failures since the last report.",
            action,
            type(exc).__name__,
            exc,
            self.config.failure_mode,
            self._unlogged,
            exc_info=not isinstance(exc, StoreError),
        )
        self._logged_at = now
        self._unlogged = 0

    def _over_limit(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        reservation: Reservation,
        now: float,
        dialect: Dialect = CHAT,
    ) -> RateLimited:
        exceeded = [
            i
            for i, (amount, used, limit) in enumerate(
                zip(amounts, reservation.used, reservation.limits, strict=True)
            )
            if limit >= 0 and amount > 0 and used + amount > limit
        ]
        # a window the request alone is over can never take it: say so, and tell clients not to retry
        never = [i for i in exceeded if amounts[i] > reservation.limits[i]]
        first = never[0] if never else exceeded[0]
        window = slots[first].window
        limit, used, amount = reservation.limits[first], reservation.used[first], amounts[first]
        wait = max(slots[i].end - now for i in exceeded)
        message = (
            f"Rate limit reached for tenant {tenant} on {window.label}: "
            f"limit {format_amount(window, limit)}, used {format_amount(window, used)}, "
            f"requested {format_amount(window, amount)}."
        )
        if window.metric == "requests" and limit == 0:
            message += " No requests are allowed: ask for the limit to be raised."
        elif never:
            caps = "max_tokens (or max_completion_tokens)" if dialect is CHAT else dialect.cap_field(None)
            message += f" This request alone exceeds the limit, so retrying cannot help: lower {caps}" + (
                " or use a cheaper model." if window.metric == "cost" else " or shorten the prompt."
            )
        else:
            message += f" Try again in {format_duration(wait)}."
        others = [slots[i].window.label for i in exceeded if i != first]
        if others:
            message += f" Also exceeded: {', '.join(others)}."
        # the official OpenAI and Anthropic SDKs retry a 429 unless told not to (x-should-retry)
        headers = [("x-should-retry", "false")] if never else [("retry-after", retry_after(wait).decode())]
        headers.extend(
            (k.decode(), v.decode())
            for k, v in ratelimit_headers(slots, reservation.used, reservation.limits, now)
        )
        if window.metric == "cost":
            return RateLimited(message, type="insufficient_quota", code="insufficient_quota", headers=headers)
        return RateLimited(message, type=window.metric, code="rate_limit_exceeded", headers=headers)

    # -- settle -------------------------------------------------------------------------------------

    async def _settle(
        self,
        ctx: RequestContext,
        pending: Pending,
        prompt_estimate: int,
        model: str | None,
        tap: ResponseTap,
        meter: Meter,
    ) -> None:
        """Replace what the request holds by what it cost; the exact entries the cache handed over are
        written beside it (in one write on a shared Redis: one round trip for both)."""
        deltas: list[int] | None = None
        held = pending.held
        if held is not None:
            try:
                charge: tuple[int, int, int] | None = await self._charge(
                    ctx, prompt_estimate, model, tap, meter, pending.dialect
                )
            except Exception:
                logger.exception("Could not work out what a request cost; charging its reservation")
                charge = None
            if charge is not None:
                tokens, requests, cost = charge
                deltas = slot_deltas(pending.slots, tokens, requests, cost, held)
                if pending.marker is None and not any(deltas):
                    deltas = None  # a hit reserved exactly what it costs, unmarked: nothing to tell
        shared: list[AnswerWrite] = []
        for write in pending.writes:
            redis = write.redis
            if redis is not None and self.reads(redis.url):
                shared.append(write)
            else:
                await write.write()
        if shared:
            await self._settle_and_send(pending, deltas, shared)
        elif deltas is not None:
            await self.give_back(pending.tenant, pending.slots, deltas, pending.marker)

    def _settle_later(self, settlement: Coroutine[Any, Any, None]) -> None:
        """Run ``settlement`` (a :meth:`_settle` call) in a task of its own, kept until it ends (and
        awaited on shutdown)."""

        async def settle() -> None:
            try:
                await settlement
            except Exception:  # the store's failures are kept for a retry there: this is anything else
                logger.exception("Could not settle a cancelled request's reservation")

        task = asyncio.get_running_loop().create_task(settle(), name="aigw-budget-settle")
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_and_send(
        self, pending: Pending, deltas: list[int] | None, writes: list[AnswerWrite]
    ) -> None:
        """The settlement and the exact entries on the store's connection, in one write."""
        store: Any = self.store
        commands = [write.redis.command for write in writes if write.redis is not None]
        try:
            errors = await store.settle_and_send(
                pending.tenant, pending.slots, deltas, pending.marker, commands
            )
        except Exception as exc:
            for write in writes:
                write.failed(exc)
            if deltas is not None:
                self._log_store_error("settle", exc)
                self._keep_unsettled(pending.tenant, pending.slots, deltas, pending.marker)
            return
        for write, error in zip(writes, errors, strict=True):
            if error is not None:
                write.failed(error)

    async def _store_settle(
        self, tenant: str, slots: Sequence[Slot], deltas: list[int] | None, token: str | None
    ) -> None:
        """Settle; ``deltas`` None: give back whatever the reservation marked ``token`` holds (a lookup
        whose reply was lost: a hit's cost or the whole estimate)."""
        if deltas is None:
            assert token is not None
            await self.store.give_back(tenant, slots, token)  # type: ignore[attr-defined]
            return
        if token is None:
            await self.store.settle(tenant, slots, deltas)
        else:
            await self.store.settle(tenant, slots, deltas, token=token)

    def _keep_unsettled(
        self, tenant: str, slots: Sequence[Slot], deltas: list[int] | None, token: str | None
    ) -> None:
        """Keep a settlement the store did not take, and retry it in the background until it does.

        A store call that failed may have been applied all the same (only its reply was lost). With a
        token the retry then changes nothing; a store without tokens applies it twice, which
        under-counts one request (counters never go below zero) where not retrying would over-count
        it by its whole estimate until the window ends."""
        if len(self._unsettled) >= _MAX_UNSETTLED:
            self._unsettled.popleft()
            logger.error("Budget store: too many unsettled reservations; the oldest is given up")
        self._unsettled.append((tenant, slots, deltas, token))
        task = self._settle_retry
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._store_back = asyncio.Event()
            self._settle_retry = asyncio.get_running_loop().create_task(
                self._retry_unsettled(self._store_back), name="aigw-budget-settle-retry"
            )

    async def _retry_unsettled(self, store_back: asyncio.Event) -> None:
        pause = max(0.05, self.config.store_retry_seconds)
        while self._unsettled:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await store_back.wait()
            store_back.clear()
            if not await self._settle_kept():
                pause = min(_SETTLE_RETRY_MAX, pause * 2)

    async def _settle_kept(self) -> bool:
        """Send the kept settlements, oldest first; False (the rest kept) at the first failure."""
        while self._unsettled:
            tenant, slots, deltas, token = self._unsettled[0]
            try:
                await self._store_settle(tenant, slots, deltas, token)
            except Exception as exc:
                self._log_store_error("settle", exc)
                return False
            self._unsettled.popleft()
        return True

    async def _charge(
        self,
        ctx: RequestContext,
        prompt_estimate: int,
        model: str | None,
        tap: ResponseTap,
        meter: Meter,
        dialect: Dialect = CHAT,
    ) -> tuple[int, int, int]:
        """Tokens, requests and nano-dollars the request really cost."""
        status = tap.status
        usage = ctx.usage
        if status is None and ctx.client_disconnected and ctx.attempts and usage is None:
            # the client left while a provider worked on the request: it bills the prompt and whatever
            # it generated, which nobody saw; the most it could spend is what was reserved
            reserved = (ctx.token_estimate or prompt_estimate) - prompt_estimate
            usage = Usage(prompt_estimate, reserved, prompt_estimate + reserved, estimated=True)
        elif status is None or not 200 <= status < 300:
            return 0, 1, 0  # nothing answered, or an error before any output: give the reservation back
        answered_by = ctx.upstream_model
        payload: Any = None
        partial: Usage | None = None
        if usage is None:
            if meter.json_body is not None:
                usage, wire_model, payload = json_answer(meter.json_body, dialect)
                answered_by = answered_by or wire_model
            elif meter.reader.usage is not None:
                answered_by = answered_by or meter.reader.model
                if meter.final:
                    usage = meter.reader.usage
                else:  # a Messages stream cut after message_start: its input figures are real
                    partial = meter.reader.usage
        hit = ctx.cache_status is not None and ctx.cache_status.startswith("hit")
        if usage is None:
            if tap.kind == "sse":
                text = "".join(meter.texts) + streamed_text(meter.events, dialect)
                completion = await self.counter.count_text(text, model)
                if ctx.client_disconnected:
                    # the provider was cut off, not failed: it billed the prompt, and what it generated
                    # out of sight (thinking) up to the output reserved, which the text cannot show
                    body = ctx.body.data if ctx.body is not None else None
                    if thinks_unseen(body, model, ctx.upstream_model):
                        reserved = (ctx.token_estimate or prompt_estimate) - prompt_estimate
                        completion = max(completion, reserved)
                elif completion == 0 and not tap.ended_normally and partial is None:
                    return 0, 1, 0  # the stream failed before generating anything
            elif isinstance(payload, dict) and payload.get("status") in _LATER:
                # a background response, queued: the provider generates (and bills) it after this
                # answer, out of sight, up to the output reserved
                completion = (ctx.token_estimate or prompt_estimate) - prompt_estimate
            elif payload is not None:
                completion = await self.counter.count_text(dialect.answer_text(payload), model)
            else:
                completion = 0
            if partial is not None:
                completion = max(completion, partial.completion_tokens)
                usage = Usage(
                    partial.prompt_tokens,
                    completion,
                    partial.prompt_tokens + completion,
                    partial.cached_tokens,
                    estimated=True,
                    cache_write_tokens=partial.cache_write_tokens,
                    cache_write_1h_tokens=partial.cache_write_1h_tokens,
                )
            else:
                usage = Usage(prompt_estimate, completion, prompt_estimate + completion, estimated=True)
        if ctx.usage is None:
            ctx.usage = usage
        # the model that answered prices the answer when its price is known, else the name asked for
        # (an upstream's own model name may be in no table): never $0 when the request had a price
        priced_as = answered_by if answered_by and self.prices.lookup(answered_by) is not None else model
        cost = self.prices.cost_nanos(
            priced_as,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.cache_write_1h_tokens,
        )
        tokens, requests = usage.total_tokens, 1
        if hit:
            policy = self.config.cache_hits
            tokens = tokens if policy.tokens else 0
            requests = requests if policy.requests else 0
            cost = cost if policy.cost else 0
        ctx.cost = cost / 1e9
        return tokens, requests, cost

    async def _load_tokenizer(self) -> None:
        """Startup: load the tokenizer (in a worker thread) before the server takes requests, not in the
        first one, which took 0.4 s more. The default encoding (o200k_base): every model but OpenAI's
        older ones is counted with it."""
        await self.counter.count_text("warm-up", None)

    async def aclose(self) -> None:
        running = asyncio.get_running_loop()
        settling = [task for task in self._settling if task.get_loop() is running]
        if settling:
            await asyncio.wait(settling)  # each one bounded by the store's timeout
        task, self._settle_retry = self._settle_retry, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
        if self._unsettled and not await self._settle_kept():
            logger.error(
                "Budget store: %d reservations could not be settled before shutdown; they stay counted "
                "until their windows end",
                len(self._unsettled),
            )
        await self.store.aclose()


def _takes_tokens(store: BudgetStore) -> bool:
    """Whether ``store`` takes reservation tokens (a store written before they existed does not)."""
    try:
        return all(
            "token" in inspect.signature(method).parameters for method in (store.reserve, store.settle)
        )
    except (TypeError, ValueError):
        return False


def _money_limited(slots: Sequence[Slot], limits: Sequence[int]) -> bool:
    """Whether any money window among ``slots`` has a limit (``limits`` in store units, in step)."""
    return any(limit >= 0 for slot, limit in zip(slots, limits, strict=True) if slot.window.metric == "cost")


def check_prices(cfg: BudgetConfig) -> None:
    """Raise ``ConfigError`` when a money limit of ``cfg`` applies to a configured model with no price
    (what the middleware's constructor checks, for a command to run before starting workers)."""
    limits = [limits_vector(cfg.limits), *(limits_vector(t, cfg.limits) for t in cfg.tenants.values())]
    limits.append(limits_vector(cfg.user_limits))
    prices = PriceTable(cfg.pricing, default=cfg.default_price, aliases=cfg.model_aliases)
    _check_prices(prices, cfg, limits)


def _check_prices(prices: PriceTable, cfg: BudgetConfig, limits: Sequence[Sequence[int]]) -> None:
    """Refuse a configuration where a money limit applies to a configured model with no price."""
    money = [i for i, window in enumerate(WINDOWS) if window.metric == "cost"]
    if cfg.default_price is not None or not any(vector[i] >= 0 for vector in limits for i in money):
        return
    missing = [name for name in cfg.model_aliases if prices.lookup(name) is None]
    if missing:
        raise ConfigError(
            f"Money limits are set but no price is known for {', '.join(repr(m) for m in missing)}: "
            f"its requests would cost nothing against them. Set budget.pricing.{missing[0]} (input and "
            "output US dollars per million tokens), or budget.default_price."
        )


def _unpriced(model: str | None) -> GatewayError:
    return GatewayError(
        f"The model '{model}' has no known price and this tenant has a money limit, so it cannot be "
        f"metered: use a priced model, or ask for budget.pricing.{model} (or budget.default_price) "
        "to be set.",
        status=400,
        type="invalid_request_error",
        code="model_not_priced",
        param="model",
    )


def _valid_choices(n: Any) -> bool:
    """``n`` is absent, or a whole number of choices from 1 to 128 (OpenAI's range)."""
    return n is None or (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= _MAX_CHOICES)


def _bad_choices() -> InvalidRequest:
    return InvalidRequest(
        f"'n' must be an integer from 1 to {_MAX_CHOICES}: the number of answers to generate.", param="n"
    )


def _bad_cap(name: str, dialect: Dialect = CHAT) -> InvalidRequest:
    if dialect is MESSAGES:  # Anthropic's own wording for a field that fails validation
        return InvalidRequest(
            f"{name}: Input should be a valid integer greater than or equal to 1", param=name
        )
    return InvalidRequest(
        f"'{name}' must be a positive integer: the most output tokens the answer may have.", param=name
    )


def _missing_cap(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"{name}: Field required (the most output tokens the answer may have; the budget reserves it)",
        param=name,
    )


def _decision(status: int) -> str:
    """The budget decision a refusal with ``status`` records (see ``RequestContext.budget_decision``)."""
    if status == 429:
        return "refused"
    # a store failing closed answers 503
    return "error" if status >= 500 else "invalid"
