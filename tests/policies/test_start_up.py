"""A worker starts its adapter (login, reference data) once, outside any request's timeout.

Tryton hashes the password on login (~0.5 s): with a 1 s read timeout the first concurrent
reads of a fresh worker used to run the login inside their own timeout, fail with 503 and
open the reads breaker on a perfectly healthy ERP.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from erp_backends.errors import ErpUnavailable
from erp_backends.port import CallContext
from erp_backends.tryton import TrytonBackend
from gateway.shared_state import RedisSettings, open_shared_state
from policies.chain import GuardedBackend, PolicySettings
from policies.circuit_breaking import BreakerSettings
from policies.retrying import RetrySettings
from policies.timeouts import TimeoutSettings
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings
from tests.policies.conftest import CTX, ControlledErp


class _SlowStart(ControlledErp):
    """Logs in slower than any read may take; fails its first start when ``fail_first``."""

    def __init__(self, path: Path, *, fail_first: bool = False) -> None:
        super().__init__(path)
        self.fail_first = fail_first

    async def start(self, ctx: CallContext) -> None:
        self.calls["start"] += 1
        await asyncio.sleep(0.3)
        if self.fail_first and self.calls["start"] == 1:
            raise ErpUnavailable("not yet")


def _guarded(erp: ControlledErp) -> GuardedBackend:
    settings = PolicySettings(
        timeouts=TimeoutSettings(read_seconds=0.1, start_seconds=5),
        breaker=BreakerSettings(fail_max=2, reset_timeout_seconds=0.05),
        retry=RetrySettings(read_attempts=0),
    )
    return GuardedBackend(erp, settings, open_shared_state(RedisSettings()))


async def test_first_reads_wait_for_one_start_outside_their_timeout(tmp_path: Path) -> None:
    erp = _SlowStart(tmp_path / "erp.sqlite")
    guarded = _guarded(erp)
    answers = await asyncio.gather(*(guarded.get_availability(["MUG-SND"], None, CTX) for _ in range(20)))
    assert all(a.items[0].sku == "MUG-SND" for a in answers)
    assert erp.calls["start"] == 1  # twenty callers, one login
    assert guarded.breakers["reads"].state == "closed"
    await guarded.get_order("SO-1001", CTX)
    assert erp.calls["start"] == 1  # started once per worker, not per call
    await erp.aclose()


async def test_a_failed_start_is_tried_again_by_the_next_call(tmp_path: Path) -> None:
    erp = _SlowStart(tmp_path / "erp.sqlite", fail_first=True)
    guarded = _guarded(erp)
    with pytest.raises(ErpUnavailable):
        await guarded.get_availability(["MUG-SND"], None, CTX)
    assert (await guarded.get_availability(["MUG-SND"], None, CTX)).items[0].sku == "MUG-SND"
    assert erp.calls["start"] == 2
    await erp.aclose()


async def test_a_caller_that_gives_up_does_not_cancel_the_start(tmp_path: Path) -> None:
    erp = _SlowStart(tmp_path / "erp.sqlite")
    guarded = _guarded(erp)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await guarded.get_availability(["MUG-SND"], None, CTX)
    assert (await guarded.get_availability(["MUG-SND"], None, CTX)).items[0].sku == "MUG-SND"
    assert erp.calls["start"] == 1
    await erp.aclose()


@pytest.mark.tryton
async def test_a_fresh_worker_on_a_healthy_tryton_never_opens_the_breaker(tryton: TrytonServer) -> None:
    """The issue's case: a read timeout shorter than login + reference data + read, longer than a read."""
    settings = PolicySettings(
        timeouts=TimeoutSettings(read_seconds=0.6),
        breaker=BreakerSettings(fail_max=1),
        retry=RetrySettings(read_attempts=0),
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=2.0)) as client:
        guarded = GuardedBackend(
            TrytonBackend(tryton_settings(tryton), client), settings, open_shared_state(RedisSettings())
        )
        answer = await guarded.get_availability(["MUG-SND"], None, CTX)
        assert answer.items[0].sku == "MUG-SND"
        assert guarded.breakers["reads"].state == "closed"
