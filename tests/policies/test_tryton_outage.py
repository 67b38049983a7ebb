"""The real Tryton server goes away and comes back, behind the gateway's policies.

Reads keep being answered from the cache (``stale``) while the breaker is open; writes fail
fast with 503 material (``ErpUnavailable``/``CircuitOpen``); once Tryton is back the breaker
closes by itself after its reset timeout, the adapter logs in again (the restarted server
forgot the session) and reads are fresh again. Uses its own server: it stops it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from contracts.v1 import ReturnRequest, ReturnRequestLine
from erp_backends.errors import ErpUnavailable
from erp_backends.port import IdempotencyToken
from erp_backends.tryton import TrytonBackend
from gateway.shared_state import RedisSettings, open_shared_state
from policies.caching import CacheSettings, OperationCache
from policies.chain import PolicyChain, PolicySettings, wrap_backend
from policies.circuit_breaking import BreakerSettings, CircuitOpen
from policies.retrying import RetrySettings
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings
from tests.policies.conftest import CTX

pytestmark = pytest.mark.tryton

RESET_TIMEOUT = 0.5
SHORT = OperationCache(ttl_seconds=0.2, stale_while_revalidate_seconds=0, stale_if_error_seconds=60)


@pytest.fixture
def own_tryton() -> Iterator[TrytonServer]:
    with TrytonServer() as server:
        yield server


@pytest.fixture
async def chain(own_tryton: TrytonServer) -> AsyncIterator[PolicyChain]:
    settings = PolicySettings(
        cache=CacheSettings(availability=SHORT, orders=SHORT, prices=SHORT),
        breaker=BreakerSettings(fail_max=2, reset_timeout_seconds=RESET_TIMEOUT, sync_interval_seconds=0.05),
        retry=RetrySettings(read_attempts=0),
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=0.5)) as client:
        wrapped = wrap_backend(
            TrytonBackend(tryton_settings(own_tryton), client), settings, open_shared_state(RedisSettings())
        )
        yield wrapped
        await wrapped.backend.aclose()


def _return() -> tuple[ReturnRequest, IdempotencyToken]:
    request = ReturnRequest(
        order_number="SO-1003", lines=[ReturnRequestLine(sku="HOOD-BLK-L", quantity=1, reason="damaged")]
    )
    return request, IdempotencyToken.for_request("outage-test-key", request)


async def test_tryton_outage_and_recovery(own_tryton: TrytonServer, chain: PolicyChain) -> None:
    backend, reads = chain.backend, chain.guarded.breakers["reads"]
    warm = await backend.get_availability(["MUG-SND"], ["EAST"], CTX)
    assert warm.items[0].freshness == "fresh"
    assert (await backend.get_order("SO-1002", CTX)).freshness == "fresh"

    own_tryton.stop()
    await asyncio.sleep(0.25)  # past the TTL: the cache has to ask Tryton, which is gone
    for _ in range(3):
        stale = await backend.get_availability(["MUG-SND"], ["EAST"], CTX)
        assert stale.items[0].freshness == "stale"
        assert stale.items[0].on_hand == warm.items[0].on_hand
    assert reads.state == "open"
    assert (await backend.get_order("SO-1002", CTX)).freshness == "stale"  # served while open
    request, token = _return()
    for _ in range(2):
        with pytest.raises(ErpUnavailable):  # connection refused, counted by the writes breaker
            await backend.create_return(request, token, CTX)
    with pytest.raises(CircuitOpen):  # now failing fast, without calling Tryton
        await backend.create_return(request, token, CTX)

    own_tryton.start()  # same port, golden data, a server that never saw our session
    started = time.monotonic()
    await asyncio.sleep(RESET_TIMEOUT + 0.1)
    fresh = await backend.get_availability(["MUG-SND"], ["EAST"], CTX)  # the half-open trial
    assert fresh.items[0].freshness == "fresh"
    assert reads.state == "closed"
    assert (await backend.get_order("SO-1002", CTX)).freshness == "fresh"
    created = await backend.create_return(request, token, CTX)  # writes recover the same way
    assert created.authorization.status == "authorized"
    assert time.monotonic() - started < 10
