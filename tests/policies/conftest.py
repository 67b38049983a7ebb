"""A controllable ERP for policy tests: the sample backend, counted, and failing on command."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from erp_backends.invocation import Invocation
from erp_backends.port import CallContext
from erp_backends.sample import SampleBackend, SampleSettings
from gateway.shared_state import open_shared_state
from policies.shared_state import LenientState
from tests.conftest import RedisDeployment
from tests.harness.faults import Fault, FaultInjectingBackend

T = TypeVar("T")
CTX = CallContext(correlation_id="policy-test")


class ControlledErp(FaultInjectingBackend):
    """The sample ERP behind the harness's fault injector: counts calls of availability, prices
    and orders (``calls["availability"]``); ``down`` makes them fail once they reached it,
    ``delay`` makes them slow. Other operations pass untouched."""

    def __init__(self, path: Path) -> None:
        super().__init__(SampleBackend(SampleSettings(path=str(path))), self._fault, self._count)
        self.calls: Counter[str] = Counter()
        self.down = False
        self.delay = 0.0

    def _fault(self) -> Fault:
        mode: Literal["ok", "slow", "failing"] = "failing" if self.down else "slow" if self.delay else "ok"
        return Fault(mode=mode, delay_ms=self.delay * 1000)

    def _count(self, operation: str) -> None:
        self.calls[_COUNTED[operation]] += 1

    async def handle(self, invocation: Invocation[T]) -> T:
        if invocation.operation not in _COUNTED:
            return await invocation.send(self.inner)
        return await super().handle(invocation)

    async def check_ready(self) -> None:
        await self.inner.check_ready()


_COUNTED = {"get_availability": "availability", "check_prices": "prices", "get_order": "order"}


@pytest.fixture
async def erp(tmp_path: Path) -> AsyncIterator[ControlledErp]:
    backend = ControlledErp(tmp_path / "erp.sqlite")
    await backend.check_ready()
    yield backend
    await backend.aclose()


#: ``shared_redis(**overrides)``: a shared state on the test's Redis deployment, for one simulated worker.
MakeShared = Callable[..., LenientState]


@pytest.fixture
async def shared_redis(redis_deployment: RedisDeployment) -> AsyncIterator[MakeShared]:
    """Makes shared states on the test's Redis, one per simulated worker, on every deployment
    mode (``redis_deployment``: standalone, Sentinel, Cluster); closes them after. Keyword
    arguments override ``RedisSettings`` fields (``retry_seconds=0.1``). The timeout is generous
    unless a test sets its own: on a loaded 2-core machine a Cluster's first round trip (slot map,
    three nodes) can outlast the default 1 s deadline, and a test of what the cache or a quota
    does with Redis answering must not see Redis as down."""
    links: list[LenientState] = []

    def make(**overrides: Any) -> LenientState:
        link = open_shared_state(redis_deployment.settings(**{"timeout_seconds": 2.0, **overrides}))
        links.append(link)
        return link

    yield make
    for link in links:
        await link.aclose()
