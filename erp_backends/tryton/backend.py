"""``TrytonBackend``: the ERP port over Tryton 8.2 JSON-RPC (recipes in docs/tryton.md).

ERP calls per operation (warm: session and reference data cached after the first call):

- availability (stock.py): one SKU across warehouses is one ``stock.location.read`` with
  context ``product`` (plus a code lookup the first time its id is needed); a batch is one
  ``product.product.search_read`` per warehouse, in parallel, whatever the number of SKUs;
- prices: one party read (when a customer is named) + one product read per distinct quantity
  in the cart, in parallel (Tryton prices one quantity per call: it is a context key);
- validation: the same, each product read also carrying the stock of the warehouses asked for;
- order lookup (by number or storefront reference): three calls in parallel (orders.py);
- return: see returns.py (about ten calls; returns are rare and written once);
- order intake: see sales.py (about ten calls, most in parallel; posted in the background).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx

from contracts.v1 import (
    AvailabilityBatch,
    Order,
    OrderIntakeRequest,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckRequest,
    PriceLine,
    PriceSource,
    ReturnAuthorization,
    ReturnRequest,
)
from erp_backends.errors import ErpUnavailable, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, OrderOutcome, ReturnOutcome
from erp_backends.rules import SkuFacts, judge_cart, now, price_check, price_line, round_money
from erp_backends.tryton.orders import SaleRecord, read_sales
from erp_backends.tryton.returns import ComplaintReturns
from erp_backends.tryton.rpc import TrytonRpc, TrytonSession
from erp_backends.tryton.sales import TrytonSales
from erp_backends.tryton.settings import TrytonSettings
from erp_backends.tryton.stock import TrytonStock

__all__ = ["TrytonBackend"]


class _Reference:
    """Reference data read once per worker: it changes on a configuration day, not per request."""

    def __init__(self, warehouses: dict[str, int], currency: str, currency_id: int, complaint_type: int | None) -> None:
        self.warehouses = warehouses  # contract code -> stock.location id
        self.currency = currency
        self.currency_id = currency_id
        self.complaint_type = complaint_type


class _Party:
    def __init__(self, party_id: int, price_list_id: int | None, price_list: str | None) -> None:
        self.id = party_id
        self.price_list_id = price_list_id
        self.price_list = price_list


class TrytonBackend(ErpBackend):
    """``ErpBackend`` talking to a Tryton server with the ``httpx.AsyncClient`` it is given.

    ``close_client``: close the client in ``aclose`` (the composition root hands over one it
    built for this backend alone). ``session``: a login to share with other backends of the
    process (default: this backend logs in by itself, once). ``name``: given by the composition
    root (labels, breakers, cache keys); ``tryton`` unless several Tryton backends are configured.
    """

    def __init__(
        self,
        settings: TrytonSettings,
        client: httpx.AsyncClient,
        *,
        close_client: bool = False,
        session: TrytonSession | None = None,
        name: str = "tryton",
    ) -> None:
        self.name = name
        self._settings = settings
        self._client = client
        self._close_client = close_client
        self._rpc = TrytonRpc(settings, client, settings.resolve_password(), session)
        self._returns = ComplaintReturns(
            self._rpc, approve=settings.approve_returns, adopt_after_seconds=settings.adopt_drafts_after_seconds
        )
        self._stock = TrytonStock(self._rpc)
        self._sales = TrytonSales(
            self._rpc,
            self._stock,
            confirm=settings.confirm_orders,
            adopt_after_seconds=settings.adopt_drafts_after_seconds,
        )
        self._reference: _Reference | None = None
        self._guest: int | None = None
        self._reference_lock = asyncio.Lock()

    async def start(self, ctx: CallContext) -> None:
        # The login (~0.5 s of password hashing in Tryton) and the reference data, before any
        # request's timeout runs: a healthy but slow-to-log-in ERP must never fail a read.
        await self._ref(ctx)

    async def check_ready(self) -> None:
        # The cheapest call that proves the session works, not just that the port is open.
        await self._rpc.call("model.stock.location.search", [["type", "=", "warehouse"]], 0, 1, None)

    async def aclose(self) -> None:
        if self._close_client:
            await self._client.aclose()

    # -- reference data ---------------------------------------------------------------------

    async def _ref(self, ctx: CallContext) -> _Reference:
        if self._reference is not None:
            return self._reference
        async with self._reference_lock:
            if self._reference is None:
                self._reference = await self._read_reference(ctx)
        return self._reference

    async def _read_reference(self, ctx: CallContext) -> _Reference:
        company_id = self._rpc.context.get("company") or (await self._login_context(ctx)).get("company")
        locations, companies, types = await asyncio.gather(
            self._rpc.call(
                "model.stock.location.search_read", [["type", "=", "warehouse"]], 0, None, None, ["code"], ctx=ctx
            ),
            self._rpc.call("model.company.company.read", [company_id], ["currency", "currency.code"], ctx=ctx),
            self._rpc.call(
                "model.sale.complaint.type.search_read",
                [["name", "=", self._settings.complaint_type]],
                0,
                1,
                None,
                ["name"],
                ctx=ctx,
            ),
        )
        by_code = {row["code"]: row["id"] for row in locations if row["code"]}
        mapping = self._settings.warehouses or {code: code for code in by_code}
        warehouses = {contract: by_code[tryton] for contract, tryton in mapping.items() if tryton in by_code}
        if not warehouses:
            raise ErpUnavailable("Tryton has no warehouse matching the configured warehouse codes")
        (company,) = companies
        return _Reference(
            warehouses=dict(sorted(warehouses.items())),
            currency=company["currency."]["code"],
            currency_id=company["currency"],
            complaint_type=types[0]["id"] if types else None,
        )

    async def _login_context(self, ctx: CallContext) -> dict[str, Any]:
        await self.check_ready()  # logs in, which fills the context
        return self._rpc.context

    async def _locations(self, wanted: Sequence[str] | None, ctx: CallContext) -> dict[str, int]:
        known = (await self._ref(ctx)).warehouses
        if wanted is None:
            return known
        for code in wanted:
            if code not in known:
                raise Rejected("unknown-warehouse", f"warehouse {code!r} is unknown", field="warehouse")
        return {code: known[code] for code in dict.fromkeys(wanted)}

    async def _currency(self, currency: str, ctx: CallContext) -> _Reference:
        ref = await self._ref(ctx)
        if currency != ref.currency:
            raise Rejected(
                "unsupported-currency", f"prices are kept in {ref.currency}, not {currency}", field="currency"
            )
        return ref

    async def _party(self, customer: str | None, ctx: CallContext) -> _Party | None:
        if customer is None:
            return None
        rows = await self._rpc.call(
            "model.party.party.search_read",
            [[self._settings.customer_field, "=", customer]],
            0,
            1,
            None,
            ["sale_price_list", "sale_price_list.name"],
            ctx=ctx,
        )
        if not rows:
            raise Rejected("unknown-customer", f"customer {customer!r} is unknown", field="customer")
        row = rows[0]
        price_list = row.get("sale_price_list.") or {}
        return _Party(row["id"], row["sale_price_list"], price_list.get("name"))

    async def _products(
        self,
        skus: Sequence[str],
        fields: list[str],
        ctx: CallContext,
        context: dict[str, Any],
    ) -> dict[str, dict[str, Any]]:
        rows = await self._rpc.call(
            "model.product.product.search_read",
            [["code", "in", list(skus)]],
            0,
            None,
            None,
            fields,
            ctx=ctx,
            context=context,
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            out.setdefault(row["code"], row)
        return out

    def _pricing_context(self, ref: _Reference, party: _Party | None, quantity: int) -> dict[str, Any]:
        # price_list must be named: Tryton does not apply the customer's list from `customer` alone.
        context: dict[str, Any] = {"currency": ref.currency_id, "quantity": quantity}
        if party is not None:
            context["customer"] = party.id
            if party.price_list_id is not None:
                context["price_list"] = party.price_list_id
        return context

    async def _priced(
        self,
        skus_by_quantity: dict[int, list[str]],
        ref: _Reference,
        party: _Party | None,
        fields: list[str],
        ctx: CallContext,
        extra: dict[str, Any] | None = None,
    ) -> dict[int, dict[str, dict[str, Any]]]:
        """Product rows per quantity: one call per distinct quantity, in parallel."""
        quantities = list(skus_by_quantity)
        answers = await asyncio.gather(
            *(
                self._products(
                    sorted(set(skus_by_quantity[q])),
                    fields,
                    ctx,
                    {**self._pricing_context(ref, party, q), **(extra or {})},
                )
                for q in quantities
            )
        )
        return dict(zip(quantities, answers, strict=True))

    # -- availability -----------------------------------------------------------------------

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self._stock.availability(skus, await self._locations(warehouses, ctx), ctx)

    # -- prices -----------------------------------------------------------------------------

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        ref = await self._currency(request.currency, ctx)
        party = await self._party(request.customer, ctx)
        with_list = party is not None and party.price_list_id is not None
        by_quantity: dict[int, list[str]] = defaultdict(list)
        for line in request.lines:
            # Without a price list the price does not depend on the quantity: one call for all.
            by_quantity[line.quantity if with_list else 1].append(line.sku)
        rows = await self._priced(by_quantity, ref, party, ["code", "list_price_used", "sale_price_uom"], ctx)
        as_of = now()
        lines: list[PriceLine] = []
        for index, line in enumerate(request.lines):
            row = rows[line.quantity if with_list else 1].get(line.sku)
            if row is None:
                raise Rejected("unknown-sku", f"SKU {line.sku!r} is unknown", field=f"lines[{index}].sku")
            list_price = round_money(row["list_price_used"] or Decimal(0))
            unit = round_money(row["sale_price_uom"] if row["sale_price_uom"] is not None else list_price)
            # Tryton does not say which price-list line matched: `rule` stays None (see README).
            source = (
                PriceSource(kind="price_list", price_list=party.price_list, rule=None)
                if party is not None and with_list and unit != list_price
                else PriceSource(kind="list_price", price_list=None, rule=None)
            )
            lines.append(price_line(line.sku, line.quantity, unit, list_price, source, as_of))
        return price_check(request.customer, ref.currency, lines, as_of)

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        ref = await self._currency(request.currency, ctx)
        party, locations = await asyncio.gather(
            self._party(request.customer, ctx),
            self._locations([request.warehouse] if request.warehouse else None, ctx),
        )
        by_quantity: dict[int, list[str]] = defaultdict(list)
        for line in request.lines:
            by_quantity[line.quantity].append(line.sku)
        rows = await self._priced(
            by_quantity,
            ref,
            party,
            ["code", "salable", "forecast_quantity", "list_price_used", "sale_price_uom"],
            ctx,
            # `locations` with several warehouses sums them: stock comes with the prices.
            extra={"locations": list(locations.values())},
        )
        facts: dict[int, SkuFacts | None] = {}
        for index, line in enumerate(request.lines):
            row = rows[line.quantity].get(line.sku)
            if row is None:
                facts[index] = None
                continue
            price = row["sale_price_uom"] if row["sale_price_uom"] is not None else row["list_price_used"]
            facts[index] = SkuFacts(
                salable=bool(row["salable"]),
                available=int(row["forecast_quantity"]),
                unit_price=round_money(price or Decimal(0)),
            )
        return judge_cart(request, facts)

    # -- orders -----------------------------------------------------------------------------

    async def _sale(self, order_number: str, ctx: CallContext) -> SaleRecord:
        found = await read_sales(self._rpc, "number", order_number, self._settings.customer_field, ctx)
        if not found:
            raise NotFound("order", order_number)
        return found[0]

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        return (await self._sale(order_number, ctx)).order

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        found = await read_sales(self._rpc, "reference", external_ref, self._settings.customer_field, ctx)
        return OrderList(items=[record.order for record in found])

    # -- returns ----------------------------------------------------------------------------

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        existing, ref = await asyncio.gather(self._returns.find_by_key(idempotency.key, ctx), self._ref(ctx))
        if existing:  # a lost answer, or an attempt cut short after it created the complaint
            return await self._returns.adopt(existing[0], idempotency, ctx)
        if ref.complaint_type is None:
            raise ErpUnavailable(f"Tryton has no complaint type named {self._settings.complaint_type!r}")
        sale = await self._sale(request.order_number, ctx)
        return await self._returns.create(request, idempotency, sale, ref.complaint_type, ctx)

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self._returns.get(rma_number, ctx)

    # -- order intake -----------------------------------------------------------------------

    async def _guest_party(self, ctx: CallContext) -> int:
        """The party guest orders are sold to (``guest_party``), looked up on the first guest order."""
        if self._guest is None:
            found = await self._rpc.call(
                "model.party.party.search",
                [[self._settings.customer_field, "=", self._settings.guest_party]],
                0,
                1,
                None,
                ctx=ctx,
            )
            if not found:  # a configuration problem, not the order's: worth retrying once fixed
                raise ErpUnavailable(f"Tryton has no guest party {self._settings.guest_party!r} for guest orders")
            self._guest = int(found[0])
        return self._guest

    async def create_order(
        self, request: OrderIntakeRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> OrderOutcome:
        existing, ref = await asyncio.gather(self._sales.find_by_key(idempotency.key, ctx), self._ref(ctx))
        if existing:  # a lost answer, or an attempt cut short after it created the sale
            return await self._sales.adopt(existing[0], idempotency, ctx)
        await self._currency(request.currency, ctx)
        customer = await self._party(request.customer, ctx)  # unknown-customer
        return await self._sales.create(
            request,
            idempotency,
            party=customer.id if customer is not None else await self._guest_party(ctx),
            guest=customer is None,
            warehouses=ref.warehouses,
            currency=ref.currency_id,
            ctx=ctx,
        )
