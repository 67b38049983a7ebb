"""Circuit breaking, ERP call budget, timeouts and retries around a failing ERP."""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Callable
from pathlib import Path

import pytest

from contracts.v1 import OrderValidation, OrderValidationRequest, ValidationLine
from erp_backends.errors import ErpTimeout, ErpUnavailable, NotFound
from erp_backends.port import CallContext
from gateway.shared_state import RedisSettings, open_shared_state
from policies.call_budget import CallBudgetExhausted, CallBudgetSettings
from policies.chain import GuardedBackend, PolicySettings
from policies.circuit_breaking import BreakerSettings, CircuitOpen
from policies.retrying import RetrySettings
from policies.shared_state import LenientState
from policies.timeouts import TimeoutSettings
from tests.policies.conftest import CTX, ControlledErp


def _guarded(erp: ControlledErp, redis: LenientState | None = None, **settings: object) -> GuardedBackend:
    defaults: dict[str, object] = {
        "breaker": BreakerSettings(fail_max=3, reset_timeout_seconds=0.3, sync_interval_seconds=0.05),
        "retry": RetrySettings(read_attempts=0),
    }
    return GuardedBackend(erp, PolicySettings(**{**defaults, **settings}), redis or open_shared_state(RedisSettings()))  # type: ignore[arg-type]


async def test_breaker_opens_after_failures_and_closes_after_a_good_trial(erp: ControlledErp) -> None:
    guarded = _guarded(erp)
    erp.down = True
    for _ in range(3):
        with pytest.raises(ErpUnavailable):
            await guarded.get_availability(["MUG-SND"], None, CTX)
    with pytest.raises(CircuitOpen) as caught:
        await guarded.get_availability(["MUG-SND"], None, CTX)
    assert erp.calls["availability"] == 3  # the open breaker did not call the ERP
    assert 0 < (caught.value.retry_after or 0) <= 0.3
    erp.down = False
    await asyncio.sleep(0.35)
    assert (await guarded.get_availability(["MUG-SND"], None, CTX)).items[0].on_hand == 140
    assert guarded.breakers["reads"].state == "closed"


async def test_business_answers_never_trip_the_breaker(erp: ControlledErp) -> None:
    guarded = _guarded(erp)
    for _ in range(10):
        with pytest.raises(NotFound):
            await guarded.get_order("SO-0000", CTX)
    assert guarded.breakers["reads"].state == "closed"


class _BuggyErp(ControlledErp):
    """An adapter with a bug: bad input makes it raise something that is not an ERP failure."""

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        self.calls["validate"] += 1
        raise decimal.InvalidOperation([decimal.InvalidOperation])


async def test_gateway_bugs_and_bad_input_never_trip_the_breaker(tmp_path: Path) -> None:
    erp = _BuggyErp(tmp_path / "erp.sqlite")
    guarded = _guarded(erp)
    request = OrderValidationRequest(
        currency="EUR", lines=[ValidationLine(sku="MUG-SND", quantity=1, unit_price=decimal.Decimal("1.00"))]
    )
    for _ in range(10):
        with pytest.raises(decimal.InvalidOperation):
            await guarded.validate_order(request, CTX)
    assert erp.calls["validate"] == 10  # every call reached the adapter: nothing was shed
    assert guarded.breakers["reads"].state == "closed"
    # ...and the unrelated reads of every other caller still answer
    assert (await guarded.get_availability(["MUG-SND"], None, CTX)).items[0].sku == "MUG-SND"
    await erp.aclose()


async def test_timeouts_count_as_failures(erp: ControlledErp) -> None:
    guarded = _guarded(erp, timeouts=TimeoutSettings(read_seconds=0.05))
    erp.delay = 0.2
    for _ in range(3):
        with pytest.raises(ErpTimeout):
            await guarded.get_availability(["MUG-SND"], None, CTX)
    assert guarded.breakers["reads"].state == "open"
    assert guarded.breakers["writes"].state == "closed"  # reads and writes apart


async def test_an_open_breaker_is_shared_with_other_workers(
    erp: ControlledErp, shared_redis: Callable[[], LenientState]
) -> None:
    worker_a, worker_b = _guarded(erp, shared_redis()), _guarded(erp, shared_redis())
    await worker_b.get_availability(["MUG-SND"], None, CTX)  # B has seen a healthy ERP
    erp.down = True
    for _ in range(3):
        with pytest.raises(ErpUnavailable):
            await worker_a.get_availability(["MUG-SND"], None, CTX)
    await asyncio.sleep(0.1)  # the state change is published, B syncs within its interval
    calls = erp.calls["availability"]
    with pytest.raises(CircuitOpen):
        await worker_b.get_availability(["MUG-SND"], None, CTX)
    assert erp.calls["availability"] == calls  # B failed fast without calling the ERP
    erp.down = False
    await asyncio.sleep(0.35)
    await worker_a.get_availability(["MUG-SND"], None, CTX)  # A's trial succeeds and closes
    await asyncio.sleep(0.1)
    await worker_b.get_availability(["MUG-SND"], None, CTX)
    assert worker_b.breakers["reads"].state == "closed"


async def test_reads_are_retried_writes_are_not(erp: ControlledErp) -> None:
    guarded = _guarded(erp, retry=RetrySettings(read_attempts=2, backoff_seconds=0.001))
    erp.down = True
    with pytest.raises(ErpUnavailable):
        await guarded.get_availability(["MUG-SND"], None, CTX)
    assert erp.calls["availability"] == 3


async def test_a_burst_waits_for_budget_then_is_shed(erp: ControlledErp) -> None:
    guarded = _guarded(
        erp, erp_limits=CallBudgetSettings(calls_per_second=1000, max_concurrent=2, max_wait_seconds=0.05)
    )
    erp.delay = 0.2
    results = await asyncio.gather(
        *(guarded.get_availability([f"SKU-{i}"], None, CTX) for i in range(6)), return_exceptions=True
    )
    shed = [r for r in results if isinstance(r, CallBudgetExhausted)]
    assert erp.calls["availability"] == 2  # at most two ERP calls in flight
    assert len(shed) == 4
    assert all(r.retry_after for r in shed)
    assert guarded.breakers["reads"].state == "closed"  # shedding is not an ERP failure
