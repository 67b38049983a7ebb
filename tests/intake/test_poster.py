"""The poster's decisions (``gateway.intake.poster``), on the real SQLite store with a scripted
ERP (a fake of the port: what it answers is the test's, what the poster records is under test).
The clock is the test's: delays are read from the queue, never slept."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from erp_backends.errors import ErpUnavailable, InProgress, Rejected
from erp_backends.port import OrderOutcome
from gateway.intake.poster import Poster
from gateway.intake.settings import IntakeSettings
from gateway.intake.sqlite_store import SqliteIntakeStore
from gateway.intake.store import Accepted, IntakeStore
from policies.circuit_breaking import CircuitOpen
from tests.intake.test_stores import EAST, SKU, T0, accept, active, draft, need


class ScriptedErp:
    """``create_order`` answers the next item of ``script``: an exception to raise, or an order number."""

    def __init__(self, *script: BaseException | str) -> None:
        self.script = list(script)
        self.calls: list[str] = []

    async def create_order(self, request: Any, idempotency: Any, ctx: Any) -> OrderOutcome:
        self.calls.append(idempotency.key)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return OrderOutcome(order_number=step, replayed=False)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> Iterator[IntakeStore]:
    store = SqliteIntakeStore(str(tmp_path / "intake.sqlite"), posted_hold_seconds=600)
    yield store  # type: ignore[misc]
    await store.aclose()


def _poster(store: IntakeStore, erp: ScriptedErp, clock: Clock, **settings: Any) -> tuple[Poster, list[str]]:
    outcomes: list[str] = []
    poster = Poster(
        store,
        erp,  # type: ignore[arg-type]
        IntakeSettings(**{"max_attempts": 3, "backoff_seconds": 2.0, "max_backoff_seconds": 8.0, **settings}),
        observe=outcomes.append,
        clock=clock,
    )
    return poster, outcomes


async def test_posted_once_with_the_erps_number_and_the_hold_turns_posted(store: IntakeStore) -> None:
    record = await accept(store, need(2))
    clock = Clock()
    poster, outcomes = _poster(store, ScriptedErp("SO-9"), clock)
    assert await poster.post_due() == 1
    done = await store.get(record.intake_id)
    assert done is not None
    assert (done.status, done.order_number, done.attempts, done.posted_at) == ("posted", "SO-9", 1, T0)
    assert await active(store) == 0
    ledger = await store.ledger([SKU], T0)
    assert ledger.held(SKU, EAST, T0 - 1) == 2  # a snapshot read before the post still owes it
    assert ledger.held(SKU, EAST, T0 + 1) == 0  # one read after it shows the ERP's own order
    assert outcomes == ["posted"]
    assert await poster.post_due() == 0


async def test_a_business_rejection_ends_it_at_once_and_releases_the_hold(store: IntakeStore) -> None:
    record = await accept(store, need(3))
    erp = ScriptedErp(Rejected("not-salable", "SKU 'TEE-NVY-M' is not for sale", field="lines[0].sku"))
    poster, outcomes = _poster(store, erp, Clock())
    await poster.post_due()
    done = await store.get(record.intake_id)
    assert done is not None
    assert done.status == "rejected"
    assert done.last_error == "not-salable: SKU 'TEE-NVY-M' is not for sale (lines[0].sku)"
    assert await active(store) == 0
    assert outcomes == ["rejected"]
    assert await store.next_due() is None


async def test_erp_failures_are_retried_later_then_dead_lettered(store: IntakeStore) -> None:
    record = await accept(store, need(1))
    clock = Clock()
    down = ErpUnavailable("connection refused")
    erp = ScriptedErp(down, down, down)
    poster, outcomes = _poster(store, erp, clock)
    delays = []
    for attempt in (1, 2):
        assert await poster.post_due() == 1
        due = await store.next_due()
        assert due is not None
        delays.append(due - clock.now)
        assert await poster.post_due() == 0  # not before it is due
        clock.now = due
        retried = await store.get(record.intake_id)
        assert retried is not None
        assert (retried.status, retried.attempts, retried.last_error) == (
            "accepted",
            attempt,
            "ErpUnavailable: connection refused",
        )
        assert await active(store) == 1  # still held while it waits
    # jittered: between half and all of 2 s, then of 4 s
    assert 1.0 <= delays[0] <= 2.0
    assert 2.0 <= delays[1] <= 4.0
    assert await poster.post_due() == 1  # the third and last attempt
    done = await store.get(record.intake_id)
    assert done is not None
    assert done.status == "dead_lettered"
    assert done.last_error == "after 3 attempts: ErpUnavailable: connection refused"
    assert await active(store) == 0
    assert outcomes == ["retried", "retried", "dead_lettered"]
    assert len(erp.calls) == 3


async def test_another_attempt_in_progress_is_asked_again_soon(store: IntakeStore) -> None:
    record = await accept(store, need(1))
    clock = Clock()
    poster, _ = _poster(store, ScriptedErp(InProgress("being created", retry_after=1), "SO-7"), clock)
    await poster.post_due()
    assert await store.next_due() == T0 + 1
    clock.now = T0 + 1
    await poster.post_due()
    done = await store.get(record.intake_id)
    assert done is not None
    assert (done.status, done.order_number) == ("posted", "SO-7")


async def test_nothing_is_claimed_while_paused_and_the_backlog_keeps_its_attempts(store: IntakeStore) -> None:
    records = [await accept(store, need(1)) for _ in range(3)]
    erp = ScriptedErp("SO-1", "SO-2", "SO-3")
    paused = itertools.chain([True, True], itertools.repeat(False))
    settings = IntakeSettings(max_attempts=3, idle_seconds=0.01, posting_concurrency=2)
    poster = Poster(store, erp, settings, paused=lambda: next(paused), clock=Clock())  # type: ignore[arg-type]
    assert await poster._claim_some() == 0  # paused: the write breaker is open
    assert await poster._claim_some() == 0
    for record in records:
        waiting = await store.get(record.intake_id)
        assert waiting is not None
        assert (waiting.status, waiting.attempts) == ("accepted", 0)
    started = await poster._claim_some()
    assert started == 3
    poster.stop()
    await poster.run()  # waits for the posts it started
    for record in records:
        done = await store.get(record.intake_id)
        assert done is not None
        assert (done.status, done.attempts) == ("posted", 1)
    assert sorted(erp.calls) == sorted(r.key for r in records)


async def test_a_call_the_breaker_refused_spends_no_attempt_and_holds_posting(store: IntakeStore) -> None:
    """The breaker's trial call is out: the ERP was not asked, so the order keeps its attempts,
    comes due when calls are allowed again, and nothing more is claimed until then."""
    first, second = await accept(store, need(1)), await accept(store, need(1))
    clock = Clock()
    erp = ScriptedErp(CircuitOpen("paused", retry_after=5), "SO-1", "SO-2")
    poster, outcomes = _poster(store, erp, clock)
    assert await poster.post_due() == 1  # the refusal, then nothing until T0 + 5
    refused = await store.get(first.intake_id)
    assert refused is not None
    assert (refused.status, refused.attempts) == ("accepted", 0)
    waiting = await store.get(second.intake_id)
    assert waiting is not None
    assert waiting.attempts == 0  # never claimed
    clock.now = T0 + 5
    assert await poster.post_due() == 2
    numbers = set()
    for record in (first, second):
        done = await store.get(record.intake_id)
        assert done is not None
        assert (done.status, done.attempts) == ("posted", 1)
        numbers.add(done.order_number)
    assert numbers == {"SO-1", "SO-2"}
    assert outcomes == ["posted", "posted"]


async def test_an_order_this_version_cannot_read_is_dead_lettered_not_claimed_forever(tmp_path: Path) -> None:
    store = SqliteIntakeStore(str(tmp_path / "intake.sqlite"), posted_hold_seconds=600)
    try:
        lines = (need(2),)
        unreadable = msgspec.structs.replace(draft(lines), request=b'{"externalRef": "WC-1", "newField": 1}')
        outcome = await store.accept(unreadable, lines, T0)
        assert isinstance(outcome, Accepted)
        poster, outcomes = _poster(store, ScriptedErp(), Clock())
        assert await poster.post_due() == 1
        done = await store.get(unreadable.intake_id)
        assert done is not None
        assert done.status == "dead_lettered"
        assert done.last_error is not None
        assert done.last_error.startswith("the stored order cannot be read by this version")
        assert await active(store) == 0
        assert outcomes == ["dead_lettered"]
    finally:
        await store.aclose()


async def test_an_erp_still_creating_the_order_spends_no_attempt(store: IntakeStore) -> None:
    record = await accept(store, need(1))
    clock = Clock()
    poster, _ = _poster(store, ScriptedErp(*[InProgress("draft", retry_after=5)] * 5, "SO-3"), clock)
    for turn in range(5):
        assert await poster.post_due() == 1
        waiting = await store.get(record.intake_id)
        assert waiting is not None
        assert (waiting.status, waiting.attempts) == ("accepted", 0), turn
        clock.now += 5
    await poster.post_due()
    done = await store.get(record.intake_id)
    assert done is not None
    assert (done.status, done.order_number) == ("posted", "SO-3")
