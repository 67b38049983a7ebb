"""What behaving like an ERP backend means here. Expectations come from the shared dataset.

Every backend is seeded from ``erp_backends/dataset/retail.toml``; a backend passes when it
answers every contract operation as the dataset says, through the port only.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import msgspec
import pytest

from contracts.v1 import (
    Contact,
    IntakeLine,
    OrderIntakeRequest,
    OrderValidationRequest,
    PriceCheckLine,
    PriceCheckRequest,
    ReturnRequest,
    ReturnRequestLine,
    ShippingAddress,
    ValidationLine,
)
from erp_backends.dataset import Dataset
from erp_backends.errors import Conflict, InProgress, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, OrderOutcome

pytestmark = pytest.mark.asyncio


def _key() -> str:
    return f"conformance-{uuid.uuid4()}"


def _token(request: ReturnRequest | OrderIntakeRequest, key: str | None = None) -> IdempotencyToken:
    return IdempotencyToken.for_request(key or _key(), request)


# -- availability ---------------------------------------------------------------------------


async def test_stock_per_warehouse_matches_the_dataset(backend: ErpBackend, ctx: CallContext, dataset: Dataset) -> None:
    skus = [p.sku for p in dataset.products]
    committed = dataset.committed()
    batch = await backend.get_availability(skus, None, ctx)
    assert [item.sku for item in batch.items] == skus
    assert batch.unknown_skus == []
    for product, item in zip(dataset.products, batch.items, strict=True):
        by_wh = {w.warehouse: w for w in item.warehouses}
        assert set(by_wh) == {w.code for w in dataset.warehouses}
        for code, stock in by_wh.items():
            expected_committed = committed.get((product.sku, code), 0)
            assert stock.on_hand == product.on_hand.get(code, 0), (product.sku, code)
            assert stock.committed == expected_committed, (product.sku, code)
            assert stock.available_to_promise == stock.on_hand - expected_committed
        assert item.on_hand == sum(product.on_hand.values())
        assert item.available_to_promise == item.on_hand - item.committed
        assert item.unit


async def test_available_to_promise_subtracts_open_orders(backend: ErpBackend, ctx: CallContext) -> None:
    # SO-1001 (open) holds 2 x TEE-NVY-M in EAST; SO-1002 holds the unshipped LAMP-WHT.
    batch = await backend.get_availability(["TEE-NVY-M", "LAMP-WHT"], ["EAST"], ctx)
    tee, lamp = batch.items
    assert (tee.on_hand, tee.committed, tee.available_to_promise) == (80, 2, 78)
    assert (lamp.on_hand, lamp.committed, lamp.available_to_promise) == (12, 1, 11)
    assert [w.warehouse for w in tee.warehouses] == ["EAST"]


async def test_a_sku_stocked_in_one_warehouse_only(backend: ErpBackend, ctx: CallContext) -> None:
    (cap,) = (await backend.get_availability(["CAP-OLV"], None, ctx)).items
    assert {w.warehouse: w.on_hand for w in cap.warehouses} == {"EAST": 9, "WEST": 0}
    west = await backend.get_availability(["CAP-OLV"], ["WEST"], ctx)
    assert west.items[0].available_to_promise == 0


async def test_unknown_skus_are_listed_and_do_not_fail_the_batch(backend: ErpBackend, ctx: CallContext) -> None:
    batch = await backend.get_availability(["NO-SUCH-SKU", "MUG-SND", "ALSO-MISSING"], None, ctx)
    assert [item.sku for item in batch.items] == ["MUG-SND"]
    assert batch.unknown_skus == ["NO-SUCH-SKU", "ALSO-MISSING"]


async def test_an_unknown_warehouse_is_rejected(backend: ErpBackend, ctx: CallContext) -> None:
    with pytest.raises(Rejected) as caught:
        await backend.get_availability(["MUG-SND"], ["NOWHERE"], ctx)
    assert caught.value.code == "unknown-warehouse"


# -- prices ---------------------------------------------------------------------------------


async def _price(
    backend: ErpBackend, ctx: CallContext, customer: str | None, sku: str, quantity: int
) -> tuple[str, str | None]:
    answer = await backend.check_prices(
        PriceCheckRequest(customer=customer, currency="EUR", lines=[PriceCheckLine(sku=sku, quantity=quantity)]), ctx
    )
    line = answer.lines[0]
    assert line.line_total == line.unit_price * quantity
    return str(line.unit_price), line.source.price_list


async def test_anonymous_and_list_customers_pay_the_list_price(backend: ErpBackend, ctx: CallContext) -> None:
    assert await _price(backend, ctx, None, "TOTE-NAT", 20) == ("18.00", None)
    assert await _price(backend, ctx, "C-1002", "TOTE-NAT", 20) == ("18.00", None)


@pytest.mark.parametrize(
    ("sku", "quantity", "unit_price"),
    [
        ("TOTE-NAT", 5, "17.10"),  # below the first break: the contract's base 5 %
        ("TOTE-NAT", 10, "15.30"),  # 15 % from 10
        ("TOTE-NAT", 50, "13.50"),  # 25 % from 50
        ("MUG-SND", 6, "12.60"),
        ("MUG-SND", 24, "11.20"),
        ("NOTE-GRN", 1, "11.88"),  # 12.50 x 0.95 = 11.875, half-up
    ],
)
async def test_contract_prices_follow_quantity_breaks(
    backend: ErpBackend, ctx: CallContext, sku: str, quantity: int, unit_price: str
) -> None:
    assert await _price(backend, ctx, "C-1001", sku, quantity) == (unit_price, "ACME-2026")


async def test_cart_totals_add_up(backend: ErpBackend, ctx: CallContext) -> None:
    answer = await backend.check_prices(
        PriceCheckRequest(
            customer="C-1001",
            currency="EUR",
            lines=[PriceCheckLine(sku="TOTE-NAT", quantity=20), PriceCheckLine(sku="LAMP-WHT", quantity=1)],
        ),
        ctx,
    )
    assert [str(line.list_price) for line in answer.lines] == ["18.00", "79.00"]
    assert answer.total == Decimal("381.05")  # 20 x 15.30 + 75.05
    assert answer.list_total == Decimal("439.00")
    assert answer.rounding.minor_unit == 2


@pytest.mark.parametrize(
    ("customer", "currency", "sku", "code"),
    [
        ("C-9999", "EUR", "MUG-SND", "unknown-customer"),
        (None, "EUR", "NO-SUCH-SKU", "unknown-sku"),
        (None, "XTS", "MUG-SND", "unsupported-currency"),
    ],
)
async def test_price_check_rejections(
    backend: ErpBackend, ctx: CallContext, customer: str | None, currency: str, sku: str, code: str
) -> None:
    with pytest.raises(Rejected) as caught:
        await backend.check_prices(
            PriceCheckRequest(customer=customer, currency=currency, lines=[PriceCheckLine(sku=sku, quantity=1)]), ctx
        )
    assert caught.value.code == code


# -- order validation -----------------------------------------------------------------------


def _cart(
    *lines: tuple[str, int, str], customer: str | None = None, warehouse: str | None = None
) -> OrderValidationRequest:
    return OrderValidationRequest(
        customer=customer,
        currency="EUR",
        warehouse=warehouse,
        lines=[ValidationLine(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in lines],
    )


async def test_a_good_cart_is_valid(backend: ErpBackend, ctx: CallContext) -> None:
    verdict = await backend.validate_order(
        _cart(("TOTE-NAT", 20, "15.30"), ("MUG-SND", 2, "13.30"), customer="C-1001"), ctx
    )
    assert verdict.valid, verdict.problems


async def test_each_kind_of_cart_problem(backend: ErpBackend, ctx: CallContext) -> None:
    verdict = await backend.validate_order(
        _cart(
            ("NO-SUCH-SKU", 1, "1.00"),
            ("MUG-SLT", 1, "14.00"),  # not salable
            ("LAMP-WHT", 12, "79.00"),  # 11 available to promise in EAST
            ("TEE-NVY-M", 1, "17.90"),  # list price is 19.90
            warehouse="EAST",
        ),
        ctx,
    )
    assert not verdict.valid
    found = {(p.line, p.code) for p in verdict.problems}
    assert found == {(0, "unknown_sku"), (1, "not_salable"), (2, "insufficient_stock"), (3, "price_changed")}
    by_code = {p.code: p for p in verdict.problems}
    assert by_code["insufficient_stock"].available == 11
    assert str(by_code["price_changed"].current_unit_price) == "19.90"
    assert str(by_code["price_changed"].seen_unit_price) == "17.90"


async def test_validation_uses_the_customers_price(backend: ErpBackend, ctx: CallContext) -> None:
    verdict = await backend.validate_order(_cart(("TOTE-NAT", 20, "18.00"), customer="C-1001"), ctx)
    assert [(p.code, str(p.current_unit_price)) for p in verdict.problems] == [("price_changed", "15.30")]


async def test_out_of_stock_everywhere(backend: ErpBackend, ctx: CallContext) -> None:
    verdict = await backend.validate_order(_cart(("TEE-WHT-M", 1, "19.90")), ctx)
    assert [(p.code, p.available) for p in verdict.problems] == [("insufficient_stock", 0)]


# -- order lookup ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "status", "invoice", "payment"),
    [
        ("SO-1001", "open", "not_invoiced", "unpaid"),
        ("SO-1002", "partially_shipped", "not_invoiced", "unpaid"),
        ("SO-1003", "shipped", "not_invoiced", "unpaid"),
        ("SO-1004", "shipped", "invoiced", "unpaid"),
        ("SO-1005", "shipped", "invoiced", "paid"),
        ("SO-1006", "cancelled", "not_invoiced", "unpaid"),
    ],
)
async def test_order_states(
    backend: ErpBackend, ctx: CallContext, dataset: Dataset, number: str, status: str, invoice: str, payment: str
) -> None:
    order = await backend.get_order(number, ctx)
    spec = next(o for o in dataset.orders if o.number == number)
    assert (order.status, order.invoice_state, order.payment_state) == (status, invoice, payment)
    assert order.external_ref == spec.external_ref
    assert order.customer.reference == spec.customer
    assert [(line.sku, line.quantity, line.shipped_quantity, line.unit_price) for line in order.lines] == [
        (line.sku, line.quantity, line.shipped, line.unit_price) for line in spec.lines
    ]
    assert order.total_amount == sum((line.unit_price * line.quantity for line in spec.lines), Decimal(0))
    invoiced = invoice == "invoiced"
    assert all(line.invoiced_quantity == (line.quantity if invoiced else 0) for line in order.lines)


async def test_order_shipments_and_customer_details(backend: ErpBackend, ctx: CallContext, dataset: Dataset) -> None:
    order = await backend.get_order("SO-1002", ctx)
    shipped = [s for s in order.shipments if s.state == "shipped"]
    pending = [s for s in order.shipments if s.state == "pending"]
    assert len(shipped) == 1
    assert len(pending) == 1
    assert shipped[0].tracking_reference == "1Z999AA10123456784"
    assert {(line.sku, line.quantity) for line in shipped[0].lines} == {("LAMP-WHT", 2), ("CANDLE-FIG", 6)}
    assert [(line.sku, line.quantity) for line in pending[0].lines] == [("LAMP-WHT", 1)]
    customer = next(c for c in dataset.customers if c.reference == "C-1001")
    assert order.customer.name == customer.name
    assert order.customer.email == customer.email
    assert order.customer.phone == customer.phone
    assert order.customer.address is not None
    assert customer.address is not None
    assert order.customer.address.city == customer.address.city


async def test_order_by_storefront_reference(backend: ErpBackend, ctx: CallContext) -> None:
    found = await backend.find_orders("WC-5004", ctx)
    assert [o.order_number for o in found.items] == ["SO-1004"]
    assert (await backend.find_orders("WC-0000", ctx)).items == []


async def test_unknown_order_is_not_found(backend: ErpBackend, ctx: CallContext) -> None:
    with pytest.raises(NotFound):
        await backend.get_order("SO-0000", ctx)


# -- returns --------------------------------------------------------------------------------


def _return(number: str, *lines: ReturnRequestLine) -> ReturnRequest:
    return ReturnRequest(order_number=number, lines=list(lines))


async def test_create_and_read_a_return(backend: ErpBackend, ctx: CallContext) -> None:
    request = _return("SO-1005", ReturnRequestLine(sku="NOTE-GRN", quantity=2, reason="damaged"))
    created = await backend.create_return(request, _token(request), ctx)
    assert not created.replayed
    rma = created.authorization
    assert rma.order_number == "SO-1005"
    assert rma.status == "authorized"
    assert [(line.sku, line.quantity, str(line.unit_price), str(line.refund_amount)) for line in rma.lines] == [
        ("NOTE-GRN", 2, "11.88", "23.76")
    ]
    assert (rma.refund_estimate.currency, str(rma.refund_estimate.amount)) == ("EUR", "23.76")
    assert await backend.get_return(rma.rma_number, ctx) == rma
    order = await backend.get_order("SO-1005", ctx)
    assert {line.sku: line.returned_quantity for line in order.lines} == {"TOTE-NAT": 0, "NOTE-GRN": 2}


async def test_over_return_is_rejected_naming_the_line(backend: ErpBackend, ctx: CallContext) -> None:
    # SO-1002 delivered 2 of 3 LAMP-WHT.
    request = _return("SO-1002", ReturnRequestLine(line_ref="1", quantity=3, reason="damaged"))
    with pytest.raises(Rejected) as caught:
        await backend.create_return(request, _token(request), ctx)
    assert caught.value.code == "return-quantity-exceeded"
    assert caught.value.field == "lines[0].quantity"
    assert caught.value.available == 2


async def test_returns_add_up_against_what_was_delivered(backend: ErpBackend, ctx: CallContext) -> None:
    first = _return("SO-1004", ReturnRequestLine(sku="CHAIR-OAK", quantity=1, reason="defective"))
    await backend.create_return(first, _token(first), ctx)
    second = _return("SO-1004", ReturnRequestLine(sku="CHAIR-OAK", quantity=2, reason="defective"))
    with pytest.raises(Rejected) as caught:
        await backend.create_return(second, _token(second), ctx)
    assert caught.value.available == 1


async def test_nothing_delivered_cannot_be_returned(backend: ErpBackend, ctx: CallContext) -> None:
    request = _return("SO-1001", ReturnRequestLine(sku="MUG-SND", quantity=1, reason="no_longer_needed"))
    with pytest.raises(Conflict):
        await backend.create_return(request, _token(request), ctx)


async def test_return_for_unknown_order(backend: ErpBackend, ctx: CallContext) -> None:
    request = _return("SO-0000", ReturnRequestLine(sku="MUG-SND", quantity=1, reason="other"))
    with pytest.raises(NotFound):
        await backend.create_return(request, _token(request), ctx)


async def test_unknown_return_is_not_found(backend: ErpBackend, ctx: CallContext) -> None:
    with pytest.raises(NotFound):
        await backend.get_return("RMA-999999", ctx)


async def test_same_key_same_body_replays_one_document(backend: ErpBackend, ctx: CallContext) -> None:
    request = _return("SO-1003", ReturnRequestLine(sku="SOCK-ANT-43-46", quantity=1, reason="wrong_item"))
    key = _key()
    first = await backend.create_return(request, _token(request, key), ctx)
    again = await backend.create_return(request, _token(request, key), ctx)
    assert again.replayed
    assert again.authorization.rma_number == first.authorization.rma_number
    order = await backend.get_order("SO-1003", ctx)
    assert {line.sku: line.returned_quantity for line in order.lines}["SOCK-ANT-43-46"] == 1


async def test_same_key_other_body_is_refused(backend: ErpBackend, ctx: CallContext) -> None:
    key = _key()
    request = _return("SO-1003", ReturnRequestLine(sku="HOOD-BLK-L", quantity=1, reason="wrong_item"))
    await backend.create_return(request, _token(request, key), ctx)
    other = _return("SO-1003", ReturnRequestLine(sku="SOCK-ANT-43-46", quantity=1, reason="wrong_item"))
    with pytest.raises(Rejected) as caught:
        await backend.create_return(other, _token(other, key), ctx)
    assert caught.value.code == "idempotency-key-reused"
    order = await backend.get_order("SO-1003", ctx)
    assert {line.sku: line.returned_quantity for line in order.lines} == {"HOOD-BLK-L": 1, "SOCK-ANT-43-46": 0}


# -- order intake ---------------------------------------------------------------------------


def _intake(
    *lines: tuple[str, int, str] | tuple[str, int, str, str], customer: str | None = "C-1001"
) -> OrderIntakeRequest:
    """An order as the storefront took it, with its own storefront reference: (sku, quantity,
    unit price[, warehouse]) per line."""
    return OrderIntakeRequest(
        external_ref=f"WC-{uuid.uuid4().hex[:12]}",
        currency="EUR",
        customer=customer,
        lines=[
            IntakeLine(
                sku=line[0], quantity=line[1], unit_price=Decimal(line[2]), warehouse=line[3] if len(line) > 3 else None
            )
            for line in lines
        ],
        shipping_address=ShippingAddress(
            name="Erika Mustermann", street="Heidestrasse 17", postal_code="51147", city="Koeln", country="DE"
        ),
        contact=Contact(name="Erika Mustermann", email="erika@example.com", phone="+49 221 1234567"),
    )


async def _orders_for(backend: ErpBackend, ctx: CallContext, request: OrderIntakeRequest) -> list[str]:
    return [o.order_number for o in (await backend.find_orders(request.external_ref, ctx)).items]


async def test_an_order_is_created_once_per_key(backend: ErpBackend, ctx: CallContext) -> None:
    request = _intake(("TOTE-NAT", 20, "15.30"), ("MUG-SND", 2, "13.30"))
    key = _key()
    first = await backend.create_order(request, _token(request, key), ctx)
    again = await backend.create_order(request, _token(request, key), ctx)
    assert not first.replayed
    assert again == OrderOutcome(order_number=first.order_number, replayed=True)
    assert await _orders_for(backend, ctx, request) == [first.order_number]


async def test_a_retry_after_a_lost_answer_finds_the_order(backend: ErpBackend, ctx: CallContext) -> None:
    request = _intake(("LAMP-WHT", 1, "79.00"))
    key = _key()
    await backend.create_order(request, _token(request, key), ctx)  # the answer is lost on its way back
    retried = await backend.create_order(request, _token(request, key), ctx)
    assert retried.replayed
    assert await _orders_for(backend, ctx, request) == [retried.order_number]


async def test_concurrent_calls_with_one_key_make_one_order(backend: ErpBackend, ctx: CallContext) -> None:
    request = _intake(("NOTE-GRN", 3, "11.88"))
    token = _token(request)
    answers = await asyncio.gather(
        *(backend.create_order(request, token, ctx) for _ in range(10)), return_exceptions=True
    )
    outcomes = [a for a in answers if isinstance(a, OrderOutcome)]
    # the losers replay the winner's order, or are told to retry while it is being finished
    assert all(isinstance(a, InProgress) for a in answers if not isinstance(a, OrderOutcome)), answers
    assert sum(not o.replayed for o in outcomes) == 1
    numbers = {o.order_number for o in outcomes}
    assert len(numbers) == 1
    assert await _orders_for(backend, ctx, request) == list(numbers)
    retried = await backend.create_order(request, token, ctx)  # once the winner is done: its order
    assert retried == OrderOutcome(order_number=numbers.pop(), replayed=True)


async def test_same_key_other_order_is_refused(backend: ErpBackend, ctx: CallContext) -> None:
    key = _key()
    request = _intake(("MUG-SND", 2, "13.30"))
    created = await backend.create_order(request, _token(request, key), ctx)
    other = msgspec.structs.replace(request, lines=[IntakeLine(sku="MUG-SND", quantity=3, unit_price=Decimal("13.30"))])
    with pytest.raises(Rejected) as caught:
        await backend.create_order(other, _token(other, key), ctx)
    assert caught.value.code == "idempotency-key-reused"
    assert caught.value.field == "Idempotency-Key"
    assert await _orders_for(backend, ctx, request) == [created.order_number]
    order = await backend.get_order(created.order_number, ctx)
    assert [(line.sku, line.quantity) for line in order.lines] == [("MUG-SND", 2)]


@pytest.mark.parametrize(
    ("customer", "sku", "code", "field"),
    [
        ("C-1001", "MUG-SLT", "not-salable", "lines[1].sku"),
        ("C-1001", "NO-SUCH-SKU", "unknown-sku", "lines[1].sku"),
        ("C-9999", "MUG-SND", "unknown-customer", "customer"),
    ],
)
async def test_order_rejections_name_the_field(
    backend: ErpBackend, ctx: CallContext, customer: str, sku: str, code: str, field: str
) -> None:
    request = _intake(("TOTE-NAT", 5, "17.10"), (sku, 1, "14.00"), customer=customer)
    with pytest.raises(Rejected) as caught:
        await backend.create_order(request, _token(request), ctx)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert await _orders_for(backend, ctx, request) == []


async def test_the_created_order_is_found_with_its_lines(backend: ErpBackend, ctx: CallContext) -> None:
    request = _intake(("TOTE-NAT", 20, "15.30"), ("MUG-SND", 2, "13.30"), ("NOTE-GRN", 1, "11.88"))
    created = await backend.create_order(request, _token(request), ctx)
    order = await backend.get_order(created.order_number, ctx)
    assert (order.order_number, order.external_ref, order.status, order.currency) == (
        created.order_number,
        request.external_ref,
        "open",
        "EUR",
    )
    assert order.customer.reference == "C-1001"
    assert [(line.sku, line.quantity, line.shipped_quantity, line.unit_price) for line in order.lines] == [
        (line.sku, line.quantity, 0, line.unit_price) for line in request.lines
    ]
    assert order.total_amount == Decimal("344.48")  # 20 x 15.30 + 2 x 13.30 + 11.88
    (found,) = (await backend.find_orders(request.external_ref, ctx)).items
    assert msgspec.structs.replace(found, as_of=None) == msgspec.structs.replace(order, as_of=None)


async def test_a_guest_order_ships_to_its_address(backend: ErpBackend, ctx: CallContext) -> None:
    request = _intake(("CANDLE-FIG", 2, "16.00"), customer=None)
    created = await backend.create_order(request, _token(request), ctx)
    order = await backend.get_order(created.order_number, ctx)
    assert [(line.sku, line.quantity, str(line.unit_price)) for line in order.lines] == [("CANDLE-FIG", 2, "16.00")]
    assert order.customer.address is not None
    assert (order.customer.address.street, order.customer.address.city) == ("Heidestrasse 17", "Koeln")


async def test_an_order_commits_its_stock(backend: ErpBackend, ctx: CallContext) -> None:
    (before,) = (await backend.get_availability(["TEE-NVY-M"], None, ctx)).items
    request = _intake(("TEE-NVY-M", 3, "19.90", "EAST"))
    await backend.create_order(request, _token(request), ctx)
    (after,) = (await backend.get_availability(["TEE-NVY-M"], None, ctx)).items
    assert after.available_to_promise == before.available_to_promise - 3
    assert (after.on_hand, after.committed) == (before.on_hand, before.committed + 3)
    east = {w.warehouse: w.committed for w in after.warehouses}["EAST"]
    assert east == {w.warehouse: w.committed for w in before.warehouses}["EAST"] + 3


async def test_a_line_naming_no_warehouse_ships_from_one_that_has_the_stock(
    backend: ErpBackend, ctx: CallContext
) -> None:
    # HOOD-GRY-L is stocked in WEST only.
    request = _intake(("HOOD-GRY-L", 2, "59.00"))
    await backend.create_order(request, _token(request), ctx)
    (hood,) = (await backend.get_availability(["HOOD-GRY-L"], None, ctx)).items
    assert {w.warehouse: (w.committed, w.available_to_promise) for w in hood.warehouses} == {
        "EAST": (0, 0),
        "WEST": (2, 18),
    }
