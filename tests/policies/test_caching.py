"""The caching policy: per-item entries shared by batch and single requests, coalescing,
stale-while-revalidate, stale-if-error, and the shared Redis tier."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import pytest
from redis.crc import key_slot

from contracts.v1 import OrderList, PriceCheckLine, PriceCheckRequest, ReturnRequest, ReturnRequestLine
from erp_backends.errors import ErpUnavailable, Rejected
from erp_backends.port import CallContext, CallNotes, IdempotencyToken
from gateway.cache_status import cache_status
from gateway.shared_state import RedisSettings, open_shared_state
from policies.caching import CacheSettings, CachingBackend, OperationCache
from policies.caching.store import InvalidationNotShared
from policies.shared_state import LenientState
from tests.conftest import RedisDeployment
from tests.policies.conftest import CTX, ControlledErp, MakeShared
from tests.shared_state.round_trips import count_round_trips

T = TypeVar("T")
FAST = OperationCache(ttl_seconds=0.3, stale_while_revalidate_seconds=0.6, stale_if_error_seconds=30)


async def _in_own_request(call: Callable[[CallContext], Coroutine[Any, Any, T]]) -> tuple[T, str | None]:
    """Run a call as the server runs a request: in its own task, with its own notes, reading
    Cache-Status after."""

    async def request() -> tuple[T, str | None]:
        notes = CallNotes()
        answer = await call(msgspec.structs.replace(CTX, notes=notes))
        return answer, cache_status(notes)

    return await asyncio.create_task(request())


def _cache(erp: ControlledErp, redis: LenientState | None = None, **rules: OperationCache) -> CachingBackend:
    settings = CacheSettings(local_ttl_seconds=0.05, **rules)  # type: ignore[arg-type]
    return CachingBackend(erp, redis or open_shared_state(RedisSettings()), settings)


async def test_batch_and_single_requests_share_entries(erp: ControlledErp) -> None:
    cache = _cache(erp)
    first, header = await _in_own_request(
        lambda ctx: cache.get_availability(["MUG-SND", "LAMP-WHT", "NOPE"], None, ctx)
    )
    assert [i.freshness for i in first.items] == ["fresh", "fresh"]
    assert header == "erp-gateway; fwd=miss; stored"
    single = await cache.get_availability(["LAMP-WHT"], ["EAST"], CTX)
    unknown = await cache.get_availability(["NOPE"], None, CTX)
    assert erp.calls["availability"] == 1
    assert single.items[0].freshness == "cached"
    assert (single.items[0].on_hand, single.items[0].available_to_promise) == (12, 11)
    assert [w.warehouse for w in single.items[0].warehouses] == ["EAST"]
    assert unknown.unknown_skus == ["NOPE"]
    # and the other way round: single first, then a batch asks the ERP only for the rest
    await cache.get_availability(["CAP-OLV"], None, CTX)
    batch, header = await _in_own_request(lambda ctx: cache.get_availability(["CAP-OLV", "TOTE-NAT"], None, ctx))
    assert header == "erp-gateway; fwd=partial; stored"
    assert erp.calls["availability"] == 3
    assert [i.freshness for i in batch.items] == ["cached", "fresh"]


async def test_concurrent_misses_for_one_key_make_one_erp_call(erp: ControlledErp) -> None:
    cache = _cache(erp)
    erp.delay = 0.05
    answers = await asyncio.gather(*(cache.get_availability(["TEE-NVY-M"], None, CTX) for _ in range(200)))
    assert erp.calls["availability"] == 1
    assert {a.items[0].available_to_promise for a in answers} == {178}


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(erp: ControlledErp) -> None:
    cache = _cache(erp, availability=FAST)
    await cache.get_availability(["MUG-SND"], None, CTX)
    await asyncio.sleep(0.4)  # past the TTL, inside stale-while-revalidate
    stale = await asyncio.gather(*(cache.get_availability(["MUG-SND"], None, CTX) for _ in range(20)))
    assert {a.items[0].freshness for a in stale} == {"stale"}
    await asyncio.sleep(0.1)  # the background refresh lands
    assert erp.calls["availability"] == 2
    assert (await cache.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "cached"


async def test_stale_if_error_serves_the_last_answer_while_the_erp_fails(erp: ControlledErp) -> None:
    cache = _cache(
        erp, availability=OperationCache(ttl_seconds=0.1, stale_while_revalidate_seconds=0, stale_if_error_seconds=30)
    )
    await cache.get_availability(["MUG-SND"], None, CTX)
    erp.down = True
    await asyncio.sleep(0.2)
    answer, header = await _in_own_request(lambda ctx: cache.get_availability(["MUG-SND"], None, ctx))
    assert answer.items[0].freshness == "stale"
    assert answer.items[0].on_hand == 140
    assert header == 'erp-gateway; hit; ttl=0; detail="stale-if-error"'
    with pytest.raises(ErpUnavailable):  # never cached: nothing stale to serve
        await cache.get_availability(["LAMP-WHT"], None, CTX)


async def test_prices_are_cached_per_customer_sku_and_quantity(erp: ControlledErp) -> None:
    cache = _cache(erp)

    def cart(*lines: tuple[str, int], customer: str | None = "C-1001") -> PriceCheckRequest:
        return PriceCheckRequest(
            customer=customer, currency="EUR", lines=[PriceCheckLine(sku=s, quantity=q) for s, q in lines]
        )

    first = await cache.check_prices(cart(("TOTE-NAT", 10), ("MUG-SND", 6)), CTX)
    again = await cache.check_prices(cart(("MUG-SND", 6), ("TOTE-NAT", 10)), CTX)
    assert erp.calls["prices"] == 1
    assert [str(line.unit_price) for line in again.lines] == ["12.60", "15.30"]
    assert again.total == first.total
    await cache.check_prices(cart(("TOTE-NAT", 50)), CTX)  # another quantity: another entry
    await cache.check_prices(cart(("TOTE-NAT", 10), customer=None), CTX)  # another customer
    assert erp.calls["prices"] == 3
    with pytest.raises(Rejected) as caught:  # the line index is the caller's, not the partial call's
        await cache.check_prices(cart(("TOTE-NAT", 10), ("NOPE", 1)), CTX)
    assert caught.value.field == "lines[1].sku"


async def test_orders_and_invalidation(erp: ControlledErp) -> None:
    cache = _cache(erp)
    await cache.get_order("SO-1003", CTX)
    await cache.get_order("SO-1003", CTX)
    assert erp.calls["order"] == 1
    assert await cache.invalidate(orders=["SO-1003"]) >= 1
    assert (await cache.get_order("SO-1003", CTX)).freshness == "fresh"
    assert erp.calls["order"] == 2


async def test_without_a_shared_tier_several_workers_never_serve_an_order_a_return_changed(
    erp: ControlledErp,
) -> None:
    """Two workers, no Redis: a return through one cannot drop the other's copy, so neither
    keeps one; a single worker still caches (its own drop is the only one needed)."""
    settings = CacheSettings(local_ttl_seconds=0.05)
    worker_a, worker_b = (CachingBackend(erp, LenientState(None), settings, workers=2) for _ in range(2))
    await worker_b.get_order("SO-1002", CTX)
    line = ReturnRequestLine(line_ref="2", quantity=1, reason="damaged")
    request = ReturnRequest(order_number="SO-1002", lines=[line])
    await worker_a.create_return(request, IdempotencyToken.for_request("k-orders-private", request), CTX)
    after = await worker_b.get_order("SO-1002", CTX)
    assert after.freshness == "fresh"
    assert after.lines[1].returned_quantity == 1
    alone = CachingBackend(erp, LenientState(None), settings, workers=1)
    await alone.get_order("SO-1002", CTX)
    assert (await alone.get_order("SO-1002", CTX)).freshness == "cached"


async def test_the_redis_tier_is_shared_between_workers(
    erp: ControlledErp, shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    link_b = shared_redis()
    worker_a, worker_b = _cache(erp, shared_redis()), _cache(erp, link_b)
    skus = [f"SKU-{i}" for i in range(150)] + ["MUG-SND", "TEE-NVY-M"]
    await worker_a.get_availability(skus, None, CTX)
    assert erp.calls["availability"] == 1
    # B connects to every node before counting (a new connection's handshake is a round trip too)
    await link_b.get_many([worker_b.keys.availability(sku) for sku in skus])
    before = redis_deployment.commandstats()
    with count_round_trips() as trips:
        answer = await worker_b.get_availability(skus, None, CTX)
    calls = redis_deployment.commandstats() - before
    assert erp.calls["availability"] == 1  # worker B never asked the ERP
    assert [i.freshness for i in answer.items] == ["cached", "cached"]
    assert len(answer.unknown_skus) == 150
    data_commands = dict(calls)
    # one round trip for the whole batch: one MGET, or on Cluster one MGET per slot, pipelined
    # in one write per primary (152 keys over ~150 slots: never one round trip per key)
    slots = {key_slot(f"erpgw:v1:{worker_b.keys.availability(sku)}".encode()) for sku in skus}
    if redis_deployment.mode == "cluster":
        assert data_commands == {"mget": len(slots)}
        assert len(slots) > 100
        assert trips.total <= len(redis_deployment.primaries()) == 3
    else:
        assert data_commands == {"mget": 1}
        assert trips.total == 1


async def test_redis_down_means_in_process_only_and_recovery(
    erp: ControlledErp, shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    link = shared_redis(retry_seconds=0.1, timeout_seconds=0.1)
    cache = _cache(erp, link)
    with redis_deployment.unreachable():
        answer = await cache.get_availability(["MUG-SND"], None, CTX)
        assert answer.items[0].on_hand == 140
        assert not link.available
        assert link.last_error
    await asyncio.sleep(0.15)
    await cache.get_availability(["LAMP-WHT"], None, CTX)
    assert link.available  # the same client, never reopened
    probe = redis_deployment.client()
    assert await probe.exists("erpgw:v1:" + cache.keys.availability("LAMP-WHT")) == 1


async def test_an_invalidation_reaches_other_workers_in_process_copies(
    erp: ControlledErp, shared_redis: MakeShared
) -> None:
    worker_a, worker_b = _cache(erp, shared_redis()), _cache(erp, shared_redis())
    await worker_a.get_availability(["MUG-SND"], None, CTX)
    assert (await worker_b.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "cached"
    await worker_a.invalidate(skus=["MUG-SND"])
    await asyncio.sleep(0.1)  # past B's in-process time-to-live (50 ms here)
    # B's copy is unconfirmed now: B asks Redis before serving it, finds the entry gone, and
    # goes to the ERP (test_cache_invalidation_reach.py has the hot path's side of it).
    assert (await worker_b.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "fresh"
    assert erp.calls["availability"] == 2


# Standalone only: a restart of the session's server is what empties it (no persistence). A
# restarted Sentinel or Cluster node comes back as a replica of a primary that kept the data.
@pytest.mark.parametrize("redis_deployment", ["standalone"], indirect=True)
async def test_a_restarted_empty_redis_is_not_an_invalidation(
    erp: ControlledErp, redis_deployment: RedisDeployment
) -> None:
    await _an_emptied_redis_is_not_an_invalidation(erp, redis_deployment, "restart")


async def test_a_flushed_redis_is_not_an_invalidation(erp: ControlledErp, redis_deployment: RedisDeployment) -> None:
    await _an_emptied_redis_is_not_an_invalidation(erp, redis_deployment, "flushall")


async def _an_emptied_redis_is_not_an_invalidation(
    erp: ControlledErp, redis_deployment: RedisDeployment, emptied_by: str
) -> None:
    links = [open_shared_state(redis_deployment.settings(retry_seconds=0.1, timeout_seconds=2)) for _ in range(2)]
    worker_a, worker_b = _cache(erp, links[0]), _cache(erp, links[1])
    cart = PriceCheckRequest(customer="C-1001", currency="EUR", lines=[PriceCheckLine(sku="TOTE-NAT", quantity=20)])
    for worker in (worker_a, worker_b):  # A asks the ERP, B reads what A stored in Redis
        await worker.get_availability(["MUG-SND", "LAMP-WHT"], None, CTX)
        await worker.check_prices(cart, CTX)
    assert (erp.calls["availability"], erp.calls["prices"]) == (1, 1)
    probe = redis_deployment.client()
    try:
        if emptied_by == "restart":
            with redis_deployment.unreachable():  # standalone: stopped and started, no persistence
                pass
        else:
            redis_deployment.flush()
        assert redis_deployment.keys() == []
        for _ in range(4):  # every lookup past the in-process TTL rechecks Redis, which has nothing
            await asyncio.sleep(0.07)
            for worker in (worker_a, worker_b):
                stock = await worker.get_availability(["MUG-SND", "LAMP-WHT"], None, CTX)
                prices = await worker.check_prices(cart, CTX)
                assert [i.freshness for i in stock.items] == ["cached", "cached"]
                assert prices.lines[0].freshness == "cached"
        assert (erp.calls["availability"], erp.calls["prices"]) == (1, 1)  # no cold misses
        # ... and stayed in their processes: a copy is never written back (it could be one that an
        # invalidation the worker never saw has dropped everywhere else)
        keys = worker_a.keys
        assert await probe.exists(*("erpgw:v1:" + keys.availability(sku) for sku in ("MUG-SND", "LAMP-WHT"))) == 0

        # An invalidation still reaches the other worker's in-process copies, also those that
        # Redis no longer holds: the customer's prices (a pattern) and a SKU.
        redis_deployment.flush()
        await worker_a.invalidate(skus=["MUG-SND"], customers=["C-1001"])
        await asyncio.sleep(0.07)
        stock = await worker_b.get_availability(["MUG-SND", "LAMP-WHT"], None, CTX)
        assert [i.freshness for i in stock.items] == ["fresh", "cached"]  # past its local TTL: Redis asked first
        assert (await worker_b.check_prices(cart, CTX)).lines[0].freshness == "fresh"
        assert (erp.calls["availability"], erp.calls["prices"]) == (2, 2)
        # ... and what B fetched after the invalidation is served to A from Redis
        await asyncio.sleep(0.07)
        await worker_a.get_availability(["MUG-SND"], None, CTX)
        assert (await worker_a.check_prices(cart, CTX)).lines[0].freshness == "cached"
        assert (erp.calls["availability"], erp.calls["prices"]) == (2, 2)

        # An invalidation, then Redis emptied before B rechecked: B cannot know and keeps its
        # copy, but the invalidating worker never gets that copy back through Redis.
        await worker_a.invalidate(skus=["LAMP-WHT"])
        redis_deployment.flush()
        await asyncio.sleep(0.07)
        await worker_b.get_availability(["LAMP-WHT"], None, CTX)  # rechecks: Redis has nothing
        await asyncio.sleep(0.05)
        assert (await worker_a.get_availability(["LAMP-WHT"], None, CTX)).items[0].freshness == "fresh"
    finally:
        for worker in (worker_a, worker_b):  # rechecks still under way end with the test
            worker.store.background.cancel_all()
        await asyncio.sleep(0)
        for link in links:
            await link.aclose()
        for link in links:
            await link.aclose()


async def test_a_pattern_invalidation_drops_entries_stored_before_it_without_scanning(
    erp: ControlledErp, shared_redis: MakeShared, redis_deployment: RedisDeployment
) -> None:
    worker_a, worker_b = _cache(erp, shared_redis()), _cache(erp, shared_redis())
    find_orders = erp.find_orders

    async def counted_find_orders(external_ref: str, ctx: CallContext) -> OrderList:
        erp.calls["find_orders"] += 1
        return await find_orders(external_ref, ctx)

    erp.find_orders = counted_find_orders  # type: ignore[method-assign]

    def cart(customer: str) -> PriceCheckRequest:
        return PriceCheckRequest(customer=customer, currency="EUR", lines=[PriceCheckLine(sku="MUG-SND", quantity=6)])

    await worker_a.check_prices(cart("C-1001"), CTX)
    await worker_a.check_prices(cart("C-1002"), CTX)
    await worker_a.get_order("SO-1003", CTX)
    await worker_a.find_orders("WC-5003", CTX)
    before = redis_deployment.commandstats()
    assert await worker_a.invalidate(customers=["C-1001"], orders=["SO-1003"]) >= 1
    stats = redis_deployment.commandstats() - before
    assert stats["scan"] == stats["keys"] == 0
    # one write per key it drops: SO-1003's tombstone, C-1001's price stamp, the reference stamp
    assert stats["set"] == 3, stats
    # B has no copy: it reads Redis, where C-1001's entry predates the invalidation
    assert (await worker_b.check_prices(cart("C-1001"), CTX)).lines[0].freshness == "fresh"
    assert (await worker_b.check_prices(cart("C-1002"), CTX)).lines[0].freshness == "cached"
    assert (await worker_b.get_order("SO-1003", CTX)).freshness == "fresh"
    assert (await worker_b.find_orders("WC-5003", CTX)).items[0].order_number == "SO-1003"
    assert (await worker_b.find_orders("WC-5003", CTX)).items[0].freshness == "cached"
    assert (erp.calls["prices"], erp.calls["order"], erp.calls["find_orders"]) == (3, 2, 2)


async def test_two_namespaces_on_one_redis_never_share_an_entry(erp: ControlledErp, shared_redis: MakeShared) -> None:
    first = CachingBackend(erp, shared_redis(), CacheSettings(local_ttl_seconds=0.05), namespace="first")
    second = CachingBackend(erp, shared_redis(), CacheSettings(local_ttl_seconds=0.05), namespace="second")
    assert (await first.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "fresh"
    assert (await second.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "fresh"
    assert erp.calls["availability"] == 2  # the second never read the first's entry
    assert first.keys.availability("MUG-SND") != second.keys.availability("MUG-SND")
    # the layout, stated literally (the keys module is the code under test here)
    assert first.keys.availability("MUG-SND") == "cache:first:avail:MUG-SND"
    assert first.keys.price("EUR", "C-1001", "TOTE-NAT", 20) == "cache:first:price:EUR:C-1001:TOTE-NAT:20"
    assert (first.keys.order("SO-1"), first.keys.order_ref("WC-1")) == (
        "cache:first:order:SO-1",
        "cache:first:orderref:WC-1",
    )
    await first.invalidate(skus=["MUG-SND"])  # nor does an invalidation cross namespaces
    await asyncio.sleep(0.1)
    assert (await second.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "cached"
    assert _cache(erp).keys.namespace == erp.name  # the default: the backend's name
    for cache in (first, second):  # the recheck the last lookup started ends with the test
        cache.store.background.cancel_all()
    await asyncio.sleep(0)


async def test_an_invalidation_redis_cannot_take_is_refused_not_acknowledged(erp: ControlledErp) -> None:
    """Redis down: this process drops its copies, and the caller hears that nobody else did."""
    down = open_shared_state(RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1))
    cache = _cache(erp, down)
    await cache.get_availability(["MUG-SND"], None, CTX)
    with pytest.raises(InvalidationNotShared):
        await cache.invalidate(skus=["MUG-SND"])
    assert (await cache.get_availability(["MUG-SND"], None, CTX)).items[0].freshness == "fresh"  # dropped here
    await down.aclose()


async def test_a_return_created_while_redis_is_down_stands(erp: ControlledErp) -> None:
    """The order invalidation a return makes cannot reach Redis: the return is still answered."""
    down = open_shared_state(RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1))
    request = ReturnRequest(
        order_number="SO-1003", lines=[ReturnRequestLine(sku="HOOD-BLK-L", quantity=1, reason="damaged")]
    )
    outcome = await _cache(erp, down).create_return(request, IdempotencyToken.for_request("redis-down-1", request), CTX)
    assert outcome.authorization.order_number == "SO-1003"
    await down.aclose()
