"""A controllable ERP for policy tests: the sample backend, counted, and failing on command."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from contracts.v1 import AvailabilityBatch, Order, PriceCheck, PriceCheckRequest
from erp_backends.errors import ErpUnavailable
from erp_backends.port import CallContext
from erp_backends.sample import SampleBackend, SampleSettings
from gateway.shared_state import RedisSettings, open_shared_state
from policies.shared_state import LenientState

T = TypeVar("T")
CTX = CallContext(correlation_id="policy-test")


class ControlledErp(SampleBackend):
    """Counts calls per operation; ``down`` makes calls fail, ``delay`` makes them slow."""

    def __init__(self, path: Path) -> None:
        super().__init__(SampleSettings(path=str(path)))
        self.calls: Counter[str] = Counter()
        self.down = False
        self.delay = 0.0

    async def _counted(self, op: str, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        self.calls[op] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise ErpUnavailable("test ERP is down")
        return await fn()

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self._counted(
            "availability", lambda: super(ControlledErp, self).get_availability(skus, warehouses, ctx)
        )

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        return await self._counted("prices", lambda: super(ControlledErp, self).check_prices(request, ctx))

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        return await self._counted("order", lambda: super(ControlledErp, self).get_order(order_number, ctx))


@pytest.fixture
async def erp(tmp_path: Path) -> AsyncIterator[ControlledErp]:
    backend = ControlledErp(tmp_path / "erp.sqlite")
    await backend.check_ready()
    yield backend
    await backend.aclose()


@pytest.fixture
async def shared_redis(redis_url: str) -> AsyncIterator[Callable[[], LenientState]]:
    """Makes shared states on the test Redis, one per simulated worker; closes them after."""
    links: list[LenientState] = []

    def make() -> LenientState:
        link = open_shared_state(RedisSettings(url=redis_url))
        links.append(link)
        return link

    yield make
    for link in links:
        await link.aclose()
