"""The ERP-independent business rules every backend delegates to."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from contracts.v1 import (
    Customer,
    Order,
    OrderLine,
    OrderValidationRequest,
    ReturnRequest,
    ReturnRequestLine,
    ValidationLine,
)
from erp_backends.errors import Conflict, Rejected
from erp_backends.rules import SkuFacts, judge_cart, order_status, plan_return, round_money


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [("11.875", "11.88"), ("11.874", "11.87"), ("17.5120", "17.51"), ("0.005", "0.01"), ("2", "2.00")],
)
def test_money_rounds_half_up_to_the_minor_unit(amount: str, rounded: str) -> None:
    assert str(round_money(Decimal(amount))) == rounded


def _cart(*lines: tuple[str, int, str]) -> OrderValidationRequest:
    return OrderValidationRequest(
        currency="EUR", lines=[ValidationLine(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in lines]
    )


def test_a_clean_cart_is_valid() -> None:
    verdict = judge_cart(_cart(("A", 2, "9.90")), {0: SkuFacts(salable=True, available=5, unit_price=Decimal("9.90"))})
    assert verdict.valid
    assert verdict.problems == []


def test_every_kind_of_problem_is_reported_per_line() -> None:
    cart = _cart(("GONE", 1, "1.00"), ("OFF", 1, "5.00"), ("LOW", 4, "2.00"), ("MOVED", 1, "3.00"))
    facts = {
        0: None,
        1: SkuFacts(salable=False, available=10, unit_price=Decimal("5.00")),
        2: SkuFacts(salable=True, available=3, unit_price=Decimal("2.00")),
        3: SkuFacts(salable=True, available=10, unit_price=Decimal("3.50")),
    }
    verdict = judge_cart(cart, facts)
    assert not verdict.valid
    assert [(p.line, p.code) for p in verdict.problems] == [
        (0, "unknown_sku"),
        (1, "not_salable"),
        (2, "insufficient_stock"),
        (3, "price_changed"),
    ]
    assert verdict.problems[2].available == 3
    assert verdict.problems[3].seen_unit_price == Decimal("3.00")
    assert verdict.problems[3].current_unit_price == Decimal("3.50")


def test_two_lines_of_one_sku_share_its_stock() -> None:
    fact = SkuFacts(salable=True, available=5, unit_price=Decimal("1.00"))
    verdict = judge_cart(_cart(("A", 3, "1.00"), ("A", 3, "1.00")), {0: fact, 1: fact})
    assert [(p.line, p.code, p.available) for p in verdict.problems] == [(1, "insufficient_stock", 2)]


@pytest.mark.parametrize(
    ("lines", "cancelled", "paid", "expected"),
    [
        ([(2, 0, 0)], False, "0", ("open", "not_invoiced", "unpaid")),
        ([(3, 2, 0), (6, 6, 0)], False, "0", ("partially_shipped", "not_invoiced", "unpaid")),
        ([(1, 1, 1)], False, "0", ("shipped", "invoiced", "unpaid")),
        ([(1, 1, 1)], False, "10", ("shipped", "invoiced", "paid")),
        ([(2, 2, 1)], False, "4", ("shipped", "partially_invoiced", "partially_paid")),
        ([(1, 0, 0)], True, "0", ("cancelled", "not_invoiced", "unpaid")),
    ],
)
def test_order_status_is_derived_from_quantities(
    lines: list[tuple[int, int, int]], cancelled: bool, paid: str, expected: tuple[str, str, str]
) -> None:
    assert order_status(lines, cancelled=cancelled, paid=Decimal(paid), total=Decimal(10)) == expected


def _order(*lines: tuple[str, str, int, int, int], status: str = "shipped") -> Order:
    return Order(
        order_number="SO-1",
        external_ref=None,
        status=status,  # type: ignore[arg-type]
        ordered_on=date(2026, 1, 1),
        currency="EUR",
        total_amount=Decimal(0),
        invoice_state="not_invoiced",
        payment_state="unpaid",
        customer=Customer(reference="C", name="n", email=None, phone=None, address=None),
        lines=[
            OrderLine(
                line_ref=ref,
                sku=sku,
                description=sku,
                quantity=qty,
                shipped_quantity=shipped,
                invoiced_quantity=0,
                returned_quantity=returned,
                unit_price=Decimal("10.00"),
                line_total=Decimal(10 * qty),
            )
            for ref, sku, qty, shipped, returned in lines
        ],
        shipments=[],
    )


def _ask(*lines: ReturnRequestLine) -> ReturnRequest:
    return ReturnRequest(order_number="SO-1", lines=list(lines))


def test_return_up_to_delivered_minus_returned_is_planned() -> None:
    order = _order(("1", "A", 5, 4, 1))
    planned = plan_return(_ask(ReturnRequestLine(sku="A", quantity=3, reason="damaged")), order)
    assert [(p.order_line.line_ref, p.quantity, p.refund_amount) for p in planned] == [("1", 3, Decimal("30.00"))]


def test_over_return_names_the_line_and_what_is_returnable() -> None:
    order = _order(("1", "A", 5, 4, 1), ("2", "B", 1, 1, 0))
    with pytest.raises(Rejected) as caught:
        plan_return(
            _ask(
                ReturnRequestLine(sku="B", quantity=1, reason="damaged"),
                ReturnRequestLine(line_ref="1", quantity=2, reason="damaged"),
                ReturnRequestLine(sku="A", quantity=2, reason="other"),
            ),
            order,
        )
    assert caught.value.code == "return-quantity-exceeded"
    assert caught.value.field == "lines[2].quantity"
    assert caught.value.available == 3


def test_nothing_delivered_is_a_conflict() -> None:
    with pytest.raises(Conflict) as caught:
        plan_return(_ask(ReturnRequestLine(sku="A", quantity=1, reason="damaged")), _order(("1", "A", 5, 0, 0)))
    assert caught.value.code == "nothing-delivered"


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (ReturnRequestLine(quantity=1, reason="other"), "invalid-return-line"),
        (ReturnRequestLine(sku="A", line_ref="1", quantity=1, reason="other"), "invalid-return-line"),
        (ReturnRequestLine(sku="ZZZ", quantity=1, reason="other"), "line-not-on-order"),
        (ReturnRequestLine(line_ref="9", quantity=1, reason="other"), "line-not-on-order"),
        (ReturnRequestLine(sku="DUP", quantity=1, reason="other"), "ambiguous-return-line"),
    ],
)
def test_a_return_line_must_name_exactly_one_order_line(line: ReturnRequestLine, code: str) -> None:
    order = _order(("1", "A", 1, 1, 0), ("2", "DUP", 1, 1, 0), ("3", "DUP", 1, 1, 0))
    with pytest.raises(Rejected) as caught:
        plan_return(_ask(line), order)
    assert caught.value.code == code
    assert caught.value.field == "lines[0]"
