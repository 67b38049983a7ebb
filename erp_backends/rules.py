"""Business rules that hold whatever the ERP: rounding, cart judgement, return limits.

Adapters gather facts from their ERP and let these functions decide, so every backend
judges a cart or a return the same way and the conformance suite can hold them to it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from contracts.v1 import (
    Order,
    OrderLine,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceLine,
    PriceSource,
    ReturnRequest,
    Rounding,
    ValidationProblem,
)
from contracts.v1._types import MINOR_UNIT
from contracts.v1.orders import InvoiceState, OrderStatus, PaymentState
from erp_backends.errors import Conflict, Rejected

__all__ = [
    "MINOR_UNIT",
    "PlannedReturnLine",
    "SkuFacts",
    "judge_cart",
    "now",
    "order_status",
    "plan_return",
    "price_check",
    "price_line",
    "round_money",
]

_QUANT = Decimal(1).scaleb(-MINOR_UNIT)


def now() -> datetime:
    return datetime.now(UTC)


def round_money(amount: Decimal) -> Decimal:
    """Round half-up to the currency's minor unit, as the contract states."""
    return amount.quantize(_QUANT, rounding=ROUND_HALF_UP)


def price_line(
    sku: str, quantity: int, unit_price: Decimal, list_price: Decimal, source: PriceSource, as_of: datetime
) -> PriceLine:
    """One priced line: prices rounded to the minor unit, the line total is unit price times quantity."""
    unit = round_money(unit_price)
    return PriceLine(
        sku=sku,
        quantity=quantity,
        unit_price=unit,
        list_price=round_money(list_price),
        line_total=unit * quantity,
        source=source,
        as_of=as_of,
    )


def price_check(customer: str | None, currency: str, lines: list[PriceLine], as_of: datetime) -> PriceCheck:
    """A price answer from its lines: totals are exact sums of the (already rounded) lines."""
    return PriceCheck(
        customer=customer,
        currency=currency,
        lines=lines,
        list_total=sum((line.list_price * line.quantity for line in lines), Decimal("0.00")),
        total=sum((line.line_total for line in lines), Decimal("0.00")),
        rounding=Rounding(minor_unit=MINOR_UNIT, mode="half_up"),
        as_of=as_of,
    )


class SkuFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend knows of one cart line's SKU, for ``judge_cart``."""

    salable: bool
    available: int
    unit_price: Decimal


def judge_cart(request: OrderValidationRequest, facts: Mapping[int, SkuFacts | None]) -> OrderValidation:
    """Per-line problems of a cart. ``facts`` maps a line index to its facts (None: unknown SKU).

    Stock is shared between lines of the same SKU: the second line sees what the first left.
    """
    problems: list[ValidationProblem] = []
    claimed: dict[str, int] = defaultdict(int)
    for index, line in enumerate(request.lines):
        fact = facts.get(index)
        if fact is None:
            problems.append(
                ValidationProblem(line=index, sku=line.sku, code="unknown_sku", detail=f"SKU {line.sku!r} is unknown")
            )
            continue
        if not fact.salable:
            problems.append(
                ValidationProblem(
                    line=index, sku=line.sku, code="not_salable", detail=f"SKU {line.sku!r} is not for sale"
                )
            )
        left = fact.available - claimed[line.sku]
        claimed[line.sku] += line.quantity
        if line.quantity > left:
            problems.append(
                ValidationProblem(
                    line=index,
                    sku=line.sku,
                    code="insufficient_stock",
                    detail=f"{line.quantity} requested, {max(left, 0)} available",
                    available=max(left, 0),
                )
            )
        if line.unit_price != fact.unit_price:
            problems.append(
                ValidationProblem(
                    line=index,
                    sku=line.sku,
                    code="price_changed",
                    detail=f"unit price is now {fact.unit_price}, the shopper saw {line.unit_price}",
                    seen_unit_price=line.unit_price,
                    current_unit_price=fact.unit_price,
                )
            )
    return OrderValidation(valid=not problems, problems=problems, checked_at=now())


def order_status(
    lines: list[tuple[int, int, int]], *, cancelled: bool, paid: Decimal, total: Decimal
) -> tuple[OrderStatus, InvoiceState, PaymentState]:
    """Status, invoice and payment state from (ordered, shipped, invoiced) per line."""
    ordered = sum(q for q, _, _ in lines)
    shipped = sum(s for _, s, _ in lines)
    invoiced = sum(i for _, _, i in lines)
    status: OrderStatus
    if cancelled:
        status = "cancelled"
    elif shipped == 0:
        status = "open"
    elif shipped < ordered:
        status = "partially_shipped"
    else:
        status = "shipped"
    invoice: InvoiceState = (
        "not_invoiced" if invoiced == 0 else "partially_invoiced" if invoiced < ordered else "invoiced"
    )
    payment: PaymentState = "unpaid" if paid <= 0 else "paid" if paid >= total else "partially_paid"
    return status, invoice, payment


class PlannedReturnLine(msgspec.Struct, frozen=True, kw_only=True):
    """A request line resolved to the order line it returns."""

    order_line: OrderLine
    quantity: int
    reason: str
    comment: str | None

    @property
    def refund_amount(self) -> Decimal:
        return round_money(self.order_line.unit_price * self.quantity)


def plan_return(request: ReturnRequest, order: Order) -> list[PlannedReturnLine]:
    """Check a return request against the order; raise ``Rejected``/``Conflict`` naming the line.

    Rules: each request line names exactly one order line (by ``lineRef``, or by a SKU that
    appears once on the order); the order has delivered something; per order line, the
    quantity asked for is at most delivered minus already returned.
    """
    if order.status == "cancelled" or all(line.shipped_quantity == 0 for line in order.lines):
        raise Conflict(
            "nothing-delivered",
            f"order {order.order_number} has nothing delivered yet; nothing can be returned",
        )
    planned: list[PlannedReturnLine] = []
    asked: dict[str, int] = defaultdict(int)
    for index, wanted in enumerate(request.lines):
        field = f"lines[{index}]"
        if (wanted.sku is None) == (wanted.line_ref is None):
            raise Rejected("invalid-return-line", "name the line by exactly one of sku or lineRef", field=field)
        if wanted.line_ref is not None:
            matches = [line for line in order.lines if line.line_ref == wanted.line_ref]
            what = f"line {wanted.line_ref!r}"
        else:
            matches = [line for line in order.lines if line.sku == wanted.sku]
            what = f"SKU {wanted.sku!r}"
        if not matches:
            raise Rejected("line-not-on-order", f"{what} is not on order {order.order_number}", field=field)
        if len(matches) > 1:
            raise Rejected(
                "ambiguous-return-line",
                f"{what} appears on several lines of order {order.order_number}; name it by lineRef",
                field=field,
            )
        line = matches[0]
        asked[line.line_ref] += wanted.quantity
        returnable = line.shipped_quantity - line.returned_quantity
        if asked[line.line_ref] > returnable:
            raise Rejected(
                "return-quantity-exceeded",
                f"{field} ({line.sku}, line {line.line_ref}): {asked[line.line_ref]} asked, "
                f"{returnable} returnable (delivered {line.shipped_quantity}, "
                f"already returned {line.returned_quantity})",
                field=f"{field}.quantity",
                available=max(returnable, 0),
            )
        planned.append(
            PlannedReturnLine(order_line=line, quantity=wanted.quantity, reason=wanted.reason, comment=wanted.comment)
        )
    return planned
