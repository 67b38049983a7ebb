"""What availability answers subtract (``gateway.intake.holds``): the holds, the warehouses
judged together as intake judges them, never a positive figure made negative."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.v1 import SkuAvailability, WarehouseStock
from gateway.intake.holds import _subtract
from gateway.intake.store import HoldLedger

AS_OF = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
READ_AT = AS_OF.timestamp()


def _item(**atp: int) -> SkuAvailability:
    stock = [
        WarehouseStock(warehouse=w, on_hand=max(a, 0), committed=0, available_to_promise=a) for w, a in atp.items()
    ]
    return SkuAvailability(
        sku="S",
        unit="unit",
        on_hand=sum(w.on_hand for w in stock),
        committed=0,
        available_to_promise=sum(atp.values()),
        warehouses=stock,
        as_of=AS_OF,
    )


def _held(**units: int) -> HoldLedger:
    return HoldLedger(active={("S", w): u for w, u in units.items()}, posted={})


def _figures(item: SkuAvailability) -> tuple[int, dict[str, int]]:
    return item.available_to_promise, {w.warehouse: w.available_to_promise for w in item.warehouses}


@pytest.mark.parametrize(
    ("stock", "held", "shown"),
    [
        ({"EAST": 5, "WEST": 3}, {"EAST": 2}, (6, {"EAST": 3, "WEST": 3})),
        # more held in EAST than it has: the rest comes off WEST
        ({"EAST": 2, "WEST": 3}, {"EAST": 4}, (1, {"EAST": 0, "WEST": 1})),
        # another channel sold WEST below zero after a hold there: EAST pays for it, as intake judges
        ({"EAST": 4, "WEST": -1}, {"WEST": 2}, (1, {"EAST": 2, "WEST": -1})),
        # all of EAST held while WEST is at -1: nothing left to promise, not -1
        ({"EAST": 4, "WEST": -1}, {"EAST": 4}, (0, {"EAST": 0, "WEST": -1})),
        # the ERP's own backorder stays as the ERP shows it
        ({"EAST": 0, "WEST": -2}, {"EAST": 1}, (-2, {"EAST": 0, "WEST": -2})),
        ({"EAST": 3}, {}, (3, {"EAST": 3})),
    ],
)
def test_holds_come_off_the_warehouses_together(
    stock: dict[str, int], held: dict[str, int], shown: tuple[int, dict[str, int]]
) -> None:
    assert _figures(_subtract(_item(**stock), _held(**held), READ_AT)) == shown


def test_a_posted_hold_counts_only_for_stock_read_before_the_post() -> None:
    ledger = HoldLedger(active={}, posted={("S", "EAST"): ((READ_AT, 2),)})
    assert _figures(_subtract(_item(EAST=5), ledger, READ_AT - 1))[0] == 3
    assert _figures(_subtract(_item(EAST=5), ledger, READ_AT + 1))[0] == 5
