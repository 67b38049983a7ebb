"""Storefront orders as Tryton sales: created once per Idempotency-Key, quoted, then confirmed, so
Tryton commits their stock (the forecast that ``get_availability`` reads drops).

The sale carries the key and the request's fingerprint in ``idempotency_key`` and
``idempotency_fingerprint``, fields of the erpgw_idempotency module (module/), which makes the key
unique in the database: of two attempts racing with one key, the second create is refused.

1. search the key first: found -> replay (same fingerprint) or ``idempotency-key-reused``; a sale
   left unfinished (draft, or a quotation when orders are confirmed) by an attempt that stopped
   is finished first when older than ``adopt_drafts_after_seconds``, else ``InProgress``;
2. check the lines (unknown or unsalable SKU, unknown warehouse) and pick the warehouse: the one
   the lines name, else the first that can ship every line, else the first (a sale has one);
3. create the draft sale with the key, filled as Tryton's client fills it (``on_change`` of the
   party and of each product: invoice address, payment term, price list, unit, taxes), at the
   request's unit prices, shipped to the request's address (an address of the party: an equal
   one reused, else created); refused for the key -> another attempt won: step 1's answer;
4. quote (the sale gets its number) and confirm.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from contracts.v1 import OrderIntakeRequest, ShippingAddress
from erp_backends.errors import InProgress, Rejected
from erp_backends.port import CallContext, IdempotencyToken, OrderOutcome
from erp_backends.rules import round_money
from erp_backends.tryton.rpc import TrytonRpc
from erp_backends.tryton.stock import TrytonStock
from erp_backends.tryton.workflow import Step, advance

__all__ = ["TrytonSales"]

_FIELDS = ["number", "state", "idempotency_fingerprint", "create_date"]
#: What the party's ``on_change`` fills that the sale keeps.
_HEADER_DEFAULTS = ("invoice_address", "payment_term", "price_list", "invoice_method", "shipment_method")
#: The workflow a sale the gateway creates goes through: (state it leaves, button, state it reaches).
_QUOTE = Step("draft", "quote", "quotation")
_CONFIRM = Step("quotation", "confirm", "confirmed")
#: Where Tryton takes a sale by itself once it is confirmed (shipments and invoices made).
_ONWARD = frozenset({"confirmed", "processing", "done"})


class TrytonSales:
    """Create sales for order intakes; ``confirm``: confirm them (else they stay quotations)."""

    def __init__(self, rpc: TrytonRpc, stock: TrytonStock, *, confirm: bool, adopt_after_seconds: float) -> None:
        self._rpc = rpc
        self._stock = stock
        self._steps = (_QUOTE, _CONFIRM) if confirm else (_QUOTE,)
        self._unfinished = frozenset(step.leaves for step in self._steps)
        self._adopt_after = adopt_after_seconds

    async def find_by_key(self, key: str, ctx: CallContext) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._rpc.call(
            "model.sale.sale.search_read", [["idempotency_key", "=", key]], 0, 1, None, _FIELDS, ctx=ctx
        )
        return rows

    async def adopt(self, sale: dict[str, Any], token: IdempotencyToken, ctx: CallContext) -> OrderOutcome:
        """Replay the sale the key made; one an interrupted attempt left unfinished is finished
        first, unless it is so young that its attempt may still be at it (``InProgress``)."""
        if sale["idempotency_fingerprint"] != token.fingerprint:
            raise Rejected(
                "idempotency-key-reused",
                f"Idempotency-Key was already used for a different request (order {sale['number'] or sale['id']})",
                field="Idempotency-Key",
            )
        if sale["state"] in self._unfinished:
            created: datetime = sale["create_date"]
            age = (datetime.now(UTC) - created).total_seconds()
            if age < self._adopt_after:
                raise InProgress(
                    "the order for this Idempotency-Key is still being created; retry shortly",
                    retry_after=min(self._adopt_after - age, 5.0),
                )
            sale = await self._submit(sale["id"], sale["state"], ctx)
        if not sale["number"]:  # cancelled in Tryton before it was ever quoted
            raise Rejected("order-cancelled", f"the sale this Idempotency-Key created ({sale['id']}) was cancelled")
        return OrderOutcome(order_number=sale["number"], replayed=True)

    async def create(
        self,
        request: OrderIntakeRequest,
        token: IdempotencyToken,
        *,
        party: int,
        guest: bool,
        warehouses: dict[str, int],
        currency: int,
        ctx: CallContext,
    ) -> OrderOutcome:
        products, country = await asyncio.gather(
            self._products(sorted({line.sku for line in request.lines}), ctx),
            self._country(request.shipping_address.country, ctx),
        )
        for index, line in enumerate(request.lines):
            product = products.get(line.sku)
            if product is None:
                raise Rejected("unknown-sku", f"SKU {line.sku!r} is unknown", field=f"lines[{index}].sku")
            if not product["salable"]:
                raise Rejected("not-salable", f"SKU {line.sku!r} is not for sale", field=f"lines[{index}].sku")
        warehouse = await self._warehouse(request, warehouses, ctx)
        header = {
            "company": self._rpc.context.get("company"),
            "party": party,
            "warehouse": warehouse,
            "currency": currency,
        }
        defaults, units_and_taxes, address = await asyncio.gather(
            self._header_defaults(header, ctx),
            self._line_defaults(request, products, header, ctx),
            self._address(party, request.shipping_address, country, ctx),
        )
        values = {
            **header,
            **defaults,
            **({"invoice_address": address} if guest or not defaults.get("invoice_address") else {}),
            "shipment_address": address,
            "reference": request.external_ref,
            "comment": _comment(request),
            "idempotency_key": token.key,
            "idempotency_fingerprint": token.fingerprint,
            "lines": [["create", _lines(request, products, units_and_taxes)]],
        }
        try:
            (sale_id,) = await self._rpc.call("model.sale.sale.create", [values], ctx=ctx)
        except Rejected:
            same_key = await self.find_by_key(token.key, ctx)  # the module refused a second sale for the key
            if same_key:
                return await self.adopt(same_key[0], token, ctx)
            raise
        sale = await self._submit(int(sale_id), "draft", ctx)
        return OrderOutcome(order_number=sale["number"], replayed=False)

    async def _submit(self, sale_id: int, state: str, ctx: CallContext) -> dict[str, Any]:
        """Take the sale through the workflow from ``state`` (another attempt may be at it too)."""
        await advance(self._rpc, "sale.sale", sale_id, state, self._steps, ctx, onward=_ONWARD)
        (sale,) = await self._rpc.call("model.sale.sale.read", [sale_id], _FIELDS, ctx=ctx)
        return dict(sale)

    async def _products(self, skus: list[str], ctx: CallContext) -> dict[str, dict[str, Any]]:
        rows = await self._rpc.call(
            "model.product.product.search_read",
            [["code", "in", skus]],
            0,
            None,
            None,
            ["code", "salable", "sale_uom"],
            ctx=ctx,
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            out.setdefault(row["code"], row)
        return out

    async def _country(self, code: str, ctx: CallContext) -> int:
        found = await self._rpc.call("model.country.country.search", [["code", "=", code]], 0, 1, None, ctx=ctx)
        if not found:
            raise Rejected("unknown-country", f"Tryton knows no country {code!r}", field="shippingAddress.country")
        return int(found[0])

    async def _warehouse(self, request: OrderIntakeRequest, warehouses: dict[str, int], ctx: CallContext) -> int:
        named: str | None = None
        for index, line in enumerate(request.lines):
            if line.warehouse is None:
                continue
            field = f"lines[{index}].warehouse"
            if line.warehouse not in warehouses:
                raise Rejected("unknown-warehouse", f"warehouse {line.warehouse!r} is unknown", field=field)
            if named is not None and line.warehouse != named:
                raise Rejected("several-warehouses", "a Tryton sale ships from one warehouse", field=field)
            named = line.warehouse
        if named is not None:
            return warehouses[named]
        wanted: dict[str, int] = defaultdict(int)
        for line in request.lines:
            wanted[line.sku] += line.quantity
        stock = await self._stock.availability(list(wanted), warehouses, ctx)
        atp = {(item.sku, w.warehouse): w.available_to_promise for item in stock.items for w in item.warehouses}
        for code, location in warehouses.items():
            if all(atp.get((sku, code), 0) >= quantity for sku, quantity in wanted.items()):
                return location
        return next(iter(warehouses.values()))

    async def _header_defaults(self, header: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        empty = dict.fromkeys(("invoice_party", "shipment_party", "shipment_address", *_HEADER_DEFAULTS))
        changes = await self._rpc.call(
            "model.sale.sale.on_change", {**empty, **header, "lines": []}, ["party"], ctx=ctx
        )
        return {key: changes[key] for key in _HEADER_DEFAULTS if changes.get(key) is not None}

    async def _line_defaults(
        self,
        request: OrderIntakeRequest,
        products: dict[str, dict[str, Any]],
        header: dict[str, Any],
        ctx: CallContext,
    ) -> dict[str, tuple[int, list[int]]]:
        """Unit and taxes per SKU, as the product's ``on_change`` sets them (one call per SKU, in parallel)."""
        parent = {f"_parent_sale.{key}": value for key, value in header.items()}
        parent.update({"_parent_sale.invoice_party": None, "_parent_sale.sale_date": None})
        skus = sorted({line.sku for line in request.lines})
        answers = await asyncio.gather(
            *(
                self._rpc.call(
                    "model.sale.line.on_change",
                    {
                        **parent,
                        "type": "line",
                        "product": products[sku]["id"],
                        "quantity": 1,
                        "unit": None,
                        "unit_price": None,
                        "taxes": [],
                        "sale": None,
                    },
                    ["product"],
                    ctx=ctx,
                )
                for sku in skus
            )
        )
        out: dict[str, tuple[int, list[int]]] = {}
        for sku, changes in zip(skus, answers, strict=True):
            # x2many changes come as {"add": [[index, {"id": ...}], ...]}
            taxes = [entry["id"] for _, entry in (changes.get("taxes") or {}).get("add", [])]
            out[sku] = (changes.get("unit") or products[sku]["sale_uom"], taxes)
        return out

    async def _address(self, party: int, address: ShippingAddress, country: int, ctx: CallContext) -> int:
        values = {
            "party": party,
            "party_name": address.name,
            "street_unstructured": address.street,
            "postal_code": address.postal_code,
            "city": address.city,
            "country": country,
        }
        found = await self._rpc.call(
            "model.party.address.search", [[key, "=", value] for key, value in values.items()], 0, 1, None, ctx=ctx
        )
        if found:
            return int(found[0])
        (created,) = await self._rpc.call("model.party.address.create", [values], ctx=ctx)
        return int(created)


def _lines(
    request: OrderIntakeRequest, products: dict[str, dict[str, Any]], defaults: dict[str, tuple[int, list[int]]]
) -> list[dict[str, Any]]:
    lines = []
    for index, line in enumerate(request.lines):
        unit, taxes = defaults[line.sku]
        values: dict[str, Any] = {
            "type": "line",
            "sequence": index + 1,  # the line_ref the order answers with
            "product": products[line.sku]["id"],
            "quantity": line.quantity,
            "unit": unit,
            "unit_price": round_money(line.unit_price),
        }
        if taxes:
            values["taxes"] = [["add", taxes]]
        lines.append(values)
    return lines


def _comment(request: OrderIntakeRequest) -> str:
    """What Tryton has no field for: who to reach about the order, and its payment."""
    contact = request.contact
    who = ", ".join(part for part in (contact.name, contact.email, contact.phone) if part)
    lines = [f"Storefront order {request.external_ref}", f"Contact: {who}"]
    if request.payment_reference:
        lines.append(f"Payment: {request.payment_reference}")
    return "\n".join(lines)
