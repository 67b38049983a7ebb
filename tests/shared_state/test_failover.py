"""Failover under load, on the real Sentinel and Cluster deployments: while a primary dies (or
is demoted), callers of the shared state see only ``SharedStateUnavailable`` (the lenient port:
misses and fallbacks), never a ``ResponseError``/``READONLY`` or any other exception, and the
same client answers again once a replica is promoted, without being reopened.

The harness's blocking waits run in a thread, so the load keeps running on the event loop.
Counts, not timings: successes after the promotion, other exceptions (must be none).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from gateway.shared_state import RedisSettings, open_shared_state
from policies.quotas import QuotaClass, QuotaLimiter, QuotaSettings, quota_keys
from policies.shared_state import SharedState, SharedStateUnavailable
from tests.harness.redis_topologies import RedisClusterHarness, RedisSentinelHarness

PREFIX = "erpgw:v1:"


class Load:
    """Runs shared-state calls in a loop and sorts their outcomes, before and after ``promoted``."""

    def __init__(self, calls: list[Callable[[int], Awaitable[Any]]]) -> None:
        self.calls = calls
        self.outcomes: Counter[str] = Counter()
        self.after: Counter[str] = Counter()  # outcomes once the new primary is known
        self.other: list[BaseException] = []
        self.promoted = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            turn += 1
            for call in self.calls:
                try:
                    await call(turn)
                    outcome = "ok"
                except SharedStateUnavailable:
                    outcome = "unavailable"
                except Exception as exc:  # what must never reach a caller
                    self.other.append(exc)
                    outcome = "other"
                self.outcomes[outcome] += 1
                if self.promoted:
                    self.after[outcome] += 1
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def until(self, what: Callable[[], bool], within: float = 20.0) -> None:
        """Poll ``what`` (it may ask Redis, so no event can stand for it), at most ``within`` seconds."""
        deadline = time.monotonic() + within
        while not what() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert what(), f"gave up waiting: {self.outcomes}, after promotion {self.after}, other {self.other[:3]}"

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task
        print(f"outcomes {dict(self.outcomes)}, after the promotion {dict(self.after)}")  # shown with -rP


def _store_calls(store: SharedState) -> list[Callable[[int], Awaitable[Any]]]:
    store.register_script("incr", "return redis.call('INCR', KEYS[1])")
    return [
        lambda turn: store.set_many([(f"k{turn % 50}", b"v", 60_000), (f"j{turn % 50}", b"w", 60_000)]),
        lambda turn: store.get_many([f"k{turn % 50}", f"j{turn % 50}"]),
        lambda turn: store.run_script("incr", ["counter"], []),
        lambda turn: store.swap_many([(f"s{turn % 7}", b"x", 60_000)]),
    ]


def _sentinel_settings(harness: RedisSentinelHarness) -> RedisSettings:
    return RedisSettings(
        mode="sentinel",
        nodes=",".join(harness.sentinel_nodes),
        service_name=harness.service_name,
        timeout_seconds=0.2,
        retry_seconds=0.05,
    )


def _cluster_settings(harness: RedisClusterHarness) -> RedisSettings:
    return RedisSettings(
        mode="cluster", nodes=",".join(harness.startup_nodes[:3]), timeout_seconds=0.2, retry_seconds=0.05
    )


async def test_sentinel_primary_killed_callers_see_only_unavailable_and_the_client_resumes(
    fresh_redis_sentinel: RedisSentinelHarness,
) -> None:
    harness = fresh_redis_sentinel
    state = open_shared_state(_sentinel_settings(harness))
    assert state.strict is not None
    load = Load(_store_calls(state.strict))
    load.start()
    try:
        await load.until(lambda: load.outcomes["ok"] >= 20)
        old, _ = await asyncio.to_thread(harness.kill_primary)
        await asyncio.to_thread(harness.wait_failover, 30)
        assert harness.primary()[0] != old
        load.promoted = True
        await load.until(lambda: load.after["ok"] >= 40)
    finally:
        await load.stop()
        await state.aclose()
    assert load.other == []
    assert load.outcomes["unavailable"] > 0  # the failover window: misses, never errors
    assert load.after["ok"] >= 40  # the same client, never reopened


async def test_sentinel_demoted_primary_never_answers_readonly_to_a_caller(
    fresh_redis_sentinel: RedisSentinelHarness,
) -> None:
    """A planned switch (SENTINEL FAILOVER): the old primary lives on as a replica, and pooled
    connections to it now get READONLY on writes. redis-py turns that into a connection error
    and asks the Sentinels again: callers see successes (or an unavailable store), never READONLY."""
    harness = fresh_redis_sentinel
    state = open_shared_state(_sentinel_settings(harness))
    assert state.strict is not None
    load = Load(_store_calls(state.strict))
    load.start()
    try:
        await load.until(lambda: load.outcomes["ok"] >= 20)  # pooled connections to the old primary
        old, _ = harness.primary()
        host, port = harness.sentinel_addresses[0]
        with redis.Redis(host=host, port=port, socket_timeout=2) as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", harness.service_name)

        def demoted() -> bool:
            try:
                with redis.Redis(port=old, socket_timeout=1) as node:
                    return bool(node.execute_command("ROLE")[0] in (b"slave", "slave") and harness.primary()[0] != old)
            except (redis.RedisError, RuntimeError):
                return False

        await load.until(demoted, within=30)
        load.promoted = True
        await load.until(lambda: load.after["ok"] >= 40)
    finally:
        await load.stop()
        await state.aclose()
    assert load.other == []
    assert load.after["ok"] >= 40


async def test_cluster_quota_primary_killed_the_limiter_keeps_answering_and_resumes_shared_counting(
    fresh_redis_cluster: RedisClusterHarness,
) -> None:
    """The primary of the quota counter's slot dies: the limiter answers from its local share
    meanwhile (no exception), counts in Redis again once the replica is promoted, and keeps
    doing so when the old primary comes back as a replica (the client's stale map: MOVED)."""
    harness = fresh_redis_cluster
    link = open_shared_state(_cluster_settings(harness))
    assert link.strict is not None
    hour = 3600  # one window for the whole test
    limiter = QuotaLimiter(
        QuotaSettings(classes={"default": QuotaClass(requests=10_000_000, window_seconds=hour)}, max_lease=5),
        link,
        workers=2,
    )
    counter_key = PREFIX + quota_keys("storefront", int(time.time() // hour))[0]
    shared: Counter[bool] = Counter()  # decisions by store_down, after the promotion

    async def acquire(_turn: int) -> None:
        decision = await limiter.acquire("storefront", "default")
        assert decision.allowed
        if load.promoted:
            shared[decision.store_down] += 1

    store_calls = _store_calls(link.strict)
    load = Load([acquire, acquire, acquire, store_calls[1], store_calls[0]])
    load.start()
    try:
        await load.until(lambda: load.outcomes["ok"] >= 30)
        await asyncio.to_thread(harness.kill_primary_for, counter_key)
        await asyncio.to_thread(harness.wait_promoted, counter_key, 20)
        load.promoted = True
        await load.until(lambda: shared[False] >= 30)  # leases from Redis again: shared counting
        with harness.client(socket_timeout=2) as admin:
            counted_before_restart = int(admin.get(counter_key) or 0)
        await asyncio.to_thread(harness.restart_killed)  # the old primary rejoins as a replica
        seen = shared[False]
        await load.until(lambda: shared[False] >= seen + 30)
    finally:
        await load.stop()
        await link.aclose()
    print(f"quota decisions after the promotion by store_down: {dict(shared)}")
    assert load.other == []
    assert counted_before_restart > 0
    with harness.client(socket_timeout=2) as admin:
        assert int(admin.get(counter_key) or 0) > counted_before_restart
