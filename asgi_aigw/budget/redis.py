"""The Redis budget store: one Lua script reserves in every window atomically, another settles.

Keys are ``<prefix>{<tenant>}:<window code>:<window start>`` (counters, expiring ``grace`` seconds after
their window ends) and ``<prefix>{<tenant>}:limits`` (a hash of live overrides, read by the reserve
script itself, so a change made with ``aigw budget set`` applies to the very next request). The hash
tag keeps a tenant's keys on one Redis Cluster slot. Scripts are called by SHA; when the server does
not know one (restart, failover, SCRIPT FLUSH) it is loaded and the call retried once.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import compress
from typing import Any

from ..kernel.optional import require
from ..stores.redis_clients import LoopRedisClients
from ..stores.resp import FastRedis, RespCaller, RespError, pack
from . import lua
from .store import Reservation, StoreError
from .windows import Slot


def bulk(value: str) -> bytes:
    """``value`` as one RESP bulk string."""
    data = value.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Script:
    """A Lua script called by SHA (computed once), loaded on NOSCRIPT."""

    __slots__ = ("_head", "load", "sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        #: ``SCRIPT LOAD`` for the fast client, packed once.
        self.load = pack([b"SCRIPT", b"LOAD", source.encode()])
        #: ``EVALSHA <sha>`` as RESP bulk strings, packed once.
        self._head = b"$7\r\nEVALSHA\r\n$%d\r\n%s\r\n" % (len(self.sha), self.sha.encode())

    def command(self, keys: Sequence[str], args: Sequence[str]) -> bytes:
        """``EVALSHA`` packed for the fast client."""
        return self.command_packed([bulk(key) for key in keys], args)

    def command_packed(self, keys: Sequence[bytes], args: Sequence[str]) -> bytes:
        """``EVALSHA`` with ``keys`` already packed as bulk strings (:func:`bulk`): a tenant's keys are
        packed once a minute, not on every call."""
        return self.command_prepacked(keys, [bulk(arg) for arg in args])

    def command_prepacked(self, keys: Sequence[bytes], args: Sequence[bytes]) -> bytes:
        """``EVALSHA`` with ``keys`` and ``args`` already packed as bulk strings."""
        count = b"%d" % len(keys)
        return b"".join(
            [
                b"*%d\r\n" % (3 + len(keys) + len(args)),
                self._head,
                b"$%d\r\n%s\r\n" % (len(count), count),
                *keys,
                *args,
            ]
        )

    async def fast(self, client: RespCaller, keys: Sequence[str], args: Sequence[str]) -> Any:
        return await self.fast_packed(client, [bulk(key) for key in keys], args)

    async def fast_packed(
        self,
        client: RespCaller,
        keys: Sequence[bytes],
        args: Sequence[str],
        packed_args: Sequence[bytes] = (),
    ) -> Any:
        """The script by SHA with ``keys`` packed, and ``args`` (or ``packed_args``, packed)."""
        command = self.command_prepacked(keys, packed_args or [bulk(arg) for arg in args])
        try:
            return await client.call(command)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await client.call(self.load)
            return await client.call(command)

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        redis = require("redis", "redis")
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


_RESERVE = _Script(lua.RESERVE)
_LOOKUP_RESERVE = _Script(lua.LOOKUP_RESERVE)
_GIVE_BACK = _Script(lua.GIVE_BACK)
#: Markers of answered hits kept per tenant for its next lookup to delete; past this many the oldest
#: are left to expire with their windows.
_SPENT_MARKERS = 256
_SETTLE = _Script(lua.SETTLE)


class RedisBudgetStore:
    """Budgets in Redis, shared by every worker process and host.

    Give a URL (a client is opened per event loop, lazily) or a ``redis.asyncio`` client instance
    (``Redis`` or ``RedisCluster``) that you own and close.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        key_prefix: str = "aigw:",
        timeout: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give a Redis URL or a client, not both")
        self.url = url
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.max_connections = max_connections
        self._given = client
        self._loop_clients = (
            LoopRedisClients(url, timeout=timeout, max_connections=max_connections) if url else None
        )
        self._gates: dict[int, asyncio.Semaphore] = {}
        #: Per tenant, the markers of hits whose replies came (nothing to give back): deleted by the
        #: tenant's next lookup, in the same script, instead of a call of their own.
        self._spent: dict[str, list[bytes]] = {}
        self._key_cache: dict[tuple[str, int, str, int], list[str]] = {}
        #: The same keys packed as RESP bulk strings for the fast client, beside them.
        self._packed_cache: dict[tuple[str, int, str, int], list[bytes]] = {}
        #: The scripts' arguments that change only with the minute or the limits (see :meth:`_fixed_args`).
        self._args_cache: dict[tuple[tuple[int, ...], int, str, int, int], tuple[str, str, str, str]] = {}
        #: The lookup script's arguments, as text and packed (see :meth:`_lookup_args`).
        self._lookup_cache: dict[
            tuple[Any, ...], tuple[tuple[str, ...], tuple[bytes, ...], tuple[str, str], tuple[bytes, ...]]
        ] = {}

    @property
    def _errors(self) -> tuple[type[BaseException], ...]:
        """What a store call raises when Redis fails. Read only when one raised: redis-py's errors are
        among them once it is imported. A URL of one server never imports it (10 MB and 158 modules
        with the OpenTelemetry SDK it imports): the fast client does the calls; a client you give, a
        cluster or a sentinel URL do."""
        errors: tuple[type[BaseException], ...] = (
            OSError,
            asyncio.TimeoutError,
            asyncio.IncompleteReadError,
            RespError,
        )
        redis_errors = sys.modules.get("redis.exceptions")
        if redis_errors is None:  # no redis-py call has been made: none of its errors can be raised
            return errors
        # ClusterException is not a RedisError: "no reachable node", "slot not covered" of a cluster
        return (redis_errors.RedisError, redis_errors.RedisClusterException, *errors)

    # -- keys ---------------------------------------------------------------------------------------

    def tag(self, tenant: str) -> str:
        return f"{self.key_prefix}{{{tenant}}}:"

    def counter_key(self, tenant: str, slot: Slot) -> str:
        return f"{self.key_prefix}{{{tenant}}}:{slot.suffix}"

    def limits_key(self, tenant: str) -> str:
        return f"{self.key_prefix}{{{tenant}}}:limits"

    # -- client -------------------------------------------------------------------------------------

    def client(self) -> Any:
        """The redis-py client of the running event loop (opened on first use), or the one given."""
        if self._given is not None:
            return self._given
        assert self._loop_clients is not None
        return self._loop_clients.redis()

    async def _script(
        self,
        script: _Script,
        keys: Sequence[str],
        args: Sequence[str],
        packed: Sequence[bytes] | None = None,
        packed_args: Sequence[bytes] = (),
    ) -> Any:
        """Run a script: through the fast client for a URL (``packed``: ``keys`` already packed, and
        ``packed_args`` the ``args``, when given), through redis-py for a given client."""
        if self._given is not None:
            return await self._run(lambda client: script(client, keys, args))
        assert self._loop_clients is not None
        try:
            if packed is not None:
                return await script.fast_packed(self._loop_clients.fast(), packed, args, packed_args)
            return await script.fast(self._loop_clients.fast(), keys, args)
        except self._errors as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    async def _run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """``call(client)`` with at most ``max_connections`` calls in flight per event loop.

        The gate is ours rather than the pool's: redis-py's plain pool raises "Too many connections"
        when a burst exceeds its size, and its blocking pool costs a task per checkout; an uncontended
        semaphore costs next to nothing and a burst simply queues.
        """
        loop_id = id(asyncio.get_running_loop())
        gate = self._gates.get(loop_id)
        if gate is None:
            gate = self._gates[loop_id] = asyncio.Semaphore(self.max_connections)
        try:
            async with gate:
                return await call(self.client())
        except self._errors as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    # -- BudgetStore --------------------------------------------------------------------------------

    def _keys(self, tenant: str, slots: Sequence[Slot]) -> list[str]:
        """The override hash and the slot counters; cached per tenant until the minute changes."""
        # the last slot's suffix names the user of per-user windows (they come last) and the month;
        # the first slot's start the minute: two users of one tenant never share a cache entry
        return self._keys_packed(tenant, slots)[0]

    def _keys_packed(self, tenant: str, slots: Sequence[Slot]) -> tuple[list[str], list[bytes]]:
        """:meth:`_keys`, and the same keys packed for the fast client."""
        cache_key = (tenant, slots[0].start, slots[-1].suffix, len(slots))
        keys = self._key_cache.get(cache_key)
        packed = self._packed_cache.get(cache_key)
        if keys is None or packed is None:
            if len(self._key_cache) > 10_000:
                self._key_cache.clear()
                self._packed_cache.clear()
            prefix = self.tag(tenant)
            keys = [prefix + "limits", *(prefix + slot.suffix for slot in slots)]
            packed = [bulk(key) for key in keys]
            self._key_cache[cache_key] = keys
            self._packed_cache[cache_key] = packed
        return keys, packed

    def _fixed_args(
        self, slots: Sequence[Slot], limits: Sequence[int], grace: int
    ) -> tuple[str, str, str, str]:
        """The limits, the counters' expiry times and the windows' names as the scripts take them
        (comma-separated), and the marker's expiry: formatted once a minute per set of limits, not on
        every call (the slots are told apart as :meth:`_keys` tells them apart)."""
        key = (tuple(limits), slots[0].start, slots[-1].suffix, len(slots), grace)
        found = self._args_cache.get(key)
        if found is None:
            if len(self._args_cache) > 10_000:
                self._args_cache.clear()
            found = (
                ",".join(map(str, limits)),
                ",".join(str(slot.end + grace) for slot in slots),
                ",".join(slot.window.name for slot in slots),
                str(max(slot.end for slot in slots) + grace),
            )
            self._args_cache[key] = found
        return found

    def _lookup_args(
        self,
        slots: Sequence[Slot],
        limits: Sequence[int],
        amounts: Sequence[int],
        hit_amounts: Sequence[int] | None,
        grace: int,
        marked: bool,
    ) -> tuple[tuple[str, ...], tuple[bytes, ...], tuple[str, str], tuple[bytes, ...]]:
        """The lookup script's arguments but the count of markers (the numbers to reserve on a miss and
        on a hit, the windows' names, the marker's expiry; after the count, what the marker holds on a
        miss and on a hit), as text and packed: the same for every request of a body and its limits
        within a minute, so formatted and packed once."""
        key = (
            tuple(limits),
            tuple(amounts),
            None if hit_amounts is None else tuple(hit_amounts),
            slots[0].start,
            slots[-1].suffix,
            len(slots),
            grace,
            marked,
        )
        found = self._lookup_cache.get(key)
        if found is None:
            if len(self._lookup_cache) > 10_000:
                self._lookup_cache.clear()
            limited, ends, names, marker_expires = self._fixed_args(slots, limits, grace)
            nums = f"{limited},{','.join(map(str, amounts))},{ends}"
            hit = "" if hit_amounts is None else f"{limited},{','.join(map(str, hit_amounts))},{ends}"
            args = (nums, names, marker_expires if marked else "", hit)
            records = (",".join(map(str, amounts)), ",".join(map(str, hit_amounts or amounts)))
            found = self._lookup_cache[key] = (
                args,
                tuple(bulk(arg) for arg in args),
                records,
                tuple(bulk(record) for record in records),
            )
        return found

    def marker_key(self, tenant: str, token: str) -> str:
        return f"{self.key_prefix}{{{tenant}}}:r:{token}"

    async def reserve(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        limits: Sequence[int],
        grace: int,
        *,
        token: str | None = None,
    ) -> Reservation:
        keys, packed_keys = self._keys_packed(tenant, slots)
        limited, ends, names, expires = self._fixed_args(slots, limits, grace)
        packed = f"{limited},{','.join(map(str, amounts))},{ends}"
        if token is None:
            reply = await self._script(_RESERVE, keys, (packed, names), packed_keys)
        else:
            marker = self.marker_key(tenant, token)
            marked = [*keys, marker]
            reply = await self._script(
                _RESERVE, marked, (packed, names, expires), [*packed_keys, bulk(marker)]
            )
        return _reservation(reply)

    def reads(self, url: str) -> bool:
        """Whether an entry of the Redis at ``url`` can be read in this store's own scripts: the same URL,
        opened by this store (not a given client), and no cluster (an entry's key has its own slot)."""
        clients = self._loop_clients
        return clients is not None and url == self.url and not clients.topology

    async def reserve_and_get(
        self,
        tenant: str,
        slots: Sequence[Slot],
        amounts: Sequence[int],
        hit_amounts: Sequence[int] | None,
        limits: Sequence[int],
        grace: int,
        entry: bytes,
        *,
        token: str | None = None,
    ) -> tuple[Reservation, bytes | None, bool]:
        """One script: read the entry at key ``entry`` and reserve ``hit_amounts`` when it is there, else
        ``amounts``. The reservation, the entry, and whether the hit's amounts were reserved. With a
        ``token`` the reservation is marked with what it reserved (see :meth:`give_back`); a hit's marker
        needs no settlement and is deleted by a later lookup. Only for an entry on this store's server
        (:meth:`reads`)."""
        keys, packed_keys = self._keys_packed(tenant, slots)
        args, packed_args, records, packed_records = self._lookup_args(
            slots, limits, amounts, hit_amounts, grace, token is not None
        )
        packed = list(packed_keys)
        marker = b""
        if token is not None:
            marker = bulk(self.marker_key(tenant, token))
            packed.append(marker)
        packed.append(b"$%d\r\n%s\r\n" % (len(entry), entry))
        spent = self._spent.pop(tenant, [])
        packed.extend(spent)
        count = b"%d" % len(spent)
        reply = await self._script(
            _LOOKUP_RESERVE,
            keys,
            (*args, str(len(spent)), *records),
            packed,
            (*packed_args, b"$%d\r\n%s\r\n" % (len(count), count), *packed_records),
        )
        found: bytes | None = reply[1]  # a nil bulk string when the entry is not there
        was_hit = reply[2] == b"1"
        reservation = _reservation(reply[0])
        if marker and was_hit and reservation.allowed:
            queue = self._spent.setdefault(tenant, [])
            if len(queue) < _SPENT_MARKERS:
                queue.append(marker)
            if len(self._spent) > 10_000:  # many tenants each left a few: they expire with their windows
                self._spent.clear()
        return reservation, found, was_hit

    async def give_back(self, tenant: str, slots: Sequence[Slot], token: str) -> None:
        """Give back what the reservation marked with ``token`` by :meth:`reserve_and_get` holds, if it
        was made and not settled (its reply was lost); a repeat changes nothing."""
        all_keys, all_packed = self._keys_packed(tenant, slots)
        marker = self.marker_key(tenant, token)
        await self._script(_GIVE_BACK, [marker, *all_keys[1:]], (), [bulk(marker), *all_packed[1:]])

    async def settle(
        self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int], *, token: str | None = None
    ) -> None:
        call = self._settle_call(tenant, slots, deltas, token)
        if call is not None:
            await self._script(_SETTLE, *call)

    def _settle_call(
        self, tenant: str, slots: Sequence[Slot], deltas: Sequence[int], token: str | None
    ) -> tuple[list[str], tuple[str, ...], list[bytes]] | None:
        """The settle script's keys, arguments and packed keys; None when there is nothing to do."""
        all_keys, all_packed = self._keys_packed(tenant, slots)
        # the counters of the slots that change (the override hash comes first), picked in C
        keys = list(compress(all_keys[1:], deltas))
        packed_keys = list(compress(all_packed[1:], deltas))
        packed = ",".join(map(str, filter(None, deltas)))
        if token is not None:
            # even with nothing to add: the marker goes, and a repeat of this call changes nothing
            marker = self.marker_key(tenant, token)
            return [marker, *keys], (packed or "0", "1"), [bulk(marker), *packed_keys]
        if keys:
            return keys, (packed,), packed_keys
        return None

    async def settle_and_send(
        self,
        tenant: str,
        slots: Sequence[Slot],
        deltas: Sequence[int] | None,
        token: str | None,
        commands: Sequence[bytes],
    ) -> list[BaseException | None]:
        """Settle (``deltas`` None: nothing to settle) and send ``commands`` (exact cache entries) in one
        write on this store's connection: one round trip for all. Raises :class:`StoreError` when the
        settlement failed; returns each command's error, or None. Only for a store made from a URL that
        :meth:`reads` (one server)."""
        assert self._loop_clients is not None
        client = self._loop_clients.fast()
        assert isinstance(client, FastRedis)
        call = None if deltas is None else self._settle_call(tenant, slots, deltas, token)
        batch = list(commands)
        if call is not None:
            batch.insert(0, _SETTLE.command_packed(call[2], call[1]))
        try:
            replies = await client.call_many(batch)
            if call is not None:
                settled = replies.pop(0)
                if isinstance(settled, RespError):
                    if not str(settled).startswith("NOSCRIPT"):
                        raise settled
                    await self._script(_SETTLE, *call)  # loaded now, and sent again on its own
        except self._errors as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        return [reply if isinstance(reply, RespError) else None for reply in replies]

    async def usage(self, tenant: str, slots: Sequence[Slot]) -> list[int]:
        keys = [self.counter_key(tenant, slot) for slot in slots]
        values = await self._run(lambda client: client.mget(keys))
        return [int(v) if v is not None else 0 for v in values]

    async def reset_usage(self, tenant: str, slots: Sequence[Slot]) -> None:
        keys = [self.counter_key(tenant, slot) for slot in slots]
        await self._run(lambda client: client.delete(*keys))

    async def get_overrides(self, tenant: str) -> dict[str, int]:
        raw = await self._run(lambda client: client.hgetall(self.limits_key(tenant)))
        return {k.decode() if isinstance(k, bytes) else str(k): int(v) for k, v in raw.items()}

    async def set_overrides(self, tenant: str, values: Mapping[str, int | None]) -> None:
        key = self.limits_key(tenant)
        to_set = {name: int(v) for name, v in values.items() if v is not None}
        to_delete = [name for name, v in values.items() if v is None]
        if to_set:
            await self._run(lambda client: client.hset(key, mapping=to_set))
        if to_delete:
            await self._run(lambda client: client.hdel(key, *to_delete))

    async def clear_overrides(self, tenant: str) -> None:
        await self._run(lambda client: client.delete(self.limits_key(tenant)))

    async def aclose(self) -> None:
        """Close the clients this store opened on the running loop (a given client is the caller's)."""
        try:
            loop_id = id(asyncio.get_running_loop())
        except RuntimeError:
            return
        self._gates.pop(loop_id, None)
        if self._loop_clients is not None:
            await self._loop_clients.aclose()


def open_store(url: str, *, key_prefix: str = "aigw:", timeout: float = 2.0) -> RedisBudgetStore:
    """``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://`` (registered in
    :mod:`asgi_aigw.stores.registry`)."""
    return RedisBudgetStore(url, key_prefix=key_prefix, timeout=timeout)


def _reservation(reply: list[int]) -> Reservation:
    """The reserve function's reply: allowed, then used and limit of each window."""
    return Reservation(reply[0] == 1, reply[1::2], reply[2::2])
