"""The intake store port: accepted orders, their stock holds and the posting queue, one atomic
step per change. Adapters: ``gateway.intake.sqlite_store`` (one host) and
``gateway.intake.redis_store`` (many instances); one suite, ``tests/intake/test_stores.py``,
runs against both.

Holds. An accepted order holds its units per SKU and warehouse (``Hold``) until the ERP's own
stock shows the order. Two kinds:

- *active*: the order is ``accepted`` or ``posting``. Subtracted from every stock snapshot.
- *posted*: the ERP confirmed the order at ``posted_at``. Subtracted only from snapshots read
  before then (``snapshot_at <= posted_at``): a snapshot read later counts the ERP order
  itself. Kept ``posted_hold_seconds`` (longer than any snapshot intake or an availability answer
  uses: ``IntakeSettings.posted_hold_seconds``), then dropped.

A rejected, dead-lettered or cancelled order releases its active hold exactly once (only the
step that moves it out of ``accepted``/``posting`` releases). A replayed one holds again.

Queue. Each ``accepted`` intake is due at a time; ``claim`` hands the earliest due one to a
worker for ``lease_seconds`` (status ``posting``, ``attempts`` + 1). A worker that dies leaves
it to be claimed again when the lease runs out: at-least-once, made exactly-once by the ERP's
lookup by idempotency key. ``posted``/``retry``/``give_up`` name the claim's ``attempt``; a
step by a claim that was since taken over (its lease ran out) is refused (``Stale``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import msgspec

from contracts.v1.intake import IntakeStatus

__all__ = [
    "ACTIVE",
    "Accepted",
    "AlreadySubmitted",
    "Claimed",
    "Hold",
    "HoldLedger",
    "IntakeRecord",
    "IntakeStore",
    "IntakeStoreUnavailable",
    "KeyReused",
    "LineNeed",
    "Outcome",
    "Replayed",
    "Short",
    "ShortLine",
    "Stale",
    "Transition",
]

#: The statuses whose intakes hold stock actively.
ACTIVE: frozenset[str] = frozenset({"accepted", "posting"})


class Hold(msgspec.Struct, frozen=True, array_like=True):
    sku: str
    warehouse: str
    quantity: int


class Transition(msgspec.Struct, frozen=True, array_like=True):
    """One entry of an intake's history: status, epoch seconds, detail."""

    status: IntakeStatus
    at: float
    detail: str | None = None


class IntakeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An intake as stored. ``request`` is the ``OrderIntakeRequest`` JSON, for the ERP."""

    intake_id: str
    external_ref: str
    #: The client-scoped Idempotency-Key (``gateway.writes.idempotency.record_key``) and the
    #: fingerprint of the request it came with.
    key: str
    fingerprint: str
    request: bytes
    holds: tuple[Hold, ...]
    status: IntakeStatus
    accepted_at: float
    attempts: int = 0
    order_number: str | None = None
    last_error: str | None = None
    posted_at: float | None = None
    history: tuple[Transition, ...] = ()
    #: The storefront's reference scoped to its client (``gateway.intake.service.ref_key``), the
    #: index ``AlreadySubmitted`` answers from: two storefronts may both have an order "1001".
    #: Empty: the reference itself.
    ref_key: str = ""
    #: ``attempts`` made before the latest replay: attempt numbers never repeat (a worker
    #: still holding a claim from before a replay can never settle a claim made after it), and
    #: the dead-letter limit counts ``round_attempts``.
    replayed_after: int = 0

    @property
    def round_attempts(self) -> int:
        """Attempts since the intake was accepted, or replayed last."""
        return self.attempts - self.replayed_after

    @property
    def reference(self) -> str:
        """The client-scoped reference this intake is unique by."""
        return self.ref_key or self.external_ref


class LineNeed(msgspec.Struct, frozen=True, kw_only=True):
    """One order line as the atomic step judges it: the ERP's available-to-promise per candidate
    warehouse (in the order to take from), read at ``snapshot_at`` (epoch seconds, taken before
    the ERP was asked)."""

    line: int
    sku: str
    quantity: int
    stock: tuple[tuple[str, int], ...]
    snapshot_at: float


class ShortLine(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    sku: str
    #: Units this line could have had (the ERP's stock minus holds and earlier lines), >= 0.
    available: int


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    record: IntakeRecord


class Replayed(msgspec.Struct, frozen=True, kw_only=True):
    """The key was used before with the same request: that intake."""

    record: IntakeRecord


class KeyReused(msgspec.Struct, frozen=True, kw_only=True):
    """The key was used before with another request."""


class AlreadySubmitted(msgspec.Struct, frozen=True, kw_only=True):
    """The storefront's reference belongs to an intake accepted under another key."""

    intake_id: str


class Short(msgspec.Struct, frozen=True, kw_only=True):
    """Not enough stock for these lines: nothing was held."""

    lines: tuple[ShortLine, ...]


Outcome = Accepted | Replayed | KeyReused | AlreadySubmitted | Short


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """An intake handed to a worker; ``record.attempts`` numbers this attempt."""

    record: IntakeRecord
    lease_until: float


class Stale(Exception):
    """The step was refused: the intake is no longer where the caller thought (another worker
    took over the claim, an operator cancelled it, it was posted already)."""

    def __init__(self, record: IntakeRecord | None) -> None:
        super().__init__(f"intake is {record.status if record else 'unknown'}")
        self.record = record


class IntakeStoreUnavailable(Exception):
    """The store cannot be asked (Redis down, the file unusable): intake answers 503."""


class HoldLedger(msgspec.Struct, frozen=True, kw_only=True):
    """The holds on some SKUs: active units per (sku, warehouse), and posted holds as
    (posted_at, units) per (sku, warehouse)."""

    active: dict[tuple[str, str], int]
    posted: dict[tuple[str, str], tuple[tuple[float, int], ...]]

    def held(self, sku: str, warehouse: str, snapshot_at: float) -> int:
        """Units a snapshot read at ``snapshot_at`` does not yet show as committed by the ERP."""
        late = sum(units for at, units in self.posted.get((sku, warehouse), ()) if at >= snapshot_at)
        return self.active.get((sku, warehouse), 0) + late


class IntakeStore(abc.ABC):
    """Every method is one atomic step, safe to send twice (a Redis client retries a command
    that timed out, which may have run): a repeated step answers as the first did, never
    applies twice. ``now`` is the caller's epoch clock (tests pass their own)."""

    @abc.abstractmethod
    async def accept(self, draft: IntakeRecord, needs: Sequence[LineNeed], now: float) -> Outcome:
        """One atomic step, in this order:

        1. the key is known: ``Replayed`` (same fingerprint) or ``KeyReused``; known as the
           draft's own ``intake_id``: ``Accepted`` again (this very step was sent twice);
        2. the client-scoped reference (``IntakeRecord.reference``) is known: ``AlreadySubmitted``;
        3. a line may have what its candidate warehouses have free together (the ERP's stock
           minus ``HoldLedger.held`` at its snapshot, minus what earlier lines of this order
           took; a warehouse below zero counts against the others: an ERP may ship a whole
           order from one warehouse, whatever was held where), taken from them in order; any
           line short: ``Short`` naming every short line and what it could have, nothing written;
        4. otherwise the record (``draft`` with the holds taken, status ``accepted``, one
           history entry), its key and reference, the active holds and the queue entry (due
           ``now``) are written together: ``Accepted``."""

    @abc.abstractmethod
    async def get(self, intake_id: str) -> IntakeRecord | None:
        """The intake, None when unknown."""

    @abc.abstractmethod
    async def find(self, *, key: str | None = None, reference: str | None = None) -> IntakeRecord | None:
        """The intake of a client-scoped idempotency key or of a client-scoped reference
        (``IntakeRecord.reference``)."""

    @abc.abstractmethod
    async def list(self, status: IntakeStatus | None, limit: int) -> list[IntakeRecord]:
        """Up to ``limit`` intakes (of one status), the most recently accepted first."""

    @abc.abstractmethod
    async def ledger(self, skus: Sequence[str], now: float) -> HoldLedger:
        """The holds on ``skus`` (posted holds older than their keep time left out)."""

    @abc.abstractmethod
    async def claim(self, now: float, lease_seconds: float, token: str) -> Claimed | None:
        """The earliest due intake (``accepted`` and due, or ``posting`` with its lease run
        out), now ``posting`` with ``attempts`` + 1 and leased until ``now + lease_seconds``;
        None when nothing is due. ``token`` is new per call: the same call sent twice (a client
        retry after a timeout) answers the same claim, never a second one."""

    @abc.abstractmethod
    async def next_due(self) -> float | None:
        """When the earliest queued intake is due (epoch seconds), None when none is queued."""

    @abc.abstractmethod
    async def posted(self, intake_id: str, attempt: int, order_number: str, now: float) -> IntakeRecord:
        """The claim's attempt succeeded: ``posted``, its holds become posted holds at ``now``,
        off the queue. ``Stale`` unless it is ``posting`` at ``attempt``."""

    @abc.abstractmethod
    async def retry(
        self, intake_id: str, attempt: int, error: str, due_at: float, now: float, *, spent: bool = True
    ) -> IntakeRecord:
        """The attempt failed and will be tried again: ``accepted`` again, due at ``due_at``,
        holds kept. ``spent`` False: the ERP was never asked (the gateway's own breaker or call
        budget refused it), so the attempt is given back (``attempts`` - 1). ``Stale`` unless
        it is ``posting`` at ``attempt``."""

    @abc.abstractmethod
    async def give_up(
        self,
        intake_id: str,
        attempt: int | None,
        status: Literal["rejected", "dead_lettered", "cancelled"],
        detail: str,
        now: float,
    ) -> IntakeRecord:
        """Leave the queue with ``status``, releasing the active holds if it had them.
        ``attempt`` given (a worker giving up): only if it is ``posting`` at that attempt.
        None (an operator cancelling): only if no ERP order can exist for it: ``rejected`` (the
        ERP refused it), or ``accepted`` and never sent (no ``posting`` in its history; an
        attempt whose answer was lost or timed out may have made one, and a dead-lettered one
        too: replay it, posting finds that order by its key). One ``cancelled`` already is
        answered as it is. ``Stale`` otherwise; ``KeyError`` when unknown."""

    @abc.abstractmethod
    async def replay(self, intake_id: str, detail: str, now: float, needs: Sequence[LineNeed]) -> IntakeRecord | Short:
        """A ``rejected`` or ``dead_lettered`` intake queued again (due ``now``; ``attempts`` as
        they were, ``replayed_after`` = ``attempts``: the round counts from 0), its lines judged
        on ``needs`` as ``accept`` judges them (its old holds were released when it was given
        up; the units may have been promised since): held anew, or
        ``Short`` and left as it was. An ``accepted``, ``posting`` or ``posted`` one as it is
        (replaying twice posts once; ``needs`` unused). ``Stale`` for ``cancelled``;
        ``KeyError`` when unknown."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once at shutdown."""
