"""Reading sales as contract ``Order``s: three JSON-RPC calls, sent in parallel, whatever the size.

One call reads the sale with its customer, address, shipments (and their moves) and invoices
through dotted field names; one reads its lines with moves and invoice lines; one sums what
return complaints already hold per line. All three filter on the same domain (by number or by
storefront reference), so none waits for another.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal
from typing import Any

import msgspec

from contracts.v1 import Address, Customer, Order, OrderLine, Shipment, ShipmentLine
from contracts.v1.orders import ShipmentState
from erp_backends.port import CallContext
from erp_backends.rules import now, order_status, round_money
from erp_backends.tryton.rpc import TrytonRpc

__all__ = ["SaleRecord", "read_sales", "returned_per_line"]

#: Complaint states that no longer hold a return (their quantities are free again).
DEAD_COMPLAINT_STATES = ("rejected", "cancelled")
#: Invoice states that count as invoiced (draft and validated invoices are not sent yet).
_INVOICED = ("posted", "paid")
_SHIPMENT_STATES: dict[str, ShipmentState] = {"done": "shipped", "cancelled": "cancelled"}


class SaleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An order with the Tryton ids a return needs."""

    order: Order
    sale_id: int
    party_id: int
    line_ids: dict[str, int]


def _sale_fields(customer_field: str) -> list[str]:
    return [
        "number",
        "reference",
        "state",
        "sale_date",
        "currency.code",
        f"party.{customer_field}",
        "party.name",
        "party.email",
        "party.phone",
        "shipment_address.street",
        "shipment_address.postal_code",
        "shipment_address.city",
        "shipment_address.country.code",
        "shipments.number",
        "shipments.state",
        "shipments.reference",
        "shipments.effective_date",
        "shipments.outgoing_moves.product.code",
        "shipments.outgoing_moves.quantity",
        "invoices.state",
        "invoices.total_amount",
        "invoices.amount_to_pay",
    ]


_LINE_FIELDS = [
    "sale",
    "sequence",
    "product.code",
    "product.name",
    "description",
    "quantity",
    "unit_price",
    "moves.quantity",
    "moves.state",
    "invoice_lines.quantity",
    "invoice_lines.invoice.state",
]


async def read_sales(rpc: TrytonRpc, field: str, value: str, customer_field: str, ctx: CallContext) -> list[SaleRecord]:
    """Sales whose ``field`` (``number`` or ``reference``) equals ``value``, ordered by number."""
    sales, lines, returns = await asyncio.gather(
        rpc.call(
            "model.sale.sale.search_read",
            [[field, "=", value], ["state", "!=", "draft"]],
            0,
            None,
            [["number", "ASC"]],
            _sale_fields(customer_field),
            ctx=ctx,
        ),
        rpc.call(
            "model.sale.line.search_read",
            [[f"sale.{field}", "=", value], ["type", "=", "line"]],
            0,
            None,
            [["sequence", "ASC"], ["id", "ASC"]],
            _LINE_FIELDS,
            ctx=ctx,
        ),
        returned_per_line(rpc, [[f"line.sale.{field}", "=", value]], ctx),
    )
    lines_by_sale: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        lines_by_sale[line["sale"]].append(line)
    return [_record(sale, lines_by_sale[sale["id"]], returns, customer_field) for sale in sales]


async def returned_per_line(
    rpc: TrytonRpc, domain: list[Any], ctx: CallContext, *, before_complaint: int | None = None
) -> dict[int, int]:
    """Quantity held by live return complaints per sale line id (``before_complaint``: older ones only)."""
    rows = await rpc.call(
        "model.sale.complaint.action-sale.line.search_read",
        [*domain, ["action.complaint.state", "not in", list(DEAD_COMPLAINT_STATES)]],
        0,
        None,
        None,
        ["line", "quantity", "line.quantity", "action.complaint"],
        ctx=ctx,
    )
    out: dict[int, int] = defaultdict(int)
    for row in rows:
        complaint = row["action."]["complaint"]
        if before_complaint is not None and complaint >= before_complaint:
            continue
        # An empty quantity on a complaint line means "the whole line".
        quantity = row["quantity"] if row["quantity"] is not None else row["line."]["quantity"]
        out[row["line"]] += int(quantity)
    return out


def _record(
    sale: dict[str, Any], lines: list[dict[str, Any]], returned: dict[int, int], customer_field: str
) -> SaleRecord:
    order_lines: list[OrderLine] = []
    line_ids: dict[str, int] = {}
    for line in lines:
        ref = str(line["sequence"] if line["sequence"] is not None else line["id"])
        line_ids[ref] = line["id"]
        unit_price = round_money(line["unit_price"] or Decimal(0))
        quantity = int(line["quantity"])
        product = line.get("product.") or {}
        order_lines.append(
            OrderLine(
                line_ref=ref,
                sku=product.get("code") or "",
                description=product.get("name") or line["description"] or "",
                quantity=quantity,
                shipped_quantity=int(sum(m["quantity"] for m in line["moves."] if m["state"] == "done")),
                invoiced_quantity=int(
                    sum(i["quantity"] for i in line["invoice_lines."] if i["invoice."]["state"] in _INVOICED)
                ),
                returned_quantity=returned.get(line["id"], 0),
                unit_price=unit_price,
                line_total=round_money(unit_price * quantity),
            )
        )
    total = sum((line.line_total for line in order_lines), Decimal("0.00"))
    paid = sum(
        (i["total_amount"] - i["amount_to_pay"] for i in sale["invoices."] if i["state"] in _INVOICED),
        Decimal(0),
    )
    status, invoice_state, payment_state = order_status(
        [(line.quantity, line.shipped_quantity, line.invoiced_quantity) for line in order_lines],
        cancelled=sale["state"] == "cancelled",
        paid=paid,
        total=total,
    )
    party = sale["party."]
    address = sale.get("shipment_address.")
    order = Order(
        order_number=sale["number"],
        external_ref=sale["reference"] or None,
        status=status,
        ordered_on=sale["sale_date"],
        currency=sale["currency."]["code"],
        total_amount=total,
        invoice_state=invoice_state,
        payment_state=payment_state,
        customer=Customer(
            reference=party[customer_field],
            name=party["name"],
            email=party.get("email") or None,
            phone=party.get("phone") or None,
            address=Address(
                street=address["street"],
                postal_code=address.get("postal_code") or "",
                city=address.get("city") or "",
                country=(address.get("country.") or {}).get("code") or "",
            )
            if address and address.get("street")
            else None,
        ),
        lines=order_lines,
        shipments=[_shipment(s) for s in sorted(sale["shipments."], key=lambda s: s["id"])],
        as_of=now(),
    )
    return SaleRecord(order=order, sale_id=sale["id"], party_id=party["id"], line_ids=line_ids)


def _shipment(shipment: dict[str, Any]) -> Shipment:
    state = _SHIPMENT_STATES.get(shipment["state"], "pending")
    return Shipment(
        shipment_number=shipment["number"] or str(shipment["id"]),
        state=state,
        shipped_on=shipment["effective_date"] if state == "shipped" else None,
        tracking_reference=shipment["reference"] or None,
        lines=[
            ShipmentLine(sku=(move.get("product.") or {}).get("code") or "", quantity=int(move["quantity"]))
            for move in sorted(shipment["outgoing_moves."], key=lambda m: m["id"])
        ],
    )
