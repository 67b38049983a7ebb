"""Stock from the real Tryton: calls per single-SKU lookup, and both read paths answering alike.

The adapter reads one SKU across warehouses with ``stock.location.read`` (context ``product``)
and batches with one ``product.product`` read per warehouse (erp_backends/tryton/stock.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest

from erp_backends.dataset import Dataset
from erp_backends.port import CallContext
from erp_backends.tryton import TrytonBackend
from erp_backends.tryton.rpc import TrytonSession
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

pytestmark = [pytest.mark.asyncio, pytest.mark.tryton]

CTX = CallContext(correlation_id="tryton-stock-calls")


class _Methods:
    """JSON-RPC methods sent, in order (an httpx request hook)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.sent.append(msgspec.json.decode(request.content)["method"])


@pytest.fixture
async def counted(tryton: TrytonServer, tryton_session: TrytonSession) -> AsyncIterator[tuple[TrytonBackend, _Methods]]:
    methods = _Methods()
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(20.0, connect=2.0), event_hooks={"request": [methods]}
    ) as client:
        adapter = TrytonBackend(tryton_settings(tryton), client, session=tryton_session)
        yield adapter, methods
        await adapter.aclose()


async def test_a_repeated_single_sku_lookup_is_one_call(counted: tuple[TrytonBackend, _Methods]) -> None:
    backend, methods = counted
    await backend.get_availability(["MUG-SND"], ["EAST"], CTX)  # login and reference data, once
    first_mark = len(methods.sent)
    first = await backend.get_availability(["TEE-NVY-M"], None, CTX)
    mark = len(methods.sent)
    again = await backend.get_availability(["TEE-NVY-M"], None, CTX)
    assert [w.warehouse for w in again.items[0].warehouses] == ["EAST", "WEST"]
    assert methods.sent[first_mark:mark] == ["model.product.product.search_read", "model.stock.location.read"]
    assert methods.sent[mark:] == ["model.stock.location.read"]
    assert msgspec.structs.replace(first.items[0], as_of=again.items[0].as_of) == again.items[0]


async def test_one_sku_at_a_time_answers_as_the_batch(
    counted: tuple[TrytonBackend, _Methods], dataset: Dataset
) -> None:
    backend, _ = counted
    skus = [p.sku for p in dataset.products]
    batch = await backend.get_availability(skus, None, CTX)
    assert len(batch.items) == len(skus)
    for item in batch.items:
        (single,) = (await backend.get_availability([item.sku], None, CTX)).items
        assert msgspec.structs.replace(item, as_of=single.as_of) == single, item.sku
