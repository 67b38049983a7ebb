"""What availability answers subtract (``gateway.intake.holds``): the holds, the warehouses
judged together as intake judges them, never a positive figure made negative."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import pytest

from contracts.v1 import SkuAvailability, WarehouseStock
from gateway.intake.holds import HeldStock, _subtract
from gateway.intake.store import HoldLedger, IntakeStore

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


class _SlowLedger:
    """The store's ``ledger`` only: answers what ``held`` says when ``release`` is set, counting reads."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], int] = {}
        self.reads = 0
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def ledger(self, skus: Sequence[str], now: float) -> HoldLedger:
        self.reads += 1
        self.asked.set()
        answer = HoldLedger(active={p: u for p, u in self.held.items() if p[0] in skus}, posted={})
        await self.release.wait()
        return answer


def _holds(store: _SlowLedger) -> HeldStock:
    return HeldStock(cast(IntakeStore, store), ttl_seconds=30)


async def test_answers_waiting_on_one_sku_share_one_store_read() -> None:
    """A burst of availability answers for a SKU whose ledger ran out reads it once, not once each."""
    store = _SlowLedger()
    holds = _holds(store)
    waiting = [asyncio.ensure_future(holds.any_held(["S"])) for _ in range(20)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one caller hangs up: the others still get the read
    store.release.set()
    answers = await asyncio.gather(*waiting, return_exceptions=True)
    assert answers[1:] == [False] * 19
    assert store.reads == 1
    assert holds.none_held("S")


async def test_a_read_answered_before_a_hold_changed_here_is_not_kept() -> None:
    """The store answered 'nothing held' just before this process accepted an order on the SKU:
    that answer serves the call that asked, but the next one reads the hold, not the old answer."""
    store = _SlowLedger()
    holds = _holds(store)
    before = asyncio.ensure_future(holds.any_held(["S"]))
    await store.asked.wait()  # the store has read the ledger; its answer is on its way
    store.held[("S", "EAST")] = 2  # accepted through this process meanwhile ...
    holds.forget("S")  # ... which says so
    store.release.set()
    assert await before is False
    assert not holds.none_held("S")
    assert await holds.any_held(["S"]) is True
    assert store.reads == 2
