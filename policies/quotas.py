"""Per-client quotas, enforced across every worker and instance through Redis.

A fixed window per client (``requests`` per ``window_seconds``, by client class). The
shared counter lives in Redis and is changed only by one atomic Lua script; to keep Redis
off the hot path, a worker *leases* a few tokens at a time and spends them locally:

    lease = clamp(floor(left / lease_divisor), 1, max_lease)

Exactness: never more than ``requests`` pass in a window, whatever the number of workers.
Near the end of a window leases shrink to one token, so the last requests are counted one by
one; earlier, a worker can hold at most ``lease - 1`` unspent tokens that no other worker can
use, never more than 1/``lease_divisor`` of what was left (for 600/min and 2 workers, at most
2 x 8 requests of the 600 may be refused early). ``max_lease`` is sized for high-rate clients:
a lease must outlast one event-loop turn of a busy worker (a turn can serve 64 requests at 64
connections), or requests queue for Redis while the next lease is on its way.

The counter is a ``LenientState`` script (``policies.shared_state``), never a raw client, on
two keys of one hash slot (``quota_keys``), so it runs on Redis Cluster as on one server. A
lease is never applied twice: it carries an id, and a lease id already granted answers its
grant again (a retry after a timeout or a lost connection; see ``gateway.shared_state.connect``).

When Redis cannot be asked (down, or a failover under way), ``when_redis_down`` decides:
``local`` (default) lets each process admit ``requests / workers`` in the window, counting what
it already admitted through Redis in that window; ``open`` lets everything through; ``closed``
answers 503. The bound, stated exactly: in a window where Redis answered throughout, never more
than ``requests``; in a window where it did not, ``local`` admits at most ``requests`` plus
``instances x requests`` (each of the instances' processes at most its share beyond what Redis
counted), ``closed`` at most ``requests`` plus the leases a failed-over primary had not yet
copied to its replica (Redis replicates asynchronously: the newest increments can be lost);
a failover adds those lost leases to the ``local`` bound too. A refusal by the local share is
the quota's answer (429); only ``closed`` answers 503.
Answers carry IETF ``RateLimit-Policy`` and ``RateLimit`` headers; a refusal is a 429 problem
with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from typing import Literal

import msgspec

from policies.shared_state import LenientState

__all__ = ["QuotaClass", "QuotaDecision", "QuotaLimiter", "QuotaSettings", "quota_keys"]

_LEASE_SCRIPT = "quota-lease"
# KEYS[1] counter, KEYS[2] the window's granted leases by id (one hash tag: one slot).
# ARGV: limit, lease divisor, max lease, window ms, lease id. Returns {granted, used}.
# A lease id already granted answers its grant again and counts nothing: a retry of a lease
# whose answer was lost (redis-py's Cluster client retries a timed-out script) never spends twice.
_LEASE = """
local done = redis.call('HGET', KEYS[2], ARGV[5])
if done then return {tonumber(done), tonumber(redis.call('GET', KEYS[1]) or '0')} end
local limit = tonumber(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = limit - used
if left <= 0 then return {0, used} end
local grant = math.floor(left / tonumber(ARGV[2]))
if grant < 1 then grant = 1 end
if grant > tonumber(ARGV[3]) then grant = tonumber(ARGV[3]) end
used = redis.call('INCRBY', KEYS[1], grant)
if used == grant then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('HSET', KEYS[2], ARGV[5], grant)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {grant, used}
"""


def quota_keys(client_id: str, index: int) -> list[str]:
    """The counter of ``client_id``'s window ``index`` and its leases, in one hash slot.

    The hash tag is ``{client_id:index}``: every window is its own slot, so clients (and
    windows) spread over a Cluster's shards; the two keys of one lease are in one."""
    tag = f"quota:{{{client_id}:{index}}}"
    return [tag, f"{tag}:leases"]


class QuotaClass(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Requests allowed per window.
    requests: int
    #: Window length in seconds.
    window_seconds: int = 60


class QuotaSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Enforce per-client quotas at all.
    enabled: bool = True
    #: Quota per client class; a client whose class is not listed gets ``default``.
    classes: dict[str, QuotaClass] = msgspec.field(
        default_factory=lambda: {"default": QuotaClass(requests=6000, window_seconds=60)}
    )
    #: What to do while Redis is down: ``local``, ``open`` or ``closed``.
    when_redis_down: Literal["local", "open", "closed"] = "local"
    #: Lease size divisor (see module docs): larger is more exact, smaller makes fewer Redis calls.
    lease_divisor: int = 64
    #: Most tokens one worker leases at once.
    max_lease: int = 1000


class QuotaDecision(msgspec.Struct, frozen=True, kw_only=True):
    allowed: bool
    policy: str
    limit: int
    window_seconds: int
    remaining: int
    reset_seconds: int
    #: The quota could not be checked (Redis down and ``when_redis_down`` is ``open`` or
    #: ``closed``); a refusal is then a 503, not a 429. ``local`` decides, so it is False.
    store_down: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-policy", f'"{self.policy}";q={self.limit};w={self.window_seconds}'.encode()),
            (b"ratelimit", f'"{self.policy}";r={self.remaining};t={self.reset_seconds}'.encode()),
        ]


class _Window:
    __slots__ = ("ends", "exhausted", "last_grant", "lease", "leased", "spent", "used_seen")

    def __init__(self, index: int, seconds: int) -> None:
        self.ends = (index + 1) * seconds  # epoch seconds; comparable across window lengths
        self.leased = 0  # tokens this process may still spend without asking Redis
        self.used_seen = 0  # the shared counter as last seen (or the local count without Redis)
        self.spent = 0  # requests this process let through in this window (leased tokens spent)
        self.exhausted = False  # Redis said nothing is left in this window
        self.last_grant = 0  # size of the last lease: 1 means the window is nearly spent
        # The one lease request in flight for this client and window. A burst that finds the
        # lease empty awaits it together and wakes together: one Redis round trip, and no
        # queue of requests handed a lock one event-loop turn after another.
        self.lease: asyncio.Task[bool] | None = None


class QuotaLimiter:
    def __init__(self, settings: QuotaSettings, shared: LenientState, workers: int) -> None:
        self.settings = settings
        self._shared = shared
        self._workers = max(1, workers)
        self._windows = _Windows()
        self._local = _Windows()
        shared.register_script(_LEASE_SCRIPT, _LEASE)
        #: Whether there is a shared counter at all (else the whole quota is enforced per process).
        self._counted = shared.configured

    def _class(self, client_class: str) -> tuple[str, QuotaClass]:
        classes = self.settings.classes
        if client_class in classes:
            return client_class, classes[client_class]
        return "default", classes.get("default") or QuotaClass(requests=6000)

    def _window(self, client_id: str, client_class: str) -> tuple[str, QuotaClass, _Window, int, int]:
        """(policy, quota, window, window index, seconds to reset) of the client's current window."""
        policy, quota = self._class(client_class)
        now = time.time()
        index = int(now // quota.window_seconds)
        reset = max(1, math.ceil((index + 1) * quota.window_seconds - now))
        key = f"{client_id}\x00{index}"
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(index, quota.window_seconds)
            self._windows.sweep(now)
        return policy, quota, window, index, reset

    def _spend(
        self, client_id: str, policy: str, quota: QuotaClass, window: _Window, index: int, reset: int
    ) -> QuotaDecision:
        """Spend one leased token (``window.leased > 0``)."""
        window.leased -= 1
        window.spent += 1
        if (
            window.last_grant > 4
            and window.leased <= window.last_grant // 4
            and window.lease is None
            and self._counted
            and self._shared.available
        ):
            # Lease the next block while this one is spent, so no request waits for Redis.
            # Not near the end of the window (small leases): there, counting one by one
            # keeps the limit exact and no token is left stranded in another worker.
            window.lease = asyncio.create_task(self._lease(client_id, quota, window, index))
        return self._decision(True, policy, quota, window, reset)

    def try_acquire(self, client_id: str, client_class: str) -> QuotaDecision | None:
        """``acquire`` when it can grant at once (a leased token at hand, or no Redis to ask);
        None, with nothing spent, when it would wait for Redis or refuse: then ``acquire``."""
        policy, quota, window, index, reset = self._window(client_id, client_class)
        if window.leased > 0:
            return self._spend(client_id, policy, quota, window, index, reset)
        if window.exhausted or window.lease is not None:
            return None  # refused by Redis for this window, or a lease is on its way: as acquire() decides
        if not self._counted or not self._shared.available:
            decision = self._without_redis(client_id, policy, quota, index, reset)
            return decision if decision.allowed else None  # a refusal spends nothing
        return None

    async def acquire(self, client_id: str, client_class: str) -> QuotaDecision:
        policy, quota, window, index, reset = self._window(client_id, client_class)
        while True:  # each turn either answers or waits for one lease round trip
            if window.leased > 0:
                return self._spend(client_id, policy, quota, window, index, reset)
            if window.exhausted:
                return self._decision(False, policy, quota, window, reset)
            if window.lease is None:
                if not self._counted or not self._shared.available:
                    return self._without_redis(client_id, policy, quota, index, reset)
                window.lease = asyncio.create_task(self._lease(client_id, quota, window, index))
            if not await asyncio.shield(window.lease):
                return self._without_redis(client_id, policy, quota, index, reset)

    async def _lease(self, client_id: str, quota: QuotaClass, window: _Window, index: int) -> bool:
        """Ask the shared counter for the next block; False when Redis cannot be asked."""
        try:
            result = await self._shared.run_script(
                _LEASE_SCRIPT,
                quota_keys(client_id, index),
                [
                    quota.requests,
                    self.settings.lease_divisor,
                    self.settings.max_lease,
                    quota.window_seconds * 1000 + 1000,
                    secrets.token_hex(8),
                ],
            )
            if result is None:
                return False
            granted, window.used_seen = int(result[0]), int(result[1])
            window.leased += granted
            window.last_grant = granted
            window.exhausted = granted == 0
            return True
        finally:
            window.lease = None

    def _without_redis(self, client_id: str, policy: str, quota: QuotaClass, index: int, reset: int) -> QuotaDecision:
        mode = self.settings.when_redis_down if self._counted else "local"
        if mode != "local":  # open: everything passes; closed: nothing does
            allowed = mode == "open"
            return QuotaDecision(
                allowed=allowed,
                policy=policy,
                limit=quota.requests,
                window_seconds=quota.window_seconds,
                remaining=quota.requests if allowed else 0,
                reset_seconds=reset,
                store_down=True,
            )
        # local: this process's share of the quota (all of it when there is no Redis at all)
        share = quota.requests if not self._counted else max(1, quota.requests // self._workers)
        key = f"{client_id}\x00{index}"
        window = self._local.get(key)
        if window is None:
            window = self._local[key] = _Window(index, quota.window_seconds)
            # what this process already let through in this window, counted in Redis, counts here too
            counted = self._windows.get(key)
            window.used_seen = counted.spent if counted is not None else 0
            self._local.sweep(time.time())
        allowed = window.used_seen < share
        if allowed:
            window.used_seen += 1
        return QuotaDecision(
            allowed=allowed,
            policy=policy,
            limit=share,
            window_seconds=quota.window_seconds,
            remaining=max(0, share - window.used_seen),
            reset_seconds=reset,
            # decided, locally: a refusal is the quota's own answer (429), not "cannot check" (503)
        )

    def _decision(self, allowed: bool, policy: str, quota: QuotaClass, window: _Window, reset: int) -> QuotaDecision:
        remaining = max(0, quota.requests - window.used_seen) + window.leased
        return QuotaDecision(
            allowed=allowed,
            policy=policy,
            limit=quota.requests,
            window_seconds=quota.window_seconds,
            remaining=min(quota.requests, remaining),
            reset_seconds=reset,
        )


class _Windows(dict[str, _Window]):
    """Windows by client and index, swept of the ended ones at most once a second."""

    swept = 0.0

    def sweep(self, now: float) -> None:
        # By end time, not index: indices of classes with other window lengths are not
        # comparable (a minute's index would end every hour-long window).
        if now - self.swept < 1.0:
            return
        self.swept = now
        for key in [k for k, w in self.items() if w.ends <= now]:
            del self[key]
