"""Tryton order intakes on SQLite and PostgreSQL: what the conformance suite cannot see.

A sale an interrupted attempt left unfinished is finished by the retry that finds it (never
answered as posted while Tryton has not committed its stock), and ``confirm_orders = false``
leaves the sale a quotation, its stock uncommitted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import httpx
import msgspec
import pytest

from contracts.v1 import Contact, IntakeLine, OrderIntakeRequest, ShippingAddress
from erp_backends.errors import InProgress
from erp_backends.port import CallContext, IdempotencyToken
from erp_backends.tryton import TrytonBackend
from erp_backends.tryton.rpc import TrytonSession
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

pytestmark = pytest.mark.tryton

CTX = CallContext(correlation_id="tryton-sales")
REQUEST = OrderIntakeRequest(
    external_ref="WC-7001",
    currency="EUR",
    customer="C-1002",
    lines=[IntakeLine(sku="TEE-NVY-M", quantity=3, unit_price=Decimal("19.90"), warehouse="EAST")],
    shipping_address=ShippingAddress(
        name="Erika Mustermann", street="Heidestrasse 17", postal_code="51147", city="Koeln", country="DE"
    ),
    contact=Contact(name="Erika Mustermann", email="erika@example.com"),
)

#: ``adapter(**settings)``: a fresh adapter (its own login) on the test's server.
MakeAdapter = Callable[..., TrytonBackend]


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> TrytonServer:
    name = "tryton" if request.param == "sqlite" else "tryton_pg"
    found: TrytonServer = request.getfixturevalue(name)
    return found


@pytest.fixture
async def adapter(server: TrytonServer) -> AsyncIterator[MakeAdapter]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=2.0)) as client:
        session = TrytonSession()

        def make(**settings: object) -> TrytonBackend:
            return TrytonBackend(msgspec.structs.replace(tryton_settings(server), **settings), client, session=session)

        yield make


def _sales(server: TrytonServer, key: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = server.rpc().model(
        "sale.sale", "search_read", [["idempotency_key", "=", key]], 0, None, None, ["number", "state"]
    )
    return found


async def _atp(backend: TrytonBackend) -> int:
    (item,) = (await backend.get_availability(["TEE-NVY-M"], ["EAST"], CTX)).items
    return item.available_to_promise


async def test_a_sale_left_unconfirmed_is_confirmed_by_the_retry(server: TrytonServer, adapter: MakeAdapter) -> None:
    token = IdempotencyToken.for_request("finish-the-sale-0001", REQUEST)
    before = await _atp(adapter())
    first = await adapter(confirm_orders=False).create_order(REQUEST, token, CTX)  # stops before confirming
    assert [(s["number"], s["state"]) for s in _sales(server, token.key)] == [(first.order_number, "quotation")]
    assert await _atp(adapter()) == before  # a quotation commits no stock
    with pytest.raises(InProgress) as young:  # its attempt may still be at it: left alone, retry later
        await adapter().create_order(REQUEST, token, CTX)
    assert 0 < young.value.retry_after <= 5
    outcome = await adapter(adopt_drafts_after_seconds=0).create_order(REQUEST, token, CTX)
    assert (outcome.order_number, outcome.replayed) == (first.order_number, True)
    assert [s["state"] for s in _sales(server, token.key)] == ["processing"]
    assert await _atp(adapter()) == before - 3


async def test_without_confirmation_a_quotation_is_the_order(server: TrytonServer, adapter: MakeAdapter) -> None:
    backend = adapter(confirm_orders=False)
    token = IdempotencyToken.for_request("quotation-only-0001", REQUEST)
    created = await backend.create_order(REQUEST, token, CTX)
    again = await backend.create_order(REQUEST, token, CTX)  # a quotation is what this backend makes: replayed
    assert (again.order_number, again.replayed) == (created.order_number, True)
    order = await backend.get_order(created.order_number, CTX)
    assert [(line.sku, line.quantity, str(line.unit_price)) for line in order.lines] == [("TEE-NVY-M", 3, "19.90")]
