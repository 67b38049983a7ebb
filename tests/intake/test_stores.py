"""One suite for every ``IntakeStore`` adapter (``gateway.intake.store``): SQLite and Redis on
each deployment mode (``conftest.make_store``). Accepting holds stock per SKU and warehouse or
nothing, the queue hands each intake to one worker at a time, and every step sent twice
answers as it did the first time without applying twice.

Time is the caller's: every step gets its ``now`` from the test, nothing sleeps. Workers are
store objects (one per Redis connection, or on one SQLite file); one test races SQLite's from
separate processes, as a host's gunicorn workers are.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Literal

import msgspec
import pytest

from contracts.v1.intake import INTAKE_ID_PATTERN, Contact, IntakeLine, OrderIntakeRequest, ShippingAddress
from gateway.intake.store import (
    Accepted,
    AlreadySubmitted,
    Claimed,
    Hold,
    HoldLedger,
    IntakeRecord,
    IntakeStore,
    IntakeStoreUnavailable,
    KeyReused,
    LineNeed,
    Replayed,
    Short,
    ShortLine,
    Stale,
)
from tests.intake.conftest import POSTED_HOLD_SECONDS, RETENTION_SECONDS, MakeStore

#: The tests' clock: near the real one, so a store that also sets Redis expiries from ``now``
#: keeps its keys for the test; every step is at an offset from it.
T0 = float(int(time.time()))
LEASE = 30.0
SKU = "TEE-NVY-M"
OTHER_SKU = "MUG-WHT"
EAST, WEST = "EAST", "WEST"

_ID_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_intake_id() -> str:
    intake_id = "in_" + "".join(secrets.choice(_ID_CHARACTERS) for _ in range(26))
    assert re.fullmatch(INTAKE_ID_PATTERN, intake_id)
    return intake_id


def need(quantity: int, *stock: tuple[str, int], sku: str = SKU, line: int = 1, snapshot_at: float = T0) -> LineNeed:
    """One order line: ``quantity`` of ``sku``, the ERP's stock per candidate warehouse in order."""
    return LineNeed(line=line, sku=sku, quantity=quantity, stock=stock or ((EAST, 100),), snapshot_at=snapshot_at)


def draft(
    needs: Sequence[LineNeed],
    *,
    key: str | None = None,
    ref: str | None = None,
    fingerprint: str = "fp-1",
    at: float = T0,
    ref_key: str = "",
) -> IntakeRecord:
    """An intake as the service hands it to ``accept``: a new id, no holds yet."""
    ref = ref or f"WC-{uuid.uuid4().hex[:12]}"
    request = OrderIntakeRequest(
        external_ref=ref,
        currency="EUR",
        lines=[IntakeLine(sku=n.sku, quantity=n.quantity, unit_price=Decimal("19.90")) for n in needs],
        shipping_address=ShippingAddress(
            name="Ada Lovelace", street="1 Main St", postal_code="10115", city="Berlin", country="DE"
        ),
        contact=Contact(name="Ada Lovelace", email="ada@example.org"),
    )
    return IntakeRecord(
        intake_id=new_intake_id(),
        external_ref=ref,
        key=key or f"shop-client/{uuid.uuid4()}",
        fingerprint=fingerprint,
        request=msgspec.json.encode(request),
        holds=(),
        status="accepted",
        accepted_at=at,
        ref_key=ref_key,
    )


async def accept(store: IntakeStore, *needs: LineNeed, at: float = T0) -> IntakeRecord:
    """A new intake of ``needs`` (default: one unit of ``SKU``, plenty in stock), accepted at ``at``."""
    lines = needs or (need(1),)
    outcome = await store.accept(draft(lines, at=at), lines, at)
    assert isinstance(outcome, Accepted), outcome
    return outcome.record


async def claim(store: IntakeStore, now: float) -> Claimed:
    claimed = await store.claim(now, LEASE, token())
    assert claimed is not None, f"nothing claimed at T0+{now - T0}"
    return claimed


def token() -> str:
    return uuid.uuid4().hex


def units(holds: Sequence[Hold]) -> dict[tuple[str, str], int]:
    """Held units per (sku, warehouse), however the store splits them into ``Hold`` entries."""
    totals: Counter[tuple[str, str]] = Counter()
    for hold in holds:
        totals[(hold.sku, hold.warehouse)] += hold.quantity
    return dict(totals)


async def active(store: IntakeStore, sku: str = SKU, warehouse: str = EAST) -> int:
    """Units of ``sku`` actively held in ``warehouse``, as the ledger says."""
    return (await store.ledger([sku], T0)).active.get((sku, warehouse), 0)


def refused_status(refused: pytest.ExceptionInfo[Stale]) -> str | None:
    """The status a ``Stale`` names (the service tells the operator: "intake ... is posting")."""
    return refused.value.record.status if refused.value.record is not None else None


def short_lines(outcome: object) -> list[ShortLine]:
    assert isinstance(outcome, Short), outcome
    return sorted(outcome.lines, key=lambda line: line.line)


# accept: the record, its key and its reference


async def test_an_accepted_intake_is_stored_with_its_holds_and_found_by_key_and_reference(store: IntakeStore) -> None:
    lines = (need(3, (EAST, 10)),)
    submitted = draft(lines)
    outcome = await store.accept(submitted, lines, T0)

    assert isinstance(outcome, Accepted), outcome
    record = outcome.record
    assert (record.intake_id, record.key, record.fingerprint) == (submitted.intake_id, submitted.key, "fp-1")
    assert (record.external_ref, record.request) == (submitted.external_ref, submitted.request)
    assert (record.status, record.attempts, record.accepted_at) == ("accepted", 0, T0)
    assert (record.order_number, record.posted_at, record.last_error) == (None, None, None)
    assert units(record.holds) == {(SKU, EAST): 3}
    assert [(entry.status, entry.at) for entry in record.history] == [("accepted", T0)]

    assert await store.get(record.intake_id) == record
    assert await store.find(key=submitted.key) == record
    assert await store.find(reference=submitted.reference) == record
    assert await active(store) == 3
    assert await store.next_due() == T0


async def test_unknown_intakes_keys_and_references_are_none(store: IntakeStore) -> None:
    await accept(store)
    assert await store.get(new_intake_id()) is None
    assert await store.find(key="shop-client/never-used") is None
    assert await store.find(reference="WC-never-used") is None


async def test_the_same_key_with_the_same_request_is_replayed_and_with_another_refused(store: IntakeStore) -> None:
    lines = (need(3, (EAST, 10)),)
    first = draft(lines)
    accepted = await store.accept(first, lines, T0)
    assert isinstance(accepted, Accepted)

    # a client retrying its POST: a new draft (new id) under the same key
    again = draft(lines, key=first.key, ref=first.external_ref)
    assert await store.accept(again, lines, T0 + 1) == Replayed(record=accepted.record)
    other = draft(lines, key=first.key, fingerprint="fp-2")
    assert await store.accept(other, lines, T0 + 2) == KeyReused()

    assert await active(store) == 3
    assert await store.get(again.intake_id) is None
    assert await store.get(other.intake_id) is None
    assert await store.find(reference=other.reference) is None
    assert [r.intake_id for r in await store.list(None, 10)] == [first.intake_id]


async def test_a_reference_accepted_under_another_key_is_already_submitted(store: IntakeStore) -> None:
    lines = (need(3, (EAST, 10)),)
    first = await accept(store, *lines)
    again = draft(lines, ref=first.external_ref)  # another key: the shopper's second tab

    assert await store.accept(again, lines, T0 + 1) == AlreadySubmitted(intake_id=first.intake_id)
    assert await active(store) == 3
    assert await store.get(again.intake_id) is None
    assert await store.find(key=again.key) is None
    assert await store.find(reference=first.reference) == first


async def test_references_are_unique_per_client_scope_not_across_clients(store: IntakeStore) -> None:
    """Two storefronts may both have an order "1001": each is accepted, and neither answer
    names the other's intake; the same client's second submission is already submitted."""
    lines = (need(1, (EAST, 10)),)
    accepted = [
        await store.accept(draft(lines, ref="1001", ref_key=f"{c}/1001"), lines, T0) for c in ("north", "south")
    ]
    assert all(isinstance(outcome, Accepted) for outcome in accepted), accepted
    north, south = (outcome.record for outcome in accepted if isinstance(outcome, Accepted))

    assert north.intake_id != south.intake_id
    assert (north.external_ref, south.external_ref) == ("1001", "1001")
    assert await store.find(reference="north/1001") == north
    assert await store.find(reference="south/1001") == south
    again = draft(lines, ref="1001", ref_key="north/1001")
    assert await store.accept(again, lines, T0 + 1) == AlreadySubmitted(intake_id=north.intake_id)
    assert await active(store) == 2


async def test_the_same_accept_sent_twice_is_accepted_both_times_and_holds_once(store: IntakeStore) -> None:
    lines = (need(3, (EAST, 10)),)
    submitted = draft(lines)
    first = await store.accept(submitted, lines, T0)
    second = await store.accept(submitted, lines, T0)

    assert isinstance(first, Accepted), first
    assert second == first
    assert await active(store) == 3
    assert len(await store.list(None, 10)) == 1
    await claim(store, T0 + 1)
    assert await store.claim(T0 + 1, LEASE, token()) is None  # queued once


# accept: what is free, line by line


async def test_an_order_with_one_short_line_holds_nothing_and_names_what_it_could_have(store: IntakeStore) -> None:
    await accept(store, need(1, (EAST, 3), sku=OTHER_SKU))  # another order holds 1 of OTHER_SKU in EAST
    lines = (
        need(2, (EAST, 10), line=1),
        need(5, (EAST, 3), (WEST, 1), sku=OTHER_SKU, line=2),
    )
    submitted = draft(lines)

    outcome = await store.accept(submitted, lines, T0 + 1)

    assert short_lines(outcome) == [ShortLine(line=2, sku=OTHER_SKU, available=3)]  # (3 - 1) + 1
    assert await active(store) == 0
    assert await active(store, OTHER_SKU) == 1
    assert await active(store, OTHER_SKU, WEST) == 0
    assert await store.get(submitted.intake_id) is None
    assert await store.find(key=submitted.key) is None
    assert await store.find(reference=submitted.reference) is None
    assert len(await store.list(None, 10)) == 1

    # nothing was written: the same key and reference are accepted once the stock is there
    stocked = (lines[0], need(5, (EAST, 3), (WEST, 5), sku=OTHER_SKU, line=2))
    retried = await store.accept(submitted, stocked, T0 + 2)
    assert isinstance(retried, Accepted), retried
    assert units(retried.record.holds) == {(SKU, EAST): 2, (OTHER_SKU, EAST): 2, (OTHER_SKU, WEST): 3}


async def test_every_short_line_is_named(store: IntakeStore) -> None:
    lines = (
        need(4, (EAST, 3), line=1),
        need(1, (EAST, 10), sku="CAP-RED", line=2),
        need(2, (EAST, 0), (WEST, 1), sku=OTHER_SKU, line=3),
    )
    outcome = await store.accept(draft(lines), lines, T0)
    assert short_lines(outcome) == [
        ShortLine(line=1, sku=SKU, available=3),
        ShortLine(line=3, sku=OTHER_SKU, available=1),
    ]
    assert await active(store, "CAP-RED") == 0


async def test_lines_of_one_sku_share_its_stock(store: IntakeStore) -> None:
    too_many = (need(6, (EAST, 10), line=1), need(6, (EAST, 10), line=2))
    assert short_lines(await store.accept(draft(too_many), too_many, T0)) == [ShortLine(line=2, sku=SKU, available=4)]
    assert await active(store) == 0

    record = await accept(store, need(4, (EAST, 10), line=1), need(6, (EAST, 10), line=2))
    assert units(record.holds) == {(SKU, EAST): 10}
    assert await active(store) == 10


async def test_what_a_short_line_could_have_is_not_offered_again_to_a_later_line(store: IntakeStore) -> None:
    """The short line takes what is free as any line does: the availabilities named add up to
    what is free, so an order cut down to them fits."""
    lines = (need(5, (EAST, 3), line=1), need(2, (EAST, 3), line=2))
    assert short_lines(await store.accept(draft(lines), lines, T0)) == [
        ShortLine(line=1, sku=SKU, available=3),
        ShortLine(line=2, sku=SKU, available=0),
    ]
    assert await active(store) == 0


async def test_an_order_holds_one_entry_per_sku_and_warehouse(store: IntakeStore) -> None:
    same_place = await accept(store, need(4, (EAST, 10), line=1), need(6, (EAST, 10), line=2))
    assert same_place.holds == (Hold(SKU, EAST, 10),)

    stock = ((EAST, 5), (WEST, 10))
    spread = await accept(store, need(4, *stock, sku=OTHER_SKU, line=1), need(3, *stock, sku=OTHER_SKU, line=2))
    assert units(spread.holds) == {(OTHER_SKU, EAST): 5, (OTHER_SKU, WEST): 2}
    assert len(spread.holds) == 2


async def test_stock_below_what_is_held_leaves_nothing_free(store: IntakeStore) -> None:
    await accept(store, need(5, (EAST, 5)))
    lines = (need(1, (EAST, 3)),)  # the ERP's count dropped under the holds (a stock take)
    assert short_lines(await store.accept(draft(lines), lines, T0 + 1)) == [ShortLine(line=1, sku=SKU, available=0)]
    assert await active(store) == 5


async def test_a_line_takes_from_its_warehouses_in_order_and_splits_across_them(store: IntakeStore) -> None:
    split = await accept(store, need(6, (EAST, 3), (WEST, 5)))
    assert units(split.holds) == {(SKU, EAST): 3, (SKU, WEST): 3}

    west_first = await accept(store, need(2, (WEST, 5), (EAST, 3), sku=OTHER_SKU))
    assert units(west_first.holds) == {(OTHER_SKU, WEST): 2}

    skips_empty = await accept(store, need(2, ("NORTH", 0), (WEST, 4), (EAST, 9), sku="CAP-RED"))
    assert units(skips_empty.holds) == {("CAP-RED", WEST): 2}

    assert (await active(store, SKU, EAST), await active(store, SKU, WEST)) == (3, 3)
    assert (await active(store, OTHER_SKU, WEST), await active(store, OTHER_SKU, EAST)) == (2, 0)


async def test_active_holds_reduce_what_the_next_accept_sees(store: IntakeStore) -> None:
    stock = ((EAST, 3), (WEST, 5))  # one snapshot, read before any of these orders
    first = await accept(store, need(3, *stock))
    second = await accept(store, need(3, *stock), at=T0 + 1)
    third = draft((need(3, *stock),))

    assert units(first.holds) == {(SKU, EAST): 3}
    assert units(second.holds) == {(SKU, WEST): 3}
    outcome = await store.accept(third, (need(3, *stock),), T0 + 2)
    assert short_lines(outcome) == [ShortLine(line=1, sku=SKU, available=2)]
    assert (await active(store, SKU, EAST), await active(store, SKU, WEST)) == (3, 3)


# posted holds


async def _posted(store: IntakeStore, quantity: int, posted_at: float) -> IntakeRecord:
    record = await accept(store, need(quantity, (EAST, 10)))
    claimed = await claim(store, T0 + 1)
    assert claimed.record.intake_id == record.intake_id
    return await store.posted(record.intake_id, claimed.record.attempts, "SO-1001", posted_at)


async def test_a_posted_hold_counts_only_for_snapshots_read_until_it_was_posted(store: IntakeStore) -> None:
    posted_at = T0 + 10
    await _posted(store, 4, posted_at)

    ledger = await store.ledger([SKU], posted_at + 1)
    assert ledger.active.get((SKU, EAST), 0) == 0
    assert ledger.held(SKU, EAST, posted_at) == 4
    assert ledger.held(SKU, EAST, posted_at + 1) == 0

    for snapshot_at in (T0 + 5, posted_at):  # read before the ERP had the order: 10 shows it not
        lines = (need(7, (EAST, 10), snapshot_at=snapshot_at),)
        outcome = await store.accept(draft(lines), lines, posted_at + 1)
        assert short_lines(outcome) == [ShortLine(line=1, sku=SKU, available=6)], snapshot_at - T0

    later = await accept(store, need(6, (EAST, 6), snapshot_at=posted_at + 1), at=posted_at + 2)  # 6 shows it
    assert units(later.holds) == {(SKU, EAST): 6}


async def test_a_posted_hold_is_dropped_after_its_keep_time(store: IntakeStore) -> None:
    posted_at = T0 + 10
    await _posted(store, 4, posted_at)

    kept = await store.ledger([SKU], posted_at + POSTED_HOLD_SECONDS - 1)
    assert kept.held(SKU, EAST, posted_at) == 4
    dropped = await store.ledger([SKU], posted_at + POSTED_HOLD_SECONDS + 1)
    assert dropped.held(SKU, EAST, posted_at) == 0
    assert not dropped.posted.get((SKU, EAST))


async def test_an_accept_after_the_keep_time_no_longer_subtracts_the_posted_hold(store: IntakeStore) -> None:
    posted_at = T0 + 10
    await _posted(store, 4, posted_at)
    late = posted_at + POSTED_HOLD_SECONDS + 1
    record = await accept(store, need(10, (EAST, 10), snapshot_at=posted_at - 1), at=late)
    assert units(record.holds) == {(SKU, EAST): 10}


# the queue: claim


async def test_claim_hands_out_the_earliest_due_intake_first(store: IntakeStore) -> None:
    assert await store.claim(T0 + 5, LEASE, token()) is None
    later = await accept(store, at=T0 + 1)
    earlier = await accept(store, at=T0)  # written second, due first

    first = await claim(store, T0 + 5)
    assert first.record.intake_id == earlier.intake_id
    assert (first.record.status, first.record.attempts, first.lease_until) == ("posting", 1, T0 + 5 + LEASE)
    stored = await store.get(earlier.intake_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("posting", 1)

    assert (await claim(store, T0 + 5)).record.intake_id == later.intake_id
    assert await store.claim(T0 + 5, LEASE, token()) is None


async def test_claim_goes_by_when_an_intake_is_due_not_when_it_was_accepted(store: IntakeStore) -> None:
    first = await accept(store, at=T0)
    second = await accept(store, at=T0 + 1)
    claimed = await claim(store, T0 + 2)
    assert claimed.record.intake_id == first.intake_id
    await store.retry(first.intake_id, claimed.record.attempts, "ERP timed out", T0 + 3, T0 + 2)

    assert (await claim(store, T0 + 10)).record.intake_id == second.intake_id  # due since T0 + 1
    assert (await claim(store, T0 + 10)).record.intake_id == first.intake_id  # due since T0 + 3


async def test_an_intake_is_not_claimed_before_it_is_due(store: IntakeStore) -> None:
    assert await store.next_due() is None
    record = await accept(store, at=T0 + 10)
    assert await store.next_due() == T0 + 10
    assert await store.claim(T0 + 9, LEASE, token()) is None
    assert (await claim(store, T0 + 10)).record.intake_id == record.intake_id


async def test_a_lease_that_ran_out_is_claimed_again_and_the_first_claimant_is_stale(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    first = await claim(store, T0)
    assert await store.next_due() == T0 + LEASE  # when it is claimable again, should the worker die
    assert await store.claim(T0 + LEASE - 1, LEASE, token()) is None  # still leased

    second = await claim(store, T0 + LEASE + 1)  # the first worker died
    assert second.record.intake_id == record.intake_id
    assert (second.record.attempts, second.lease_until) == (2, T0 + 2 * LEASE + 1)

    attempt = first.record.attempts
    with pytest.raises(Stale) as refused:
        await store.posted(record.intake_id, attempt, "SO-1", T0 + LEASE + 2)
    assert refused_status(refused) == "posting"
    with pytest.raises(Stale):
        await store.retry(record.intake_id, attempt, "timeout", T0 + 100, T0 + LEASE + 2)
    with pytest.raises(Stale):
        await store.give_up(record.intake_id, attempt, "rejected", "refused", T0 + LEASE + 2)
    stored = await store.get(record.intake_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("posting", 2)
    assert await active(store) == 3

    posted = await store.posted(record.intake_id, 2, "SO-2", T0 + LEASE + 3)
    assert (posted.status, posted.order_number) == ("posted", "SO-2")


async def test_the_same_claim_sent_twice_answers_the_same_claim(store: IntakeStore) -> None:
    one = await accept(store, at=T0)
    two = await accept(store, at=T0 + 1)
    sent = token()

    first = await store.claim(T0 + 2, LEASE, sent)
    again = await store.claim(T0 + 2, LEASE, sent)

    assert first is not None
    assert first.record.intake_id == one.intake_id
    assert again == first
    stored = await store.get(one.intake_id)
    assert stored is not None
    assert stored.attempts == 1
    assert (await claim(store, T0 + 2)).record.intake_id == two.intake_id


# the queue: retry, posted


async def test_a_retried_intake_is_accepted_again_and_waits_until_it_is_due(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    claimed = await claim(store, T0 + 1)

    retried = await store.retry(record.intake_id, claimed.record.attempts, "ERP timed out", T0 + 100, T0 + 2)

    assert (retried.status, retried.attempts, retried.last_error) == ("accepted", 1, "ERP timed out")
    assert await store.get(record.intake_id) == retried
    assert await store.retry(record.intake_id, claimed.record.attempts, "ERP timed out", T0 + 100, T0 + 2) == retried
    assert await active(store) == 3
    assert await store.next_due() == T0 + 100
    assert await store.claim(T0 + 99, LEASE, token()) is None
    again = await claim(store, T0 + 100)
    assert (again.record.intake_id, again.record.attempts) == (record.intake_id, 2)
    assert await store.claim(T0 + 100, LEASE, token()) is None  # queued once


async def test_a_posted_intake_leaves_the_queue_with_its_order_number(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    claimed = await claim(store, T0 + 1)

    posted = await store.posted(record.intake_id, claimed.record.attempts, "SO-1001", T0 + 5)

    assert (posted.status, posted.order_number, posted.posted_at, posted.attempts) == ("posted", "SO-1001", T0 + 5, 1)
    assert posted.history[-1].status == "posted"
    assert await store.get(record.intake_id) == posted
    assert await store.next_due() is None
    assert await store.claim(T0 + 1000, LEASE, token()) is None  # long after the lease
    ledger = await store.ledger([SKU], T0 + 6)
    assert ledger.active.get((SKU, EAST), 0) == 0
    assert ledger.held(SKU, EAST, T0 + 5) == 3


async def test_posted_sent_twice_answers_the_posted_record_and_holds_once(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    claimed = await claim(store, T0 + 1)
    first = await store.posted(record.intake_id, claimed.record.attempts, "SO-1001", T0 + 5)
    again = await store.posted(record.intake_id, claimed.record.attempts, "SO-1001", T0 + 5)

    assert again == first
    assert (await store.ledger([SKU], T0 + 6)).held(SKU, EAST, T0 + 5) == 3


async def test_an_intake_not_claimed_at_that_attempt_cannot_be_posted_or_retried(store: IntakeStore) -> None:
    record = await accept(store)
    with pytest.raises(Stale):  # never claimed
        await store.posted(record.intake_id, 1, "SO-1", T0 + 1)
    with pytest.raises(Stale):
        await store.retry(record.intake_id, 1, "timeout", T0 + 100, T0 + 1)

    claimed = await claim(store, T0 + 2)
    with pytest.raises(Stale):  # another attempt's number
        await store.posted(record.intake_id, claimed.record.attempts + 1, "SO-1", T0 + 3)
    await store.posted(record.intake_id, claimed.record.attempts, "SO-1", T0 + 3)
    with pytest.raises(Stale):  # posted already
        await store.retry(record.intake_id, claimed.record.attempts, "timeout", T0 + 100, T0 + 4)
    stored = await store.get(record.intake_id)
    assert stored is not None
    assert (stored.status, stored.order_number) == ("posted", "SO-1")


# leaving the queue: give_up, cancel


@pytest.mark.parametrize("status", ["rejected", "dead_lettered"])
async def test_a_worker_giving_up_releases_the_hold_exactly_once(
    store: IntakeStore, status: Literal["rejected", "dead_lettered"]
) -> None:
    record = await accept(store, need(3, (EAST, 10)), at=T0)
    other = await accept(store, need(2, (EAST, 10)), at=T0 + 1)
    claimed = await claim(store, T0 + 1)
    assert claimed.record.intake_id == record.intake_id
    assert await active(store) == 5

    first = await store.give_up(record.intake_id, claimed.record.attempts, status, "ERP refused SKU", T0 + 2)
    assert first.status == status
    assert (first.history[-1].status, first.history[-1].detail) == (status, "ERP refused SKU")
    assert await active(store) == 2

    again = await store.give_up(record.intake_id, claimed.record.attempts, status, "ERP refused SKU", T0 + 2)
    assert again == first
    assert await active(store) == 2
    assert (await claim(store, T0 + 1000)).record.intake_id == other.intake_id  # off the queue
    assert await store.claim(T0 + 1000, LEASE, token()) is None


async def test_a_worker_cannot_give_up_another_attempt(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    claimed = await claim(store, T0 + 1)
    with pytest.raises(Stale):
        await store.give_up(record.intake_id, claimed.record.attempts + 1, "rejected", "refused", T0 + 2)
    stored = await store.get(record.intake_id)
    assert stored is not None
    assert stored.status == "posting"
    assert await active(store) == 3


async def test_an_operator_cancels_an_accepted_intake_releasing_its_hold_once(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)), at=T0)
    other = await accept(store, need(2, (EAST, 10)), at=T0 + 1)

    cancelled = await store.give_up(record.intake_id, None, "cancelled", "customer called", T0 + 2)
    assert cancelled.status == "cancelled"
    assert (cancelled.history[-1].status, cancelled.history[-1].detail) == ("cancelled", "customer called")
    assert await active(store) == 2

    again = await store.give_up(record.intake_id, None, "cancelled", "customer called", T0 + 2)
    assert again == cancelled
    assert await active(store) == 2
    assert (await claim(store, T0 + 3)).record.intake_id == other.intake_id  # off the queue
    assert await store.claim(T0 + 3, LEASE, token()) is None


async def test_an_operator_cancels_a_rejected_intake_without_releasing_again(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)), at=T0)
    await accept(store, need(2, (EAST, 10)), at=T0 + 1)
    claimed = await claim(store, T0 + 1)
    await store.give_up(record.intake_id, claimed.record.attempts, "rejected", "refused", T0 + 2)
    assert await active(store) == 2

    cancelled = await store.give_up(record.intake_id, None, "cancelled", "not wanted", T0 + 3)
    assert cancelled.status == "cancelled"
    assert await active(store) == 2


async def test_an_operator_cannot_cancel_what_the_erp_may_have(store: IntakeStore) -> None:
    """An attempt was sent and its answer lost (timed out, dead-lettered after failures): the
    ERP may hold the order; a cancel would leave it there behind a 'cancelled' intake."""
    retried, dead = await accept(store, need(1)), await accept(store, need(1))
    for settle in ("retry", "dead_lettered"):  # the earlier accepted is claimed first
        claimed = await store.claim(T0 + 1, LEASE, token())
        assert claimed is not None
        intake_id = claimed.record.intake_id
        if settle == "retry":
            await store.retry(intake_id, 1, "ErpTimeout: no answer", T0 + 100, T0 + 2)
        else:
            await store.give_up(intake_id, 1, "dead_lettered", "after 1 attempts: ErpTimeout", T0 + 2)
    for record in (retried, dead):
        with pytest.raises(Stale):
            await store.give_up(record.intake_id, None, "cancelled", "customer called", T0 + 3)
    assert await active(store) == 1  # the dead-lettered one's hold went with its dead letter


async def test_an_operator_cannot_cancel_an_intake_a_worker_is_posting(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    claimed = await claim(store, T0 + 1)
    with pytest.raises(Stale) as refused:
        await store.give_up(record.intake_id, None, "cancelled", "customer called", T0 + 2)
    assert refused_status(refused) == "posting"  # what the operator is told
    stored = await store.get(record.intake_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("posting", 1)
    assert await active(store) == 3
    posted = await store.posted(record.intake_id, claimed.record.attempts, "SO-1", T0 + 3)  # the worker goes on
    assert posted.status == "posted"


async def test_an_operator_cannot_cancel_a_posted_intake(store: IntakeStore) -> None:
    posted = await _posted(store, 3, T0 + 5)
    with pytest.raises(Stale) as refused:
        await store.give_up(posted.intake_id, None, "cancelled", "customer called", T0 + 6)
    assert refused_status(refused) == "posted"
    assert await store.get(posted.intake_id) == posted
    assert (await store.ledger([SKU], T0 + 6)).held(SKU, EAST, T0 + 5) == 3


async def test_giving_up_or_replaying_an_unknown_intake_is_a_key_error(store: IntakeStore) -> None:
    await accept(store)
    with pytest.raises(KeyError):
        await store.give_up(new_intake_id(), None, "cancelled", "customer called", T0)
    with pytest.raises(KeyError):
        await store.give_up(new_intake_id(), 1, "rejected", "refused", T0)
    with pytest.raises(KeyError):
        await store.replay(new_intake_id(), "operator", T0, [need(1)])


# replay


@pytest.mark.parametrize("status", ["rejected", "dead_lettered"])
async def test_replaying_a_given_up_intake_holds_and_queues_it_again_once(
    store: IntakeStore, status: Literal["rejected", "dead_lettered"]
) -> None:
    record = await accept(store, need(3, (EAST, 10)), at=T0)
    other = await accept(store, need(2, (EAST, 10)), at=T0 + 1)
    claimed = await claim(store, T0 + 1)
    await store.give_up(record.intake_id, claimed.record.attempts, status, "refused", T0 + 2)
    assert await active(store) == 2

    replayed = await store.replay(record.intake_id, "SKU fixed in the ERP", T0 + 50, [need(3, (EAST, 10))])
    assert isinstance(replayed, IntakeRecord)
    assert (replayed.status, replayed.attempts, replayed.round_attempts) == ("accepted", 1, 0)
    assert (replayed.history[-1].status, replayed.history[-1].detail) == ("accepted", "SKU fixed in the ERP")
    assert await active(store) == 5

    again = await store.replay(record.intake_id, "SKU fixed in the ERP", T0 + 50, [need(3, (EAST, 10))])
    assert again == replayed
    assert await active(store) == 5

    assert await store.claim(T0 + 49, LEASE, token()) is not None  # the other one, due since T0 + 1
    assert await store.claim(T0 + 49, LEASE, token()) is None  # the replayed one is due at T0 + 50
    queued = await claim(store, T0 + 50)
    assert (queued.record.intake_id, queued.record.attempts, queued.record.round_attempts) == (record.intake_id, 2, 1)
    assert await store.claim(T0 + 50, LEASE, token()) is None
    stored = await store.get(other.intake_id)
    assert stored is not None
    assert stored.status == "posting"


async def test_a_claim_from_before_a_replay_can_settle_nothing_after_it(store: IntakeStore) -> None:
    """A worker stalled past its lease (attempt 1), another took over (attempt 2) and the ERP
    refused; an operator replayed it and a third worker posts it (attempt 3): the stalled
    worker's late outcome, whatever it is, is refused, never applied to the new claim."""
    record = await accept(store, need(2, (EAST, 10)))
    stalled = await claim(store, T0)
    taken = await claim(store, T0 + LEASE + 1)
    assert (stalled.record.attempts, taken.record.attempts) == (1, 2)
    await store.give_up(record.intake_id, 2, "rejected", "not-salable", T0 + LEASE + 2)
    replayed = await store.replay(record.intake_id, "fixed", T0 + LEASE + 3, [need(2, (EAST, 10))])
    assert isinstance(replayed, IntakeRecord)
    third = await claim(store, T0 + LEASE + 3)
    assert third.record.attempts == 3
    for late in (
        lambda: store.give_up(record.intake_id, 1, "rejected", "late", T0 + LEASE + 4),
        lambda: store.retry(record.intake_id, 1, "late", T0 + LEASE + 9, T0 + LEASE + 4),
        lambda: store.posted(record.intake_id, 1, "SO-LATE", T0 + LEASE + 4),
    ):
        with pytest.raises(Stale):
            await late()
    current = await store.get(record.intake_id)
    assert current is not None
    assert (current.status, current.attempts) == ("posting", 3)
    assert await active(store) == 2  # held once, by the replay
    posted = await store.posted(record.intake_id, 3, "SO-9", T0 + LEASE + 5)
    assert (posted.status, posted.order_number, posted.round_attempts) == ("posted", "SO-9", 1)


async def test_replaying_a_posted_intake_changes_nothing(store: IntakeStore) -> None:
    posted = await _posted(store, 3, T0 + 5)
    assert await store.replay(posted.intake_id, "operator", T0 + 6, []) == posted
    assert await store.get(posted.intake_id) == posted
    assert await store.next_due() is None
    assert await store.claim(T0 + 6, LEASE, token()) is None
    ledger = await store.ledger([SKU], T0 + 6)
    assert (ledger.active.get((SKU, EAST), 0), ledger.held(SKU, EAST, T0 + 5)) == (0, 3)


async def test_replaying_a_queued_or_posting_intake_leaves_it_as_it_is(store: IntakeStore) -> None:
    queued = await accept(store, need(3, (EAST, 10)), at=T0 + 1)
    posting = await accept(store, need(2, (EAST, 10)), at=T0)
    claimed = await claim(store, T0 + 2)
    assert claimed.record.intake_id == posting.intake_id

    assert await store.replay(queued.intake_id, "operator", T0 + 3, []) == queued
    assert await store.replay(posting.intake_id, "operator", T0 + 3, []) == await store.get(posting.intake_id)
    stored = await store.get(posting.intake_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("posting", 1)
    assert await active(store) == 5
    assert (await claim(store, T0 + 3)).record.intake_id == queued.intake_id
    assert await store.claim(T0 + 3, LEASE, token()) is None  # neither queued twice


async def test_replaying_a_cancelled_intake_is_stale(store: IntakeStore) -> None:
    record = await accept(store, need(3, (EAST, 10)))
    cancelled = await store.give_up(record.intake_id, None, "cancelled", "customer called", T0 + 1)
    with pytest.raises(Stale) as refused:
        await store.replay(record.intake_id, "operator", T0 + 2, [need(1)])
    assert refused_status(refused) == "cancelled"
    assert await store.get(record.intake_id) == cancelled
    assert await active(store) == 0
    assert await store.claim(T0 + 2, LEASE, token()) is None


# list


async def test_list_shows_the_most_recently_accepted_first_by_status_up_to_a_limit(store: IntakeStore) -> None:
    first = await accept(store, at=T0)
    second = await accept(store, at=T0 + 1)
    third = await accept(store, at=T0 + 2)
    claimed = await claim(store, T0 + 3)
    assert claimed.record.intake_id == first.intake_id
    await store.posted(first.intake_id, claimed.record.attempts, "SO-1", T0 + 4)

    def ids(records: list[IntakeRecord]) -> list[str]:
        return [record.intake_id for record in records]

    assert ids(await store.list(None, 10)) == [third.intake_id, second.intake_id, first.intake_id]
    assert ids(await store.list(None, 2)) == [third.intake_id, second.intake_id]
    assert ids(await store.list("accepted", 10)) == [third.intake_id, second.intake_id]
    assert ids(await store.list("accepted", 1)) == [third.intake_id]
    assert ids(await store.list("posted", 10)) == [first.intake_id]
    assert await store.list("rejected", 10) == []
    assert (await store.list("posted", 10))[0] == await store.get(first.intake_id)


# many workers at once


async def test_of_100_concurrent_accepts_for_10_units_exactly_10_are_accepted(make_store: MakeStore) -> None:
    workers = [make_store() for _ in range(4)]
    lines = (need(1, (EAST, 10)),)
    drafts = [draft(lines) for _ in range(100)]

    outcomes = await asyncio.gather(*(workers[i % 4].accept(d, lines, T0) for i, d in enumerate(drafts)))

    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    assert kinds == {"Accepted": 10, "Short": 90}
    assert all(short_lines(o) == [ShortLine(line=1, sku=SKU, available=0)] for o in outcomes if isinstance(o, Short))
    assert await active(workers[0]) == 10
    assert len(await workers[1].list("accepted", 200)) == 10


#: The process race: each SKU has 10 units, each of 4 worker processes sends 25 one-unit
#: orders of each, the SKUs interleaved: 40 races of 100 orders, not one.
RACE_SKUS = tuple(f"RACE-{i:02d}" for i in range(40))


def _accept_in_a_worker_process(path: str, start: Barrier, results: Queue[list[tuple[str, str]]], now: float) -> None:
    """One gunicorn worker: its own store on the host's file, 25 one-unit orders per race SKU."""
    from gateway.intake.sqlite_store import SqliteIntakeStore

    async def run() -> list[tuple[str, str]]:
        store = SqliteIntakeStore(path, posted_hold_seconds=POSTED_HOLD_SECONDS)
        orders = [(need(1, (EAST, 10), sku=sku, snapshot_at=now),) for _ in range(25) for sku in RACE_SKUS]
        await store.ledger(RACE_SKUS, now)  # the file is open before the start
        start.wait()
        outcomes = await asyncio.gather(
            *(store.accept(draft(lines, at=now), lines, now) for lines in orders), return_exceptions=True
        )
        await store.aclose()
        return [(lines[0].sku, type(outcome).__name__) for lines, outcome in zip(orders, outcomes, strict=True)]

    results.put(asyncio.run(run()))


def test_of_100_accepts_from_4_processes_on_one_file_for_10_units_exactly_10_are_accepted(tmp_path: Path) -> None:
    """SQLite only: store objects in one process share a GIL, which all but hides a race between
    reading the holds and writing them; a host's workers are processes. 40 SKUs race at once, so
    a store without its transaction oversells in nearly every run, not in a few."""
    from gateway.intake.sqlite_store import SqliteIntakeStore

    path = str(tmp_path / "intake.sqlite")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results: Queue[list[tuple[str, str]]] = context.Queue()
    workers = [context.Process(target=_accept_in_a_worker_process, args=(path, start, results, T0)) for _ in range(4)]
    for worker in workers:
        worker.start()
    answers = [answer for _ in workers for answer in results.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    races = len(RACE_SKUS)
    assert Counter(kind for _, kind in answers) == {"Accepted": 10 * races, "Short": 90 * races}
    accepted = Counter(sku for sku, kind in answers if kind == "Accepted")
    assert {sku: n for sku, n in accepted.items() if n != 10} == {}  # SKU: units sold of its 10

    async def ledger() -> HoldLedger:
        store = SqliteIntakeStore(path, posted_hold_seconds=POSTED_HOLD_SECONDS)
        try:
            return await store.ledger(RACE_SKUS, T0)
        finally:
            await store.aclose()

    assert asyncio.run(ledger()).active == {(sku, EAST): 10 for sku in RACE_SKUS}


async def test_20_concurrent_claims_over_5_due_intakes_claim_each_once(make_store: MakeStore) -> None:
    workers = [make_store() for _ in range(4)]
    queued = {(await accept(workers[0], at=T0 + i)).intake_id for i in range(5)}

    claims = await asyncio.gather(*(workers[i % 4].claim(T0 + 10, LEASE, token()) for i in range(20)))

    won = [c for c in claims if c is not None]
    assert sorted(c.record.intake_id for c in won) == sorted(queued)
    assert {c.record.attempts for c in won} == {1}
    assert claims.count(None) == 15
    for intake_id in queued:
        stored = await workers[1].get(intake_id)
        assert stored is not None
        assert (stored.status, stored.attempts) == ("posting", 1)


# a store that cannot be asked


async def test_a_store_that_cannot_be_asked_says_so_on_every_step(unusable_store: IntakeStore) -> None:
    store = unusable_store
    lines = (need(1),)
    some_id = new_intake_id()
    steps: dict[str, Callable[[], Awaitable[object]]] = {
        "accept": lambda: store.accept(draft(lines), lines, T0),
        "get": lambda: store.get(some_id),
        "find": lambda: store.find(key="shop-client/k"),
        "list": lambda: store.list(None, 10),
        "ledger": lambda: store.ledger([SKU], T0),
        "claim": lambda: store.claim(T0, LEASE, token()),
        "next_due": lambda: store.next_due(),
        "posted": lambda: store.posted(some_id, 1, "SO-1", T0),
        "retry": lambda: store.retry(some_id, 1, "timeout", T0 + 10, T0),
        "give_up": lambda: store.give_up(some_id, None, "cancelled", "customer called", T0),
        "replay": lambda: store.replay(some_id, "operator", T0, [need(1)]),
    }
    answered: list[str] = []
    for name, step in steps.items():
        try:
            await step()
        except IntakeStoreUnavailable:
            continue
        answered.append(name)
    assert answered == []


async def test_a_warehouse_below_zero_counts_against_the_others(store: IntakeStore) -> None:
    """The ERP shipped more from EAST than was held there (its sale has one warehouse): EAST is
    at -1, WEST still shows 3 though 1 of them was only ever promised through EAST's shortfall."""
    short = await store.accept(draft([need(3, (EAST, -1), (WEST, 3))]), [need(3, (EAST, -1), (WEST, 3))], T0)
    assert short_lines(short) == [ShortLine(line=1, sku=SKU, available=2)]
    record = await accept(store, need(2, (EAST, -1), (WEST, 3)))
    assert units(record.holds) == {(SKU, WEST): 2}
    none_left = await store.accept(draft([need(1, (EAST, -1), (WEST, 3))]), [need(1, (EAST, -1), (WEST, 3))], T0)
    assert short_lines(none_left) == [ShortLine(line=1, sku=SKU, available=0)]
    # a line naming its warehouse has that warehouse's figure alone
    named = await accept(store, need(1, (EAST, 5)))
    assert units(named.holds) == {(SKU, EAST): 1}


async def test_an_ended_intake_is_kept_for_the_retention_then_gone_with_its_key(store: IntakeStore) -> None:
    """Posted (or cancelled) long enough ago: its record, key and reference are gone, and a new
    order may use them; one still on its way, or ended within the retention, is kept."""
    long_ago = T0 - RETENTION_SECONDS - 100
    old = await accept(store, need(1), at=long_ago)
    claimed = await store.claim(long_ago, LEASE, token())
    assert claimed is not None
    await store.posted(old.intake_id, 1, "SO-OLD", long_ago + 1)
    waiting = await accept(store, need(1), at=long_ago)  # accepted as long ago, never posted
    recent = await accept(store, need(1), at=T0 - 10)
    await store.give_up(recent.intake_id, None, "cancelled", "by test", T0 - 5)
    lately = await accept(store, need(1), at=long_ago + 2)  # accepted long ago, ended lately: kept
    await store.give_up(lately.intake_id, None, "cancelled", "by test", T0 - 4)
    await accept(store, need(1), at=T0)  # the next accept prunes
    assert await store.get(old.intake_id) is None
    assert await store.find(key=old.key) is None
    assert await store.find(reference=old.reference) is None
    assert old.intake_id not in [r.intake_id for r in await store.list("posted", 10)]
    kept = await store.get(waiting.intake_id)
    assert kept is not None
    assert kept.status == "accepted"
    assert await store.find(key=recent.key) is not None
    assert await store.find(reference=lately.reference) is not None
    assert [r.intake_id for r in await store.list("cancelled", 10)] == [recent.intake_id, lately.intake_id]
    again = draft([need(1)], key=old.key, ref=old.external_ref)
    assert isinstance(await store.accept(again, [need(1)], T0), Accepted)


async def test_a_retry_the_erp_never_saw_gives_the_attempt_back(store: IntakeStore) -> None:
    """The gateway's breaker refused the call: ``spent=False`` leaves ``attempts`` as before the
    claim, so refusals during an outage never push an order toward its dead letter."""
    record = await accept(store, need(1))
    first = await claim(store, T0)
    assert first.record.attempts == 1
    retried = await store.retry(record.intake_id, 1, "CircuitOpen: paused", T0 + 5, T0, spent=False)
    assert (retried.status, retried.attempts) == ("accepted", 0)
    resent = await store.retry(record.intake_id, 1, "CircuitOpen: paused", T0 + 5, T0, spent=False)
    assert (resent.status, resent.attempts) == ("accepted", 0)  # this step, resent: given back once
    assert await store.claim(T0 + 1, LEASE, token()) is None  # due at T0 + 5
    again = await claim(store, T0 + 5)
    assert again.record.attempts == 1
    spent = await store.retry(record.intake_id, 1, "ErpUnavailable: down", T0 + 9, T0 + 5)
    assert spent.attempts == 1


async def test_a_replay_is_judged_on_the_stock_now(store: IntakeStore) -> None:
    """Rejected, its 3 units went back and were promised to another order: replaying it does
    not hold them twice (Short, left as it was); with stock again, it is held anew."""
    first = await accept(store, need(3, (EAST, 3)), at=T0)
    claimed = await claim(store, T0 + 1)
    await store.give_up(first.intake_id, claimed.record.attempts, "rejected", "customer blocked", T0 + 2)
    await accept(store, need(3, (EAST, 3)), at=T0 + 3)
    refused = await store.replay(first.intake_id, "unblocked", T0 + 4, [need(3, (EAST, 3))])
    assert short_lines(refused) == [ShortLine(line=1, sku=SKU, available=0)]
    stored = await store.get(first.intake_id)
    assert stored is not None
    assert stored.status == "rejected"
    assert await active(store) == 3
    replayed = await store.replay(first.intake_id, "unblocked", T0 + 5, [need(3, (EAST, 2), (WEST, 4))])
    assert isinstance(replayed, IntakeRecord)
    assert replayed.status == "accepted"
    assert units(replayed.holds) == {(SKU, WEST): 3}  # EAST's 2 are held already; WEST has 4
    assert await active(store, SKU, WEST) == 3
