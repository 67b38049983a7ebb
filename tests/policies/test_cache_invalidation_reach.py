"""An invalidation made through one worker reaches every other within the local tier's TTL:
no copy that Redis has not confirmed for longer than that is served while Redis answers."""

from __future__ import annotations

import asyncio

from gateway.shared_state import RedisSettings, open_shared_state
from policies.caching import CacheSettings, CachingBackend
from tests.harness.gateway_process import free_port
from tests.policies.conftest import CTX, ControlledErp, MakeShared

LOCAL_TTL = 0.2


def _worker(erp: ControlledErp, shared: MakeShared) -> CachingBackend:
    return CachingBackend(erp, shared(), CacheSettings(local_ttl_seconds=LOCAL_TTL))


async def test_an_invalidation_through_one_worker_reaches_another_within_the_local_ttl(
    erp: ControlledErp, shared_redis: MakeShared
) -> None:
    one, other = _worker(erp, shared_redis), _worker(erp, shared_redis)
    try:
        await other.get_availability(["MUG-SND"], None, CTX)
        assert other.cached_availability("MUG-SND") is not None  # held in-process, fresh for 30 s
        assert erp.calls["availability"] == 1
        assert await one.invalidate(skus=["MUG-SND"]) >= 1
        await asyncio.sleep(LOCAL_TTL * 1.5)  # past the local TTL: the copy is unconfirmed now
        # the hot path does not serve it, and the next read asks Redis, finds the tombstone
        # and goes to the ERP instead of answering the dropped copy
        assert other.cached_availability("MUG-SND") is None
        answer = await other.get_availability(["MUG-SND"], None, CTX)
        assert answer.items[0].freshness == "fresh"
        assert erp.calls["availability"] == 2
    finally:
        await one.aclose()
        await other.aclose()


async def test_a_copy_past_the_local_ttl_stands_when_redis_cannot_answer(erp: ControlledErp) -> None:
    """No Redis to confirm it and none to carry an invalidation: the copy is served, not refetched."""
    nowhere = open_shared_state(RedisSettings(url=f"redis://127.0.0.1:{free_port()}", retry_seconds=30))
    cache = CachingBackend(erp, nowhere, CacheSettings(local_ttl_seconds=LOCAL_TTL))
    try:
        await cache.get_availability(["MUG-SND"], None, CTX)
        await asyncio.sleep(LOCAL_TTL * 1.5)
        answer = await cache.get_availability(["MUG-SND"], None, CTX)
        assert answer.items[0].freshness == "cached"
        assert erp.calls["availability"] == 1
    finally:
        await cache.aclose()
        await nowhere.aclose()
