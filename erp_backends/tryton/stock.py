"""Stock per warehouse from Tryton 8.2 in as few JSON-RPC calls as the question allows.

Tryton offers two remotely callable reads of the same numbers (``quantity`` = on hand up to
today, ``forecast_quantity`` = with planned moves), both plain ``read``/``search_read`` of
function fields, callable through ``ModelStorage.__rpc__`` (trytond/model/modelstorage.py):

- ``product.product`` with context ``locations=[warehouse]``: many products, but the context
  *sums* the locations it names, so one call per warehouse (StockMixin._get_quantity,
  trytond/modules/stock/move.py);
- ``stock.location.read(warehouses)`` with context ``product=<id>``: every warehouse in one
  call (one stock query covering them all), but one product only (Location.get_quantity and
  _get_quantity_grouping, trytond/modules/stock/location.py); it needs the product's id.

A single SKU across several warehouses takes the second path: one call once its id is known
(``ProductIds``, a bounded per-adapter map filled by every stock read), one code lookup more
the first time. A batch, or a single warehouse, takes the first: one call per warehouse
whatever the number of SKUs. Both answer the same figures (tests/backends/test_tryton_stock_calls.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from contracts.v1 import AvailabilityBatch, SkuAvailability, WarehouseStock
from erp_backends.port import CallContext
from erp_backends.rules import now
from erp_backends.tryton.rpc import TrytonRpc

__all__ = ["ProductIds", "TrytonStock"]

_PRODUCT_FIELDS = ["code", "quantity", "forecast_quantity", "default_uom.name"]
_LOCATION_FIELDS = ["quantity", "forecast_quantity"]


class _Product:
    __slots__ = ("id", "unit", "until")

    def __init__(self, product_id: int, unit: str, until: float) -> None:
        self.id = product_id
        self.unit = unit
        self.until = until


class ProductIds:
    """SKU -> (Tryton product id, unit), least recently used out first, each entry for ``ttl`` s.

    The ids let a single-SKU lookup read every warehouse in one call. They change only when
    someone re-codes or deactivates a product, so an entry is trusted for ``ttl`` seconds and
    then looked up again; unknown SKUs are never remembered (a product may be created later).
    """

    def __init__(
        self, max_entries: int = 10_000, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, _Product] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sku: str) -> tuple[int, str] | None:
        entry = self._entries.get(sku)
        if entry is None:
            return None
        if entry.until <= self._clock():
            del self._entries[sku]
            return None
        self._entries.move_to_end(sku)
        return entry.id, entry.unit

    def put(self, sku: str, product_id: int, unit: str) -> None:
        self._entries[sku] = _Product(product_id, unit, self._clock() + self._ttl)
        self._entries.move_to_end(sku)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


def _unit(row: dict[str, Any]) -> str:
    return str((row.get("default_uom.") or {}).get("name") or "unit").lower()


def _item(sku: str, unit: str, figures: list[tuple[str, Any, Any]], as_of: Any) -> SkuAvailability:
    stock = []
    for code, quantity, forecast_quantity in figures:
        on_hand, forecast = int(quantity), int(forecast_quantity)
        # forecast = on hand - what open orders still have to ship (+ planned receipts).
        stock.append(
            WarehouseStock(warehouse=code, on_hand=on_hand, committed=on_hand - forecast, available_to_promise=forecast)
        )
    return SkuAvailability(
        sku=sku,
        unit=unit,
        on_hand=sum(w.on_hand for w in stock),
        committed=sum(w.committed for w in stock),
        available_to_promise=sum(w.available_to_promise for w in stock),
        warehouses=stock,
        as_of=as_of,
    )


class TrytonStock:
    """Availability of SKUs in warehouses (contract code -> ``stock.location`` id, in answer order)."""

    def __init__(self, rpc: TrytonRpc, products: ProductIds | None = None) -> None:
        self._rpc = rpc
        self.products = products if products is not None else ProductIds()

    async def availability(self, skus: Sequence[str], locations: dict[str, int], ctx: CallContext) -> AvailabilityBatch:
        unique = list(dict.fromkeys(skus))
        if len(unique) == 1 and len(locations) > 1:
            items = await self._one_product(unique[0], locations, ctx)
        else:
            items = await self._per_warehouse(unique, locations, ctx)
        known = {item.sku for item in items}
        return AvailabilityBatch(items=items, unknown_skus=[sku for sku in unique if sku not in known])

    async def _one_product(self, sku: str, locations: dict[str, int], ctx: CallContext) -> list[SkuAvailability]:
        """Every warehouse in one ``stock.location.read`` (plus a code lookup the first time)."""
        product = self.products.get(sku)
        if product is None:
            rows = await self._rpc.call(
                "model.product.product.search_read",
                [["code", "=", sku]],
                0,
                1,
                None,
                ["code", "default_uom.name"],
                ctx=ctx,
            )
            if not rows:
                return []
            product = rows[0]["id"], _unit(rows[0])
            self.products.put(sku, *product)
        product_id, unit = product
        rows = await self._rpc.call(
            "model.stock.location.read",
            list(locations.values()),
            _LOCATION_FIELDS,
            ctx=ctx,
            context={"product": product_id},
        )
        by_id = {row["id"]: row for row in rows}
        figures = [
            (code, by_id[loc]["quantity"], by_id[loc]["forecast_quantity"])
            for code, loc in locations.items()
            if loc in by_id
        ]
        if len(figures) != len(locations):
            return []
        return [_item(sku, unit, figures, now())]

    async def _per_warehouse(
        self, skus: list[str], locations: dict[str, int], ctx: CallContext
    ) -> list[SkuAvailability]:
        """One ``product.product.search_read`` per warehouse, in parallel, whatever the number of SKUs."""
        per_wh = await asyncio.gather(*(self._products(skus, loc, ctx) for loc in locations.values()))
        as_of = now()
        items: list[SkuAvailability] = []
        for sku in skus:
            rows = [answer[sku] for answer in per_wh if sku in answer]
            if len(rows) != len(locations) or not rows:
                continue
            self.products.put(sku, rows[0]["id"], _unit(rows[0]))
            figures = [
                (code, row["quantity"], row["forecast_quantity"]) for code, row in zip(locations, rows, strict=True)
            ]
            items.append(_item(sku, _unit(rows[0]), figures, as_of))
        return items

    async def _products(self, skus: list[str], location: int, ctx: CallContext) -> dict[str, dict[str, Any]]:
        rows = await self._rpc.call(
            "model.product.product.search_read",
            [["code", "in", skus]],
            0,
            None,
            None,
            _PRODUCT_FIELDS,
            ctx=ctx,
            context={"locations": [location]},
        )
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            out.setdefault(row["code"], row)
        return out
