"""Per-client quotas: global across workers through Redis, cheap on the hot path, and
what happens without Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.shared_state import RedisSettings, open_shared_state
from policies.quotas import QuotaClass, QuotaDecision, QuotaLimiter, QuotaSettings, _Window, _Windows, quota_keys
from tests.conftest import RedisDeployment
from tests.policies.conftest import MakeShared

#: Seconds of every test's quota window.
WINDOW = 60


def _settings(requests: int, **extra: object) -> QuotaSettings:
    """``requests`` per minute; when the minute is nearly over, after it: a test's requests
    all fall in one window (one that crosses into the next counts its share twice)."""
    left = WINDOW - time.time() % WINDOW
    if left < 10:
        time.sleep(left + 0.05)
    return QuotaSettings(classes={"default": QuotaClass(requests=requests, window_seconds=WINDOW)}, **extra)  # type: ignore[arg-type]


async def _leases_in_flight(limiter: QuotaLimiter) -> None:
    """Let the next leases a limiter asked for ahead land (before counting, and before the
    connections they use are closed)."""
    await asyncio.gather(*(window.lease for window in limiter._windows.values() if window.lease is not None))


async def test_a_quota_of_n_holds_across_workers(shared_redis: MakeShared) -> None:
    workers = [QuotaLimiter(_settings(25), shared_redis(), workers=3) for _ in range(3)]
    verdicts = [await workers[i % 3].acquire("storefront", "default") for i in range(40)]
    assert [v.allowed for v in verdicts] == [True] * 25 + [False] * 15
    refused = verdicts[25]
    assert refused.remaining == 0
    assert 0 < refused.reset_seconds <= 60
    # another client has its own quota
    assert (await workers[0].acquire("helpdesk", "default")).allowed


async def test_large_quotas_lease_tokens_instead_of_asking_redis_each_time(
    shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    limiter = QuotaLimiter(_settings(100_000, max_lease=50), shared_redis(), workers=2)
    before = redis_deployment.commandstats()
    for _ in range(1000):
        assert (await limiter.acquire("storefront", "default")).allowed
    await _leases_in_flight(limiter)
    calls = redis_deployment.commandstats() - before
    scripts = calls["evalsha"] + calls["eval"]
    assert scripts <= 1000 // 50 + 1  # leases of max_lease=50 tokens


async def test_a_burst_on_an_empty_lease_waits_for_one_round_trip_together(
    shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    """200 requests arriving at once: a few lease round trips, and every waiter is woken by
    the lease it waited for, not handed a lock one event-loop turn after another (a queue
    of 200 turns is a latency tail of hundreds of milliseconds under load)."""
    limiter = QuotaLimiter(_settings(100_000, max_lease=50), shared_redis(), workers=1)
    before = redis_deployment.commandstats()
    turn = 0
    finished_in: set[int] = set()  # the loop turns in which requests got their answer

    async def count_turns() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    async def request() -> QuotaDecision:
        decision = await limiter.acquire("storefront", "default")
        finished_in.add(turn)
        return decision

    counter = asyncio.create_task(count_turns())
    verdicts = await asyncio.gather(*(request() for _ in range(200)))
    counter.cancel()
    await _leases_in_flight(limiter)
    calls = redis_deployment.commandstats() - before
    scripts = calls["evalsha"] + calls["eval"]
    assert all(v.allowed for v in verdicts)
    assert scripts <= 200 // 50 + 1  # a lease is shared by everyone waiting for it
    assert len(finished_in) <= 2 * (200 // 50 + 1)  # woken together per lease, not one per turn


async def test_headers_follow_the_ietf_draft(shared_redis: MakeShared) -> None:
    limiter = QuotaLimiter(_settings(10), shared_redis(), workers=1)
    decision = await limiter.acquire("storefront", "partner-tier")  # unknown class: default
    headers = dict(decision.headers())
    assert headers[b"ratelimit-policy"] == b'"default";q=10;w=60'
    assert headers[b"ratelimit"].startswith(b'"default";r=9;t=')


async def test_without_redis_each_process_enforces_its_share(
    shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    link = shared_redis(retry_seconds=30, timeout_seconds=0.1)
    limiter = QuotaLimiter(_settings(10, when_redis_down="local"), link, workers=2)
    with redis_deployment.unreachable():
        verdicts = [await limiter.acquire("storefront", "default") for _ in range(8)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
    # the local share decided: its refusals are the quota's answer (429 quota-exceeded), not a 503
    assert not any(v.store_down for v in verdicts)


async def test_a_process_that_loses_redis_mid_window_counts_what_it_already_admitted(
    shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    link = shared_redis(retry_seconds=30, timeout_seconds=0.1)
    limiter = QuotaLimiter(_settings(640, when_redis_down="local"), link, workers=2)
    admitted = [(await limiter.acquire("storefront", "default")).allowed for _ in range(300)]
    assert all(admitted)
    with redis_deployment.unreachable():
        await link.ping()
        # its share is 320: 300 went through Redis already (some leased tokens may be left)
        more = sum([(await limiter.acquire("storefront", "default")).allowed for _ in range(100)])
    assert 20 <= more <= 20 + 10  # its share left, plus at most one lease (640 / 64) in hand


async def test_a_lease_retried_with_its_id_is_granted_once(shared_redis: MakeShared) -> None:
    """What a retry of a lease whose answer was lost does (redis-py's Cluster client retries a
    timed-out script): the second run answers the first grant and counts nothing."""
    link = shared_redis()
    QuotaLimiter(_settings(6400), link, workers=1)  # registers the script
    keys = quota_keys("storefront", 7)
    args = [6400, 64, 1000, 60_000, "lease-1"]
    first = await link.run_script("quota-lease", keys, args)
    again = await link.run_script("quota-lease", keys, args)
    other = await link.run_script("quota-lease", keys, [*args[:4], "lease-2"])
    assert [int(v) for v in first] == [100, 100]
    assert [int(v) for v in again] == [100, 100]
    assert [int(v) for v in other] == [98, 198]  # floor((6400 - 100) / 64)


async def test_a_window_redis_refused_stays_refused_on_the_hot_path_when_redis_goes(
    shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    link = shared_redis(retry_seconds=30, timeout_seconds=0.1)
    limiter = QuotaLimiter(_settings(3, when_redis_down="local"), link, workers=1)
    assert [(await limiter.acquire("storefront", "default")).allowed for _ in range(4)] == [True] * 3 + [False]
    with redis_deployment.unreachable():
        await link.ping()  # Redis is now known to be down
        assert not link.available
        # The hot path must not grant from the local share what Redis already refused...
        assert limiter.try_acquire("storefront", "default") is None
        # ...and the full path refuses it, as before.
        assert not (await limiter.acquire("storefront", "default")).allowed


@pytest.mark.parametrize(("mode", "allowed", "remaining"), [("closed", False, 0), ("open", True, 10)])
async def test_fail_closed_or_open_while_redis_is_down(
    shared_redis: MakeShared, redis_deployment: RedisDeployment, mode: str, allowed: bool, remaining: int
) -> None:
    link = shared_redis(retry_seconds=30, timeout_seconds=0.1)
    limiter = QuotaLimiter(_settings(10, when_redis_down=mode), link, workers=2)
    with redis_deployment.unreachable():
        verdicts = [await limiter.acquire("storefront", "default") for _ in range(12)]  # more than the quota
    assert {(v.allowed, v.remaining, v.store_down) for v in verdicts} == {(allowed, remaining, True)}


async def test_without_redis_configured_the_whole_quota_is_local() -> None:
    limiter = QuotaLimiter(_settings(3), open_shared_state(RedisSettings()), workers=4)
    assert [(await limiter.acquire("c", "default")).allowed for _ in range(4)] == [True, True, True, False]


def test_ended_windows_are_dropped_by_end_time_whatever_their_length() -> None:
    hour, minute = 3600, 60
    now = 1_800_000_000.0
    windows = _Windows()
    windows["partner\x00h"] = _Window(int(now // hour), hour)  # ends at the next full hour
    windows["shop\x00m"] = _Window(int(now // minute), minute)  # ends within the minute
    windows.sweep(now + minute)  # the minute is over, the hour is not
    assert list(windows) == ["partner\x00h"]
    windows["shop\x00m"] = _Window(int(now // minute), minute)  # over, but swept less than a second ago:
    windows.sweep(now + minute + 0.5)  # left for the next sweep
    assert len(windows) == 2
    windows.sweep(now + minute + 1)
    assert list(windows) == ["partner\x00h"]
    windows.sweep(now + hour)
    assert list(windows) == []
