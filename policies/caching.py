"""Caching: read operations answered from a two-tier cache, per item, with coalesced misses.

Tiers: an in-process LRU (bounded, short-lived: ``local_ttl_seconds``) in front of Redis
(shared by every worker and instance). A lookup reads the local tier, then asks Redis for
all remaining keys in ONE round trip (MGET); misses go to the ERP in ONE batched call.

Items, so that batches and single requests share entries:
- availability per SKU (all warehouses; a warehouse filter is applied after the cache);
- prices per currency, customer, SKU and quantity (exact quantity: a tier boundary is the
  ERP's secret, so quantity is the only key that can never give a wrong price);
- orders per order number, and the storefront-reference index to order numbers.

Freshness per entry: until ``ttl`` it is served as ``cached``; until ``ttl + stale_while_
revalidate`` it is served ``stale`` while one background call refreshes it; until ``ttl +
stale_if_error`` it is served ``stale`` only when the ERP fails. Misses for the same key are
coalesced: concurrent requests in one process share one ERP call. Order validation and
returns are never answered from the cache.

Invalidation is explicit, never inferred from absence: a key Redis does not hold (Redis was
restarted or emptied, the entry was evicted) leaves an in-process copy in place until its own
deadlines, and the copy is written back to Redis. An invalidation writes *stamps* (the epoch
time of the invalidation) that every worker reads with the same one MGET that brings the
entries: a dropped SKU or order overwrites the item's own key with a tombstone; a pattern
(every price of a SKU, of a customer, every storefront-reference index) sets one stamp key
per dimension, derived from the item key (``_guards``), so no lookup reads a key shared by
every lookup and no invalidation scans the keyspace. An entry, in Redis or in-process, stored
before a stamp that guards it is gone. Stamps live as long as the longest-lived entry. Both
are wall-clock times, possibly of different hosts: with clocks s seconds apart, an entry stored
up to s seconds before an invalidation may survive it (keep the hosts NTP-synchronised).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec

from contracts.v1 import (
    AvailabilityBatch,
    Order,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckLine,
    PriceCheckRequest,
    PriceLine,
    ReturnAuthorization,
    ReturnRequest,
    SkuAvailability,
)
from contracts.v1._types import Freshness
from erp_backends.errors import ErpTimeout, ErpUnavailable, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, ReturnOutcome
from erp_backends.rules import price_check
from policies.redis_link import RedisLink

__all__ = [
    "CacheOutcome",
    "CacheSettings",
    "CachingBackend",
    "OperationCache",
    "cache_status_header",
    "current_cache_outcome",
    "note_hit",
    "reset_cache_outcome",
]

log = logging.getLogger("erp_gateway.cache")
T = TypeVar("T")
Kind = Literal["availability", "prices", "orders"]


class OperationCache(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Freshness rules of one operation's entries, in seconds."""

    ttl_seconds: float
    stale_while_revalidate_seconds: float
    stale_if_error_seconds: float


class CacheSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Answer reads from the cache at all.
    enabled: bool = True
    #: Entries kept in each worker's in-process tier (LRU beyond that).
    local_max_entries: int = 20_000
    #: Seconds an entry stays in the in-process tier before Redis is asked again; bounds how
    #: long another worker may serve an entry after it was invalidated.
    local_ttl_seconds: float = 1.0
    #: Seconds an unknown SKU is remembered as unknown.
    unknown_sku_ttl_seconds: float = 30.0
    availability: OperationCache = OperationCache(
        ttl_seconds=5, stale_while_revalidate_seconds=10, stale_if_error_seconds=300
    )
    prices: OperationCache = OperationCache(
        ttl_seconds=60, stale_while_revalidate_seconds=60, stale_if_error_seconds=3600
    )
    orders: OperationCache = OperationCache(
        ttl_seconds=15, stale_while_revalidate_seconds=0, stale_if_error_seconds=600
    )


# -- per-request outcome, for the Cache-Status header (RFC 9211) -----------------------------


class CacheOutcome:
    """What the cache did for the current request; read by the gateway for ``Cache-Status``."""

    __slots__ = ("collapsed", "hits", "misses", "revalidating", "stale", "stale_if_error", "ttl")

    def __init__(self) -> None:
        self.hits = self.misses = self.stale = 0
        self.collapsed = self.revalidating = self.stale_if_error = False
        self.ttl: float | None = None

    def header(self) -> str:
        parts = ["erp-gateway"]
        if self.misses == 0:
            parts.append("hit")
            if self.ttl is not None:
                parts.append(f"ttl={int(self.ttl)}")
            if self.stale_if_error:
                parts.append('detail="stale-if-error"')
            elif self.stale:
                parts.append('detail="stale-while-revalidate"')
        else:
            parts.append("fwd=miss" if self.hits == 0 and self.stale == 0 else "fwd=partial")
            parts.append("stored")
            if self.collapsed:
                parts.append("collapsed")
        return "; ".join(parts)


_outcome: contextvars.ContextVar[CacheOutcome | None] = contextvars.ContextVar("cache_outcome", default=None)


def cache_status_header() -> str | None:
    """The ``Cache-Status`` value for the request being answered, if the cache was consulted."""
    outcome = _outcome.get()
    return None if outcome is None else outcome.header()


def current_cache_outcome() -> CacheOutcome | None:
    """What the cache did for the request being answered (None: not consulted)."""
    return _outcome.get()


def reset_cache_outcome() -> None:
    """Start a new request's record (each server request already runs in its own context)."""
    _outcome.set(None)


def note_hit(ttl: float) -> None:
    """Record a cache hit served outside ``CachingBackend`` (``cached_availability``)."""
    note = _note()
    note.hits += 1
    note.ttl = ttl if note.ttl is None else min(note.ttl, ttl)


def _note() -> CacheOutcome:
    outcome = _outcome.get()
    if outcome is None:
        outcome = CacheOutcome()
        _outcome.set(outcome)
    return outcome


# -- entries and the two tiers ----------------------------------------------------------------


class _Envelope(msgspec.Struct, array_like=True):
    """What Redis stores: the item's JSON, its freshness deadlines and when it was stored
    (epoch seconds). An item's key holds either this or a tombstone: a bare number, the
    time the item was invalidated."""

    payload: msgspec.Raw
    fresh_until: float
    stale_until: float
    error_until: float
    stored_at: float = 0.0  # 0: written by a version without stamps, older than any stamp


class _Entry(Generic[T]):
    __slots__ = ("error_until", "fresh_until", "json", "local_until", "stale_until", "stored_at", "value")

    def __init__(
        self,
        value: T,
        fresh_until: float,
        stale_until: float,
        error_until: float,
        local_until: float,
        stored_at: float,
    ) -> None:
        self.value = value
        self.json: bytes | None = None  # the value as served ``cached``, encoded once (the hot path)
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.error_until = error_until
        self.local_until = local_until
        self.stored_at = stored_at


#: Stamp keys (without the Redis prefix) of the pattern invalidations.
_PRICES_OF_SKU = "gone:price-sku:"
_PRICES_OF_CUSTOMER = "gone:price-customer:"
_ORDER_REFS = "gone:orderref"


def _guards(key: str) -> tuple[str, ...]:
    """The stamp keys, besides the item's own key, whose invalidations drop ``key``: derived from
    the key alone, so a lookup asks for them in the same MGET."""
    if key.startswith("price:"):  # price:{currency}:{customer}:{sku}:{quantity}
        _, _, customer, sku, _ = key.split(":", 4)
        return (_PRICES_OF_SKU + sku, _PRICES_OF_CUSTOMER + customer)
    if key.startswith("orderref:"):
        return (_ORDER_REFS,)
    return ()


def _predates(stored_at: float, dropped_at: float) -> bool:
    """Whether an entry stored then is dropped by the latest stamp guarding it (0: none)."""
    return dropped_at > 0 and stored_at <= dropped_at


def _stamp(blob: bytes | str | None) -> float:
    """The time in a stamp key's value (0: none)."""
    if blob is None:
        return 0.0
    try:
        return float(blob)
    except ValueError:
        return 0.0


class BackgroundTasks:
    """Refreshes that outlive the request that started them; cancelled together at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)  # a strong reference until done
        task.add_done_callback(self._tasks.discard)

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class TieredStore:
    """The two tiers. Values are decoded once on the way in and kept decoded in-process."""

    def __init__(self, redis: RedisLink, settings: CacheSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._local: OrderedDict[str, _Entry[Any]] = OrderedDict()
        self._encoder = msgspec.json.Encoder(decimal_format="string")
        self._envelope = msgspec.json.Decoder(_Envelope | float)  # an entry, or a tombstone
        self._rechecking: set[str] = set()
        self.background = BackgroundTasks()
        #: How long a stamp must outlive its invalidation: as long as any entry stored before it.
        longest = max(
            rule.ttl_seconds + max(rule.stale_while_revalidate_seconds, rule.stale_if_error_seconds)
            for rule in (settings.availability, settings.prices, settings.orders)
        )
        self._stamp_ms = int(1000 * (max(longest, settings.unknown_sku_ttl_seconds) + 1))

    @property
    def size(self) -> int:
        """Entries held in-process (at most ``local_max_entries``)."""
        return len(self._local)

    def _remember(self, key: str, entry: _Entry[Any]) -> None:
        local = self._local
        local[key] = entry
        local.move_to_end(key)
        while len(local) > self._settings.local_max_entries:
            local.popitem(last=False)

    async def get_many(self, keys: Sequence[str], decoder: msgspec.json.Decoder[Any]) -> dict[str, _Entry[Any]]:
        """Entries for ``keys``: in-process first, the rest in ONE Redis round trip.

        A usable in-process copy is never held up by Redis: once older than
        ``local_ttl_seconds`` it is still served while one background read (per key and
        process) picks up what Redis holds now, a newer entry or an invalidation (a key
        Redis lacks is neither: the copy stays, and goes back to Redis).
        """
        found, remote = self._from_local(keys, decoder)
        if remote and self._redis.available:
            found.update(await self._fetch(remote, decoder))
        return found

    def peek(self, key: str, decoder: msgspec.json.Decoder[Any]) -> _Entry[Any] | None:
        """The in-process entry for ``key``, without waiting for anything (see ``get_many``)."""
        found, _ = self._from_local((key,), decoder)
        return found.get(key)

    def _from_local(
        self, keys: Sequence[str], decoder: msgspec.json.Decoder[Any]
    ) -> tuple[dict[str, _Entry[Any]], list[str]]:
        """(usable in-process entries, keys to ask Redis for); schedules the background rechecks."""
        now = time.time()
        found: dict[str, _Entry[Any]] = {}
        remote: list[str] = []
        recheck: list[str] = []
        local = self._local
        shared = self._redis.available
        for key in keys:
            entry = local.get(key)
            if entry is None or entry.error_until <= now:
                remote.append(key)
                continue
            found[key] = entry
            local.move_to_end(key)
            if shared and entry.local_until <= now and key not in self._rechecking:
                recheck.append(key)
        if recheck:
            self._recheck(recheck, decoder)
        return found, remote

    async def _fetch(self, keys: list[str], decoder: msgspec.json.Decoder[Any]) -> dict[str, _Entry[Any]]:
        """Read ``keys`` and the stamps guarding them from Redis (ONE MGET) into the in-process tier.

        A tombstone or a newer stamp drops the entry; a key Redis lacks keeps a usable
        in-process copy, which is written back (unless another worker wrote one meanwhile)."""
        guards = {key: _guards(key) for key in keys}
        stamp_keys = list(dict.fromkeys(g for gs in guards.values() for g in gs))
        prefix = self._redis.prefix
        names = [prefix + k for k in keys] + [prefix + g for g in stamp_keys]
        raw = await self._redis.call(lambda r: r.mget(names), None)
        if raw is None:  # Redis failed: keep what we have
            return {}
        stamps = {g: _stamp(blob) for g, blob in zip(stamp_keys, raw[len(keys) :], strict=True)}
        now = time.time()
        local_until = now + self._settings.local_ttl_seconds
        found: dict[str, _Entry[Any]] = {}
        restore: list[tuple[str, _Entry[Any]]] = []
        for key, blob in zip(keys, raw[: len(keys)], strict=True):
            dropped_at = max((stamps[g] for g in guards[key]), default=0.0)
            local = self._local.get(key)
            if blob is None:  # not an invalidation: Redis was emptied, or evicted the entry
                if local is None:
                    continue
                if _predates(local.stored_at, dropped_at) or local.error_until <= now:
                    del self._local[key]
                    continue
                local.local_until = min(local_until, local.fresh_until) if local.fresh_until > now else local_until
                found[key] = local
                restore.append((key, local))
                continue
            try:
                env = self._envelope.decode(blob)
            except msgspec.DecodeError:
                continue  # written by an incompatible version: a miss
            if isinstance(env, float):  # a tombstone: the item was invalidated then
                dropped_at = max(dropped_at, env)
            if isinstance(env, float) or _predates(env.stored_at, dropped_at):  # (or stored before a stamp)
                if local is not None and _predates(local.stored_at, dropped_at):
                    del self._local[key]
                continue
            try:
                value = decoder.decode(env.payload)
            except msgspec.DecodeError:
                continue
            keep = min(local_until, env.fresh_until) if env.fresh_until > now else local_until
            entry = _Entry(value, env.fresh_until, env.stale_until, env.error_until, keep, env.stored_at)
            found[key] = entry
            self._remember(key, entry)
        if restore:
            await self._write_back(restore, now)
        return found

    async def _write_back(self, entries: list[tuple[str, _Entry[Any]]], now: float) -> None:
        """Put in-process copies that Redis lost back into Redis, each until its own deadline;
        ``NX``: an entry another worker wrote in the meantime wins."""
        writes = [
            (self._redis.prefix + key, self._blob(entry.value, entry), int((entry.error_until - now) * 1000))
            for key, entry in entries
        ]

        async def write(r: Any) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for name, blob, ttl_ms in writes:
                    if ttl_ms > 0:
                        pipe.set(name, blob, px=ttl_ms, nx=True)
                await pipe.execute()

        await self._redis.call(write, None)

    def _blob(self, value: Any, entry: _Entry[Any]) -> bytes:
        payload = self._encoder.encode(value)
        envelope = _Envelope(
            msgspec.Raw(payload), entry.fresh_until, entry.stale_until, entry.error_until, entry.stored_at
        )
        return self._encoder.encode(envelope)

    def _recheck(self, keys: list[str], decoder: msgspec.json.Decoder[Any]) -> None:
        self._rechecking.update(keys)

        async def run() -> None:
            try:
                await self._fetch(keys, decoder)
            finally:
                self._rechecking.difference_update(keys)

        self.background.spawn(run())

    async def put_many(self, items: Iterable[tuple[str, Any, OperationCache | float]]) -> None:
        now = time.time()
        writes: list[tuple[str, bytes, int]] = []
        local_until = now + self._settings.local_ttl_seconds
        for key, value, rule in items:
            if isinstance(rule, OperationCache):
                fresh = now + rule.ttl_seconds
                stale = fresh + rule.stale_while_revalidate_seconds
                error = fresh + max(rule.stale_if_error_seconds, rule.stale_while_revalidate_seconds)
            else:
                fresh = stale = error = now + rule
            entry = _Entry(value, fresh, stale, error, min(local_until, fresh), now)
            self._remember(key, entry)
            if self._redis.configured:
                writes.append((self._redis.prefix + key, self._blob(value, entry), max(1, int((error - now) * 1000))))
        if writes:

            async def write(r: Any) -> None:
                async with r.pipeline(transaction=False) as pipe:
                    for key, blob, ttl_ms in writes:
                        pipe.set(key, blob, px=ttl_ms)
                    await pipe.execute()

            await self._redis.call(write, None)

    async def delete(self, keys: Sequence[str], patterns: Sequence[str] = (), stamps: Sequence[str] = ()) -> int:
        """Drop ``keys`` and the glob ``patterns`` from this process's tier; for every other
        process and instance, overwrite ``keys`` in Redis with tombstones and set the stamp keys
        that guard the patterns (``_guards``). Answers the entries known to be dropped."""
        import fnmatch

        dropped = 0
        for key in list(self._local):
            if key in keys or any(fnmatch.fnmatchcase(key, p) for p in patterns):
                del self._local[key]
                dropped += 1
        if not keys and not stamps:
            return dropped
        tombstone = repr(time.time()).encode()
        prefix, ttl_ms = self._redis.prefix, self._stamp_ms

        async def mark(r: Any) -> int:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(prefix + key, tombstone, px=ttl_ms, get=True)
                for stamp in stamps:
                    pipe.set(prefix + stamp, tombstone, px=ttl_ms)
                before = await pipe.execute()
            return sum(1 for old in before[: len(keys)] if old is not None and old[:1] == b"[")

        return max(dropped, await self._redis.call(mark, 0))


# -- the caching backend ------------------------------------------------------------------------

_AVAIL = msgspec.json.Decoder(SkuAvailability | None)  # None: the ERP does not know the SKU
_ANSWER = msgspec.json.Encoder()  # as Litestar encodes a Struct answer (tests/api/test_hot_path.py)
_PRICE = msgspec.json.Decoder(PriceLine)
_ORDER = msgspec.json.Decoder(Order)
_REF = msgspec.json.Decoder(list[str])
_ERP_DOWN = (ErpUnavailable, ErpTimeout)
#: Fetches missing keys from the ERP, stores them, and returns what it found.
Fetch = Callable[[list[str]], Coroutine[Any, Any, dict[str, Any]]]


class CachingBackend(ErpBackend):
    """Wraps a backend (already shielded by limits and breakers) with the two-tier cache."""

    def __init__(self, inner: ErpBackend, redis: RedisLink, settings: CacheSettings) -> None:
        self.inner = inner
        self.name = inner.name
        self.settings = settings
        self.store = TieredStore(redis, settings)
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._warehouses: frozenset[str] | None = None

    # -- shared machinery ------------------------------------------------------------------

    def _join(self, keys: Sequence[str], fetch: Fetch) -> list[asyncio.Task[dict[str, Any]]]:
        """The fetches that will bring ``keys``: the ones in flight in this process, and ONE new
        fetch for the rest, registered before this returns (so a request in the same event-loop
        turn joins it instead of starting its own)."""
        tasks: dict[asyncio.Task[dict[str, Any]], None] = {}
        mine = [k for k in keys if k not in self._inflight]
        if len(mine) < len(keys):
            _note().collapsed = True
        for key in keys:
            if key in self._inflight:
                tasks[self._inflight[key]] = None
        if mine:
            task = asyncio.create_task(fetch(mine))
            for key in mine:
                self._inflight[key] = task

            def done(t: asyncio.Task[dict[str, Any]], owned: list[str] = mine) -> None:
                for key in owned:
                    if self._inflight.get(key) is t:
                        del self._inflight[key]
                if not t.cancelled():
                    t.exception()  # retrieved here so an unobserved failure is not reported twice

            task.add_done_callback(done)
            tasks[task] = None
        return list(tasks)

    async def _coalesced(self, keys: Sequence[str], fetch: Fetch) -> dict[str, Any]:
        """Values for ``keys`` from ONE fetch per key in this process, however many ask at once."""
        out: dict[str, Any] = {}
        for task in self._join(keys, fetch):
            out.update(await asyncio.shield(task))
        return {k: out[k] for k in keys if k in out}

    def _revalidate(self, keys: Sequence[str], fetch: Fetch) -> None:
        """Refresh stale keys in the background (once per key per process)."""
        todo = [k for k in keys if k not in self._inflight]
        if not todo:
            return
        tasks = self._join(todo, fetch)

        async def run() -> None:
            for task in tasks:
                try:
                    # shielded: cancelling this watcher (shutdown) must not cancel a fetch that
                    # requests may have joined
                    await asyncio.shield(task)
                except Exception as exc:  # the stale value keeps being served
                    log.info("background revalidation failed: %s", exc)

        self.store.background.spawn(run())

    async def _read(
        self,
        keys: Sequence[str],
        decoder: msgspec.json.Decoder[Any],
        fetch: Fetch,
    ) -> dict[str, tuple[Any, Freshness]]:
        """Value and freshness per key: cached, stale, or fetched (coalesced) from the ERP."""
        note = _note()
        now = time.time()
        entries = await self.store.get_many(keys, decoder)
        out: dict[str, tuple[Any, Freshness]] = {}
        need: list[str] = []
        refresh: list[str] = []
        for key in keys:
            entry = entries.get(key)
            if entry is None or entry.stale_until <= now:
                need.append(key)
                continue
            ttl = entry.fresh_until - now
            note.ttl = ttl if note.ttl is None else min(note.ttl, ttl)
            if ttl > 0:
                out[key] = (entry.value, "cached")
                note.hits += 1
            else:
                out[key] = (entry.value, "stale")
                note.stale += 1
                refresh.append(key)
        if refresh:
            self._revalidate(refresh, fetch)
        if need:
            note.misses += len(need)
            try:
                fetched = await self._coalesced(need, fetch)
            except _ERP_DOWN:
                # stale-if-error: every missing key must have an entry still inside its error window
                if not all(key in entries and entries[key].error_until > now for key in need):
                    raise
                note.stale_if_error = True
                note.misses -= len(need)
                note.stale += len(need)
                for key in need:
                    out[key] = (entries[key].value, "stale")
                    ttl = entries[key].fresh_until - now
                    note.ttl = ttl if note.ttl is None else min(note.ttl, ttl)
            else:
                for key in need:
                    if key in fetched:
                        out[key] = (fetched[key], "fresh")
        return out

    # -- availability ----------------------------------------------------------------------

    async def _fetch_availability(self, keys: list[str], ctx: CallContext) -> dict[str, Any]:
        skus = [k.split(":", 1)[1] for k in keys]
        batch = await self.inner.get_availability(skus, None, ctx)
        found: dict[str, Any] = {f"avail:{item.sku}": item for item in batch.items}
        if batch.items:
            self._warehouses = frozenset(w.warehouse for w in batch.items[0].warehouses)
        found.update({f"avail:{sku}": None for sku in batch.unknown_skus})
        rule = self.settings.availability
        await self.store.put_many(
            (k, v, self.settings.unknown_sku_ttl_seconds if v is None else rule) for k, v in found.items()
        )
        return found

    def cached_availability(self, sku: str) -> tuple[bytes, float] | None:
        """The SKU's stock as the JSON of a ``cached`` answer, and the seconds of freshness left,
        when this process holds a fresh answer: no await, no Redis, no ERP (``gateway.hot_path``).
        None: ask ``get_availability``. Whoever serves it records the hit with ``note_hit``."""
        entry = self.store.peek(f"avail:{sku}", _AVAIL)
        if entry is None or entry.value is None:
            return None
        ttl = entry.fresh_until - time.time()
        if ttl <= 0:
            return None
        if entry.json is None:  # encoded once per entry, not once per request
            entry.json = _ANSWER.encode(_select(entry.value, None, "cached"))
        return entry.json, ttl

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        unique = list(dict.fromkeys(skus))
        keys = [f"avail:{sku}" for sku in unique]
        values = await self._read(keys, _AVAIL, lambda missing: self._fetch_availability(missing, ctx))
        wanted = list(dict.fromkeys(warehouses)) if warehouses else None
        if wanted and self._warehouses is not None:
            for code in wanted:
                if code not in self._warehouses:
                    raise Rejected("unknown-warehouse", f"warehouse {code!r} is unknown", field="warehouse")
        items: list[SkuAvailability] = []
        unknown: list[str] = []
        for sku, key in zip(unique, keys, strict=True):
            value, freshness = values.get(key, (None, "fresh"))
            if value is None:
                unknown.append(sku)
                continue
            items.append(_select(value, wanted, freshness))
        return AvailabilityBatch(items=items, unknown_skus=unknown)

    # -- prices ----------------------------------------------------------------------------

    async def _fetch_prices(self, keys: list[str], request: PriceCheckRequest, ctx: CallContext) -> dict[str, Any]:
        lines = [PriceCheckLine(sku=k.split(":")[3], quantity=int(k.split(":")[4])) for k in keys]
        try:
            answer = await self.inner.check_prices(
                PriceCheckRequest(currency=request.currency, customer=request.customer, lines=lines), ctx
            )
        except Rejected as exc:
            raise _renumbered(exc, lines, request) from exc
        found = dict(zip(keys, answer.lines, strict=True))
        await self.store.put_many((k, v, self.settings.prices) for k, v in found.items())
        return found

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        customer = request.customer or "-"
        keys = [f"price:{request.currency}:{customer}:{line.sku}:{line.quantity}" for line in request.lines]
        unique = list(dict.fromkeys(keys))
        values = await self._read(unique, _PRICE, lambda missing: self._fetch_prices(missing, request, ctx))
        lines = [msgspec.structs.replace(values[k][0], freshness=values[k][1]) for k in keys]
        oldest = min((line.as_of for line in lines if line.as_of is not None), default=None)
        return price_check(request.customer, request.currency, lines, oldest or datetime.now(UTC))

    # -- orders ----------------------------------------------------------------------------

    async def _fetch_orders(self, keys: list[str], ctx: CallContext) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key in keys:
            try:
                found[key] = await self.inner.get_order(key.split(":", 1)[1], ctx)
            except NotFound:
                continue
        await self.store.put_many((k, v, self.settings.orders) for k, v in found.items())
        return found

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        key = f"order:{order_number}"
        values = await self._read([key], _ORDER, lambda missing: self._fetch_orders(missing, ctx))
        if key not in values:
            raise NotFound("order", order_number)
        order, freshness = values[key]
        return msgspec.structs.replace(order, freshness=freshness)  # type: ignore[no-any-return]

    async def _fetch_ref(self, keys: list[str], ctx: CallContext) -> dict[str, Any]:
        (key,) = keys
        found = await self.inner.find_orders(key.split(":", 1)[1], ctx)
        numbers = [o.order_number for o in found.items]
        rule = self.settings.orders
        await self.store.put_many([(key, numbers, rule), *((f"order:{o.order_number}", o, rule) for o in found.items)])
        return {key: numbers}

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        key = f"orderref:{external_ref}"
        values = await self._read([key], _REF, lambda missing: self._fetch_ref(missing, ctx))
        numbers, _ = values[key]
        orders = [await self.get_order(number, ctx) for number in numbers]
        return OrderList(items=orders)

    # -- never cached ----------------------------------------------------------------------

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        return await self.inner.validate_order(request, ctx)

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        outcome = await self.inner.create_return(request, idempotency, ctx)
        await self.invalidate(orders=[request.order_number])  # returned quantities changed
        return outcome

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self.inner.get_return(rma_number, ctx)

    async def start(self, ctx: CallContext) -> None:
        await self.inner.start(ctx)

    async def check_ready(self) -> None:
        await self.inner.check_ready()

    async def aclose(self) -> None:
        self.store.background.cancel_all()
        await self.inner.aclose()

    # -- invalidation (ERP-side change events) ---------------------------------------------

    async def invalidate(
        self, *, skus: Sequence[str] = (), customers: Sequence[str] = (), orders: Sequence[str] = ()
    ) -> int:
        keys = [f"avail:{sku}" for sku in skus] + [f"order:{number}" for number in orders]
        patterns = [f"price:*:*:{sku}:*" for sku in skus] + [f"price:*:{c}:*" for c in customers]
        stamps = [_PRICES_OF_SKU + sku for sku in skus] + [_PRICES_OF_CUSTOMER + c for c in customers]
        if orders:
            patterns.append("orderref:*")
            stamps.append(_ORDER_REFS)
        return await self.store.delete(keys, patterns, stamps)


def _select(item: SkuAvailability, wanted: list[str] | None, freshness: Freshness) -> SkuAvailability:
    """The item restricted to the warehouses asked for, with its freshness."""
    if wanted is None:
        return msgspec.structs.replace(item, freshness=freshness)
    per_wh = [w for w in item.warehouses if w.warehouse in wanted]
    per_wh.sort(key=lambda w: wanted.index(w.warehouse))
    return msgspec.structs.replace(
        item,
        warehouses=per_wh,
        on_hand=sum(w.on_hand for w in per_wh),
        committed=sum(w.committed for w in per_wh),
        available_to_promise=sum(w.available_to_promise for w in per_wh),
        freshness=freshness,
    )


def _renumbered(exc: Rejected, asked: list[PriceCheckLine], request: PriceCheckRequest) -> Rejected:
    """A rejection of the partial ERP call, pointing at the line of the caller's request."""
    if not exc.field or not exc.field.startswith("lines["):
        return exc
    index, _, rest = exc.field[len("lines[") :].partition("]")
    wanted = asked[int(index)]
    original = next(
        i for i, line in enumerate(request.lines) if (line.sku, line.quantity) == (wanted.sku, wanted.quantity)
    )
    return Rejected(exc.code, exc.detail, field=f"lines[{original}]{rest}", available=exc.available)
