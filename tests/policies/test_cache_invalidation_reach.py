"""An invalidation made through one worker reaches every other within the local tier's TTL:
no copy that Redis has not confirmed for longer than that is served while Redis answers."""

from __future__ import annotations

import asyncio

from contracts.v1 import PriceCheckLine, PriceCheckRequest
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


async def _in_flight(erp: ControlledErp, calls: int) -> None:
    """Until the ERP call numbered ``calls`` has reached the (slow) ERP (at most 2 s)."""
    for _ in range(400):
        if erp.calls["availability"] + erp.calls["prices"] >= calls:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the ERP saw {dict(erp.calls)}, not {calls} calls")


async def test_an_answer_read_before_an_invalidation_does_not_outlive_it(
    erp: ControlledErp, shared_redis: MakeShared
) -> None:
    """The ERP answered before the invalidation, the answer is stored after it: that entry must
    not replace the tombstone (or outrank the price stamps) and be served as if it were new."""
    reader, dropper, third = _worker(erp, shared_redis), _worker(erp, shared_redis), _worker(erp, shared_redis)
    lines = PriceCheckRequest(currency="EUR", lines=[PriceCheckLine(sku="MUG-SND", quantity=1)])
    try:
        erp.delay = 0.5
        stock = asyncio.create_task(reader.get_availability(["MUG-SND"], None, CTX))
        prices = asyncio.create_task(reader.check_prices(lines, CTX))
        await _in_flight(erp, 2)
        await dropper.invalidate(skus=["MUG-SND"])  # while both reads are at the ERP
        assert (await stock).items[0].freshness == "fresh"
        assert (await prices).lines[0].freshness == "fresh"
        erp.delay = 0.0
        # neither another worker nor the reader itself takes the old answers
        assert (await third.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "fresh"
        assert (await reader.check_prices(lines, CTX)).lines[0].freshness == "fresh"
        assert (erp.calls["availability"], erp.calls["prices"]) == (2, 2)
        # answers read after the invalidation are stored and shared as usual
        assert (await dropper.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "cached"
        assert (await dropper.check_prices(lines, CTX)).lines[0].freshness == "cached"
        assert (await reader.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "cached"
        assert (erp.calls["availability"], erp.calls["prices"]) == (2, 2)
    finally:
        for worker in (reader, dropper, third):
            await worker.aclose()


async def test_without_redis_an_answer_read_before_an_invalidation_is_not_kept(erp: ControlledErp) -> None:
    cache = CachingBackend(erp, open_shared_state(RedisSettings()), CacheSettings())
    try:
        erp.delay = 0.5
        stock = asyncio.create_task(cache.get_availability(["MUG-SND"], None, CTX))
        await _in_flight(erp, 1)
        await cache.invalidate(skus=["MUG-SND"])
        await stock
        erp.delay = 0.0
        assert (await cache.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "fresh"
        assert (await cache.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "cached"
        assert erp.calls["availability"] == 2
    finally:
        await cache.aclose()
