"""JSON-RPC calls per availability lookup of the Tryton adapter, against a scripted Tryton (httpx.MockTransport).

A single SKU across two warehouses must cost one stock call, not one per warehouse (the
harness's trytond answers calls one after the other: two calls take twice as long).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec

from erp_backends.port import CallContext
from erp_backends.tryton import TrytonBackend, TrytonSettings
from erp_backends.tryton.stock import ProductIds

CTX = CallContext(correlation_id="stock-calls")
SETTINGS = TrytonSettings(url="http://tryton.test", database="db", user="gw", password="pw")
WAREHOUSES = {5: "EAST", 12: "WEST"}
#: product id -> (code, unit, {warehouse id: (quantity, forecast_quantity)})
PRODUCTS: dict[int, tuple[str, str, dict[int, tuple[float, float]]]] = {
    8: ("TEE-NVY-M", "Unit", {5: (40.0, 34.0), 12: (7.0, 7.0)}),
    9: ("LAMP-WHT", "Piece", {5: (3.0, -1.0), 12: (0.0, 2.0)}),
}
#: Calls made once per worker, whatever is asked afterwards.
REFERENCE = {
    "common.db.login",
    "model.res.user.get_preferences",
    "model.stock.location.search",
    "model.stock.location.search_read",
    "model.company.company.read",
    "model.sale.complaint.type.search_read",
}


class FakeTryton:
    """Answers the reference reads and both stock reads the way Tryton 8.2 does."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        method, params = body["method"], body["params"]
        self.methods.append(method)
        return httpx.Response(200, json={"id": body["id"], "result": self._answer(method, params)})

    def _answer(self, method: str, params: list[Any]) -> Any:
        context = params[-1]
        if method == "common.db.login":
            return [7, "token", None]
        if method == "model.res.user.get_preferences":
            return {"company": 1, "companies": [1]}
        if method == "model.stock.location.search":
            return [5]
        if method == "model.stock.location.search_read":
            return [{"id": wh, "code": code} for wh, code in WAREHOUSES.items()]
        if method == "model.company.company.read":
            return [{"id": 1, "currency": 2, "currency.": {"id": 2, "code": "EUR"}}]
        if method == "model.sale.complaint.type.search_read":
            return []
        if method == "model.product.product.search_read":
            ((_, operator, value),) = params[0]
            codes = value if operator == "in" else [value]
            rows = []
            for pid, (code, unit, stock) in PRODUCTS.items():
                if code not in codes:
                    continue
                row: dict[str, Any] = {"id": pid, "code": code, "default_uom.": {"id": 1, "name": unit}}
                if "quantity" in params[4]:
                    # Tryton sums the locations of the context.
                    locations = context["locations"]
                    row["quantity"] = sum(stock[loc][0] for loc in locations)
                    row["forecast_quantity"] = sum(stock[loc][1] for loc in locations)
                rows.append(row)
            return rows
        if method == "model.stock.location.read":
            stock = PRODUCTS[context["product"]][2]
            return [{"id": loc, "quantity": stock[loc][0], "forecast_quantity": stock[loc][1]} for loc in params[0]]
        raise AssertionError(f"unexpected call {method}")

    def since(self, mark: int) -> list[str]:
        return self.methods[mark:]


def _backend(fake: FakeTryton) -> TrytonBackend:
    return TrytonBackend(SETTINGS, httpx.AsyncClient(transport=httpx.MockTransport(fake)), close_client=True)


def _stock_calls(methods: list[str]) -> list[str]:
    return [m for m in methods if m == "model.stock.location.read" or m == "model.product.product.search_read"]


async def test_a_single_sku_across_two_warehouses_is_one_stock_call() -> None:
    fake = FakeTryton()
    backend = _backend(fake)
    await backend.get_availability(["LAMP-WHT"], ["EAST"], CTX)  # reference data and login, once
    mark = len(fake.methods)

    first = await backend.get_availability(["TEE-NVY-M"], None, CTX)
    first_calls = [m for m in fake.since(mark) if m not in REFERENCE]
    mark = len(fake.methods)
    again = await backend.get_availability(["TEE-NVY-M"], None, CTX)
    again_calls = fake.since(mark)
    await backend.aclose()

    # First time: the product's id is looked up (no stock read), then one read for both warehouses.
    assert first_calls == ["model.product.product.search_read", "model.stock.location.read"]
    assert again_calls == ["model.stock.location.read"]
    (item,) = again.items
    assert msgspec.structs.replace(first.items[0], as_of=item.as_of) == item
    assert item.unit == "unit"
    assert [(w.warehouse, w.on_hand, w.committed, w.available_to_promise) for w in item.warehouses] == [
        ("EAST", 40, 6, 34),
        ("WEST", 7, 0, 7),
    ]
    assert (item.on_hand, item.committed, item.available_to_promise) == (47, 6, 41)


async def test_a_sku_seen_in_a_batch_is_then_one_call() -> None:
    fake = FakeTryton()
    backend = _backend(fake)
    batch = await backend.get_availability(["TEE-NVY-M", "LAMP-WHT", "NOPE"], None, CTX)
    assert batch.unknown_skus == ["NOPE"]
    assert _stock_calls([m for m in fake.methods if m not in REFERENCE]) == ["model.product.product.search_read"] * 2
    mark = len(fake.methods)
    (lamp,) = (await backend.get_availability(["LAMP-WHT"], None, CTX)).items
    assert fake.since(mark) == ["model.stock.location.read"]
    await backend.aclose()
    # Both paths answer alike (as_of aside).
    assert msgspec.structs.replace(batch.items[1], as_of=lamp.as_of) == lamp
    assert (lamp.unit, lamp.on_hand, lamp.committed, lamp.available_to_promise) == ("piece", 3, 2, 1)


async def test_an_unknown_single_sku_is_one_call_and_not_remembered() -> None:
    fake = FakeTryton()
    backend = _backend(fake)
    await backend.get_availability(["LAMP-WHT"], ["EAST"], CTX)
    for _ in range(2):
        mark = len(fake.methods)
        batch = await backend.get_availability(["NOPE", "NOPE"], None, CTX)
        assert (batch.items, batch.unknown_skus) == ([], ["NOPE"])
        assert fake.since(mark) == ["model.product.product.search_read"]
    await backend.aclose()


def test_product_ids_are_bounded_and_expire() -> None:
    clock = [0.0]
    ids = ProductIds(max_entries=2, ttl=10.0, clock=lambda: clock[0])
    ids.put("A", 1, "unit")
    ids.put("B", 2, "unit")
    assert ids.get("A") == (1, "unit")  # A is now the most recently used
    ids.put("C", 3, "kg")
    assert (ids.get("B"), ids.get("A"), ids.get("C"), len(ids)) == (None, (1, "unit"), (3, "kg"), 2)
    clock[0] = 10.0
    assert (ids.get("A"), len(ids)) == (None, 1)
