"""The cache's two tiers: an in-process LRU in front of the shared store, and invalidation.

A lookup reads the in-process tier, then asks the shared store (``LenientState``: a failure is
a miss) for all remaining keys and the stamps guarding them in ONE round trip.

Invalidation is explicit, never inferred from absence: a key the shared store does not hold
(Redis was restarted or emptied, the entry was evicted) leaves an in-process copy in place
until its own deadlines. It is not written back: a worker that never saw an invalidation (Redis
was emptied before it rechecked) would put its old copy back for every other worker to take.
An invalidation writes *stamps* (the
epoch time of the invalidation) that every worker reads with the same round trip that brings
the entries: a dropped SKU or order overwrites the item's own key with a tombstone; a pattern
(every price of a SKU, of a customer, every storefront-reference index) sets one stamp key per
dimension, derived from the item key (``CacheKeys.guards``), so no lookup reads a key shared by
every lookup and no invalidation scans the keyspace. In this process, the entries a stamp
guards are indexed when stored, so an invalidation drops exactly those (no pattern is matched
against every entry). An entry, shared or in-process, stored before a stamp that guards it is
gone. Stamps live as long as the longest-lived entry. Both are wall-clock times, possibly of
different hosts: with clocks s seconds apart, an entry stored up to s seconds before an
invalidation may survive it (keep the hosts NTP-synchronised).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from erp_backends.errors import ErpUnavailable
from policies.caching.keys import CacheKeys
from policies.shared_state import LenientState

__all__ = ["BackgroundTasks", "CacheSettings", "InvalidationNotShared", "OperationCache", "TieredStore"]

T = TypeVar("T")


class InvalidationNotShared(ErpUnavailable):
    """An invalidation reached this process only (Redis is down): a 503, so the caller retries."""

    code = "invalidation-not-shared"


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


#: Writes one entry unless its key holds something newer: a tombstone (a bare epoch time) at
#: or after the entry's read time, or an entry read later. An answer the ERP gave before an
#: invalidation, stored after it, would otherwise overwrite the tombstone and be served as new.
#: KEYS[1] the item; ARGV: the envelope, the time its value was read, milliseconds to live.
#: The envelope's last field is its read time (``_Envelope.stored_at``). Answers 1 if written.
_PUT = """
local old = redis.call('GET', KEYS[1])
if old then
  local at
  if string.byte(old, 1) == 91 then at = tonumber(string.match(old, ',([^,]+)%]$'))
  else at = tonumber(old) end
  if at and at >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
_PUT_SCRIPT = "cache-put"


class TieredStore:
    """The two tiers. Values are decoded once on the way in and kept decoded in-process."""

    def __init__(self, shared: LenientState, settings: CacheSettings, keys: CacheKeys) -> None:
        self._shared = shared
        self._settings = settings
        self._keys = keys
        self._local: OrderedDict[str, _Entry[Any]] = OrderedDict()
        #: In-process entries by the stamp keys that guard them (``CacheKeys.guards``).
        self._guarded: dict[str, set[str]] = {}
        self._encoder = msgspec.json.Encoder(decimal_format="string")
        self._envelope = msgspec.json.Decoder(_Envelope | float)  # an entry, or a tombstone
        self._rechecking: set[str] = set()
        #: When this process last dropped entries: a value read before it is not kept in-process.
        self._dropped_at = 0.0
        shared.register_script(_PUT_SCRIPT, _PUT)
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
        if key not in local:
            for guard in self._keys.guards(key):
                self._guarded.setdefault(guard, set()).add(key)
        local[key] = entry
        local.move_to_end(key)
        while len(local) > self._settings.local_max_entries:
            self._forget(next(iter(local)))

    def _forget(self, key: str) -> bool:
        """Drop ``key`` from this process's tier; whether it was there."""
        if self._local.pop(key, None) is None:
            return False
        for guard in self._keys.guards(key):
            guarded = self._guarded.get(guard)
            if guarded is not None:
                guarded.discard(key)
                if not guarded:
                    del self._guarded[guard]
        return True

    async def get_many(self, keys: Sequence[str], decoder: msgspec.json.Decoder[Any]) -> dict[str, _Entry[Any]]:
        """Entries for ``keys``: in-process first, the rest in ONE Redis round trip.

        An in-process copy is served for ``local_ttl_seconds`` after Redis last confirmed it,
        and not a moment longer while Redis answers: that is how an invalidation made
        through any worker or instance reaches this one within the local TTL. A copy read
        in the last quarter of that time is served, and one background read (per key and
        process) asks Redis for what it holds now (a newer entry, an invalidation, or
        nothing: a key Redis lacks keeps the copy), so a hot key is confirmed before it
        runs out and never waits. A copy past it joins the round trip of the missing keys;
        when Redis cannot answer, the copy is served as it is (no invalidation can be shared
        then: see ``InvalidationNotShared``).
        """
        found, remote, held = self._from_local(keys, decoder)
        if remote and self._shared.available:
            found.update(await self._fetch(remote, decoder))
        for key, entry in held.items():
            if key not in found and self._local.get(key) is entry:  # Redis did not answer: the copy stands
                found[key] = entry
        return found

    def peek(self, key: str, decoder: msgspec.json.Decoder[Any]) -> _Entry[Any] | None:
        """The in-process entry for ``key``, without waiting for anything (see ``get_many``)."""
        found, _, _ = self._from_local((key,), decoder)
        return found.get(key)

    def read_at(self, key: str) -> float | None:
        """When the value this process holds for ``key`` was read from the ERP (None: none held)."""
        entry = self._local.get(key)
        return None if entry is None else entry.stored_at

    def _from_local(
        self, keys: Sequence[str], decoder: msgspec.json.Decoder[Any]
    ) -> tuple[dict[str, _Entry[Any]], list[str], dict[str, _Entry[Any]]]:
        """(servable in-process entries, keys to ask Redis for, copies that Redis must confirm
        first but that stand if it cannot answer); schedules the background rechecks."""
        now = time.time()
        found: dict[str, _Entry[Any]] = {}
        remote: list[str] = []
        held: dict[str, _Entry[Any]] = {}
        recheck: list[str] = []
        local = self._local
        shared = self._shared.available
        ahead = self._settings.local_ttl_seconds / 4
        for key in keys:
            entry = local.get(key)
            if entry is None or entry.error_until <= now:
                remote.append(key)
                continue
            local.move_to_end(key)
            if shared and entry.local_until <= now:
                remote.append(key)
                held[key] = entry
                continue
            found[key] = entry
            if shared and entry.local_until - ahead <= now and key not in self._rechecking:
                recheck.append(key)
        if recheck:
            self._recheck(recheck, decoder)
        return found, remote, held

    async def _fetch(self, keys: list[str], decoder: msgspec.json.Decoder[Any]) -> dict[str, _Entry[Any]]:
        """Read ``keys`` and the stamps guarding them from Redis (ONE MGET) into the in-process tier.

        A tombstone or a newer stamp drops the entry; a key Redis lacks keeps a usable
        in-process copy (in this process only: see the module docstring)."""
        guards = {key: self._keys.guards(key) for key in keys}
        stamp_keys = list(dict.fromkeys(g for gs in guards.values() for g in gs))
        raw = await self._shared.get_many([*keys, *stamp_keys])
        if raw is None:  # the shared store failed: keep what we have
            return {}
        stamps = {g: _stamp(blob) for g, blob in zip(stamp_keys, raw[len(keys) :], strict=True)}
        now = time.time()
        local_until = now + self._settings.local_ttl_seconds
        found: dict[str, _Entry[Any]] = {}
        for key, blob in zip(keys, raw[: len(keys)], strict=True):
            dropped_at = max((stamps[g] for g in guards[key]), default=0.0)
            local = self._local.get(key)
            if blob is None:  # not an invalidation: Redis was emptied, or evicted the entry
                if local is None:
                    continue
                if _predates(local.stored_at, dropped_at) or local.error_until <= now:
                    self._forget(key)
                    continue
                local.local_until = min(local_until, local.fresh_until) if local.fresh_until > now else local_until
                found[key] = local
                continue
            try:
                env = self._envelope.decode(blob)
            except msgspec.DecodeError:
                continue  # written by an incompatible version: a miss
            if isinstance(env, float):  # a tombstone: the item was invalidated then
                dropped_at = max(dropped_at, env)
            if isinstance(env, float) or _predates(env.stored_at, dropped_at):  # (or stored before a stamp)
                if local is not None and _predates(local.stored_at, dropped_at):
                    self._forget(key)
                continue
            try:
                value = decoder.decode(env.payload)
            except msgspec.DecodeError:
                continue
            keep = min(local_until, env.fresh_until) if env.fresh_until > now else local_until
            entry = _Entry(value, env.fresh_until, env.stale_until, env.error_until, keep, env.stored_at)
            found[key] = entry
            self._remember(key, entry)
        return found

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

    async def put_many(self, items: Iterable[tuple[str, Any, OperationCache | float]], *, read_at: float) -> None:
        """Store values the ERP gave at ``read_at`` (taken before the call was sent): their
        deadlines and their place against any invalidation count from then. In Redis, an entry
        does not replace a newer one or a tombstone written since ``read_at`` (``_PUT``); in
        this process, values read before its last invalidation are not kept, and a copy lives
        ``local_ttl_seconds`` from ``read_at``."""
        now = time.time()
        calls: list[tuple[Sequence[str], Sequence[Any]]] = []
        shared = self._shared.configured
        keep = read_at > self._dropped_at
        local_until = read_at + self._settings.local_ttl_seconds
        stamp = repr(read_at)
        for key, value, rule in items:
            if isinstance(rule, OperationCache):
                fresh = read_at + rule.ttl_seconds
                stale = fresh + rule.stale_while_revalidate_seconds
                error = fresh + max(rule.stale_if_error_seconds, rule.stale_while_revalidate_seconds)
            else:
                fresh = stale = error = read_at + rule
            if error <= now:
                continue
            entry = _Entry(value, fresh, stale, error, min(local_until, fresh), read_at)
            if keep:
                self._remember(key, entry)
            if shared:
                calls.append(([key], [self._blob(value, entry), stamp, max(1, int((error - now) * 1000))]))
        await self._shared.run_script_many(_PUT_SCRIPT, calls)

    async def delete(self, keys: Sequence[str], stamps: Sequence[str] = ()) -> int:
        """Drop ``keys`` and the entries the ``stamps`` guard from this process's tier (found in
        the index, not by matching every entry); for every other process and instance, overwrite
        ``keys`` in the shared store with tombstones and set the stamps, in one round trip.
        Answers the entries known to be dropped."""
        self._dropped_at = time.time()
        dropped = sum(1 for key in keys if self._forget(key))
        for stamp in stamps:
            dropped += sum(1 for key in self._guarded.pop(stamp, ()) if self._forget(key))
        if not keys and not stamps:
            return dropped
        tombstone = repr(self._dropped_at).encode()
        before = await self._shared.swap_many([(key, tombstone, self._stamp_ms) for key in [*keys, *stamps]])
        if before is None:
            if self._shared.configured:  # this process dropped its copies; the others cannot know
                raise InvalidationNotShared(
                    "the invalidation could not be written to Redis: other workers and instances keep "
                    "their copies until their TTL; retry once Redis answers"
                )
            return dropped
        return max(dropped, sum(1 for old in before[: len(keys)] if old is not None and old[:1] == b"["))
