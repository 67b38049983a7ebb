"""Field-by-field comparison of two contract answers (``gateway.routing.compare``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts.v1 import AvailabilityBatch, SkuAvailability, WarehouseStock
from gateway.routing.compare import WITHHELD, Difference, differences

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _stock(sku: str, *per: tuple[str, int], as_of: datetime = NOW) -> SkuAvailability:
    warehouses = [
        WarehouseStock(warehouse=w, on_hand=units, committed=0, available_to_promise=units) for w, units in per
    ]
    return SkuAvailability(
        sku=sku,
        unit="pcs",
        on_hand=sum(u for _, u in per),
        committed=0,
        available_to_promise=sum(u for _, u in per),
        warehouses=warehouses,
        as_of=as_of,
    )


def test_answers_alike_but_for_per_call_fields_and_order_match() -> None:
    a = AvailabilityBatch(items=[_stock("A", ("EAST", 3), ("WEST", 1))], unknown_skus=[])
    b = AvailabilityBatch(
        items=[_stock("A", ("WEST", 1), ("EAST", 3), as_of=NOW + timedelta(seconds=9))], unknown_skus=[]
    )
    assert differences(a, b) == []


def test_a_moved_figure_is_named_by_its_identities_and_both_values() -> None:
    a = AvailabilityBatch(items=[_stock("A", ("EAST", 3)), _stock("B", ("EAST", 5))], unknown_skus=[])
    b = AvailabilityBatch(items=[_stock("B", ("EAST", 4)), _stock("A", ("EAST", 3))], unknown_skus=["C"])
    assert differences(a, b) == [
        Difference(path="items[sku=B].onHand", primary=5, shadow=4),
        Difference(path="items[sku=B].availableToPromise", primary=5, shadow=4),
        Difference(path="items[sku=B].warehouses[warehouse=EAST].onHand", primary=5, shadow=4),
        Difference(path="items[sku=B].warehouses[warehouse=EAST].availableToPromise", primary=5, shadow=4),
        Difference(path="unknownSkus[0]", primary=None, shadow="C"),
    ]


def test_money_is_compared_as_a_number_and_a_missing_item_named() -> None:
    assert differences({"price": Decimal("19.9")}, {"price": Decimal("19.90")}) == []
    assert differences({"price": Decimal("19.90")}, {"price": Decimal("18.90")}) == [
        Difference(path="price", primary="19.90", shadow="18.90")
    ]
    assert differences({"price": Decimal("1")}, {"price": "1"}) == [Difference(path="price", primary="1", shadow="1")]
    a = {"items": [{"sku": "A", "q": 1}, {"sku": "B", "q": 1}]}
    b = {"items": [{"sku": "A", "q": 1}]}
    assert differences(a, b) == [Difference(path="items[sku=B]", primary="present", shadow=None)]


def test_contact_data_is_never_shown() -> None:
    a = {"customer": {"reference": "C-1", "email": "jo@example.com", "address": {"street": "Main 1"}}}
    b = {"customer": {"reference": "C-1", "email": "jo@example.org", "address": {"street": "Main 2"}}}
    assert differences(a, b) == [
        Difference(path="customer.email", primary=WITHHELD, shadow=WITHHELD),
        Difference(path="customer.address.street", primary=WITHHELD, shadow=WITHHELD),
    ]
    assert "example" not in repr(differences(a, b))


def test_at_most_limit_differences() -> None:
    assert len(differences({"a": list(range(100))}, {"a": list(range(1, 101))}, limit=7)) == 7


def test_a_whole_item_on_one_side_only_shows_no_contact_data_and_null_is_absent() -> None:
    customer = {"reference": "C-1", "name": "Ann Secret", "email": "ann@x.io", "address": {"street": "Main 1"}}
    found = differences({"customer": customer, "note": None}, {})
    assert found == [
        Difference(
            path="customer",
            primary={"reference": "C-1", "name": WITHHELD, "email": WITHHELD, "address": WITHHELD},
            shadow=None,
        )
    ]
    assert "Secret" not in repr(found)


def test_known_differences_are_left_out_by_path_whatever_the_item() -> None:
    a = {"lines": [{"sku": "A", "source": {"rule": "X"}}, {"sku": "B", "source": {"rule": "Y"}}], "total": 1}
    b = {"lines": [{"sku": "A", "source": {"rule": None}}, {"sku": "B", "source": {"rule": None}}], "total": 2}
    assert differences(a, b, ignore=["source.rule"]) == [Difference(path="total", primary=1, shadow=2)]
    assert len(differences(a, b)) == 3
