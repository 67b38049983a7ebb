"""``IntakeStore`` in a SQLite file: every step one ``BEGIN IMMEDIATE`` transaction, atomic
across the processes of one host (gunicorn's workers; ``make run`` serves intake with no Redis).

Tables: ``intakes`` (one row per intake; ``due_at`` set while it is queued, ``lease_token``
naming the claim that holds it), ``active_holds`` (units per SKU and warehouse), ``posted_holds``
(per intake, SKU and warehouse, with ``posted_at``), ``claim_tokens`` (a claim sent twice).
An intake that ended longer than ``retention_seconds`` ago (``ended_at``) is deleted by the next
accept, with its key and reference. References are unique per client (``ref_key``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from contracts.v1.intake import IntakeStatus
from erp_backends.sqlite_file import SqliteWorker, open_shared
from gateway.intake.store import (
    ACTIVE,
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
    Outcome,
    Replayed,
    Short,
    ShortLine,
    Stale,
    Transition,
)

__all__ = ["SqliteIntakeStore", "allocate", "cancellable"]

T = TypeVar("T")

#: The layout's version (``PRAGMA user_version``); a file of an older one is migrated on open.
SCHEMA_VERSION = 3
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS intakes (intake_id TEXT PRIMARY KEY, external_ref TEXT NOT NULL,"
    " key TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL, request BLOB NOT NULL, holds BLOB NOT NULL,"
    " status TEXT NOT NULL, accepted_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " order_number TEXT, last_error TEXT, posted_at REAL, history BLOB NOT NULL, due_at REAL,"
    " lease_token TEXT, ref_key TEXT NOT NULL UNIQUE, ended_at REAL, replayed_after INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS intakes_due ON intakes (due_at) WHERE due_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS intakes_status ON intakes (status, accepted_at)",
    "CREATE INDEX IF NOT EXISTS intakes_ended ON intakes (ended_at) WHERE ended_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS active_holds (sku TEXT NOT NULL, warehouse TEXT NOT NULL,"
    " units INTEGER NOT NULL, PRIMARY KEY (sku, warehouse))",
    "CREATE TABLE IF NOT EXISTS posted_holds (intake_id TEXT NOT NULL, sku TEXT NOT NULL,"
    " warehouse TEXT NOT NULL, units INTEGER NOT NULL, posted_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS posted_holds_sku ON posted_holds (sku, warehouse, posted_at)",
    "CREATE TABLE IF NOT EXISTS claim_tokens (token TEXT PRIMARY KEY, intake_id TEXT NOT NULL,"
    " lease_until REAL NOT NULL)",
)
#: Version 1 (no ``ref_key``: references unique across clients; no ``ended_at``: retention by
#: ``accepted_at``) to 2: the table rebuilt (SQLite cannot drop a UNIQUE constraint), each old
#: reference kept as its own key (they were unique anyway), ended ones ended at their last step.
_FROM_V1 = (
    "ALTER TABLE intakes RENAME TO intakes_v1",
    "DROP INDEX IF EXISTS intakes_due",
    "DROP INDEX IF EXISTS intakes_status",
    *_SCHEMA,
    "INSERT INTO intakes (intake_id, external_ref, key, fingerprint, request, holds, status, accepted_at,"
    " attempts, order_number, last_error, posted_at, history, due_at, lease_token, ref_key, ended_at)"
    " SELECT intake_id, external_ref, key, fingerprint, request, holds, status,"
    " accepted_at, attempts, order_number, last_error, posted_at, history, due_at, lease_token,"
    " external_ref, CASE WHEN status IN ('posted', 'cancelled', 'rejected', 'dead_lettered')"
    " THEN COALESCE(posted_at, accepted_at) END FROM intakes_v1",
    "DROP TABLE intakes_v1",
)
#: Version 2 to 3: ``replayed_after`` (attempt numbers no longer start again at a replay).
_FROM_V2 = ("ALTER TABLE intakes ADD COLUMN replayed_after INTEGER NOT NULL DEFAULT 0",)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to ``SCHEMA_VERSION``, once, whichever process opens it first."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = {row[1] for row in conn.execute("PRAGMA table_info(intakes)")}
        if version < SCHEMA_VERSION:
            if not columns:
                steps: tuple[str, ...] = _SCHEMA
            elif "ref_key" not in columns:
                steps = _FROM_V1
            else:
                steps = _FROM_V2 if "replayed_after" not in columns else ()
            for statement in (*steps, *_SCHEMA):  # then any index or table a step left out
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"written by a newer gateway (layout {version}, this one knows {SCHEMA_VERSION})"
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_HOLDS = msgspec.json.Decoder(tuple[Hold, ...])
_HISTORY = msgspec.json.Decoder(tuple[Transition, ...])
_encode = msgspec.json.encode
_COLUMNS = (
    "intake_id, external_ref, key, fingerprint, request, holds, status, accepted_at, attempts,"
    " order_number, last_error, posted_at, history, ref_key, replayed_after"
)


def allocate(needs: Sequence[LineNeed], held: Callable[[str, str, float], int]) -> tuple[list[Hold], list[ShortLine]]:
    """The holds for ``needs``, one per SKU and warehouse, and the lines that are short. A line
    may have what its candidate warehouses have free together (stock less holds; a warehouse
    below zero counts against the others), taken from them in order; a later line of the same
    SKU sees what earlier ones took, even a short one's. ``held(sku, warehouse, snapshot_at)``:
    units already held."""
    taken: dict[tuple[str, str], int] = {}
    short: list[ShortLine] = []
    for need in needs:
        frees = [
            (warehouse, stock - held(need.sku, warehouse, need.snapshot_at) - taken.get((need.sku, warehouse), 0))
            for warehouse, stock in need.stock
        ]
        # the pool: a warehouse below zero counts against the others (an ERP may ship a whole
        # order from one warehouse, whatever was held where)
        wanted = left = min(need.quantity, max(0, sum(free for _, free in frees)))
        for warehouse, free in frees:
            take = min(max(free, 0), left)
            if take:
                taken[(need.sku, warehouse)] = taken.get((need.sku, warehouse), 0) + take
                left -= take
        if wanted < need.quantity:
            short.append(ShortLine(line=need.line, sku=need.sku, available=wanted))
    return [Hold(sku, warehouse, units) for (sku, warehouse), units in taken.items()], short


class SqliteIntakeStore(IntakeStore):
    def __init__(self, path: str, posted_hold_seconds: float, retention_seconds: float = 30 * 86_400) -> None:
        self._path = Path(path)
        self._keep = posted_hold_seconds
        self._retention = retention_seconds
        self._file = SqliteWorker(self._connect, "intake")

    def _connect(self) -> sqlite3.Connection:
        conn = open_shared(self._path)
        try:
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _atomic(self, step: Callable[..., T], *args: Any) -> T:
        try:
            return await self._file.atomic(lambda conn: step(conn, *args))
        except (sqlite3.Error, OSError) as exc:
            raise IntakeStoreUnavailable(f"intake file {self._path}: {exc}") from exc

    # -- steps ---------------------------------------------------------------------------

    async def accept(self, draft: IntakeRecord, needs: Sequence[LineNeed], now: float) -> Outcome:
        return await self._atomic(self._accept, draft, needs, now)

    def _accept(self, conn: sqlite3.Connection, draft: IntakeRecord, needs: Sequence[LineNeed], now: float) -> Outcome:
        known = _one(conn, "key = ?", draft.key)
        if known is not None:
            if known.intake_id == draft.intake_id:
                return Accepted(record=known)
            return Replayed(record=known) if known.fingerprint == draft.fingerprint else KeyReused()
        other = _one(conn, "ref_key = ?", draft.reference)
        if other is not None:
            return AlreadySubmitted(intake_id=other.intake_id)
        conn.execute(  # intakes that ended longer ago than the retention, with their key and reference
            "DELETE FROM intakes WHERE ended_at < ?", (now - self._retention,)
        )
        ledger = self._ledger(conn, sorted({need.sku for need in needs}), now)
        holds, short = allocate(needs, ledger.held)
        if short:
            return Short(lines=tuple(short))
        record = msgspec.structs.replace(
            draft,
            holds=tuple(holds),
            status="accepted",
            attempts=0,
            history=(Transition("accepted", now),),
            ref_key=draft.reference,
        )
        conn.execute(
            f"INSERT INTO intakes ({_COLUMNS}, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (*_row(record), now),
        )
        _add_active(conn, record.holds, +1)
        return Accepted(record=record)

    async def get(self, intake_id: str) -> IntakeRecord | None:
        return await self._atomic(_one, "intake_id = ?", intake_id)

    async def find(self, *, key: str | None = None, reference: str | None = None) -> IntakeRecord | None:
        if key is not None:
            return await self._atomic(_one, "key = ?", key)
        if reference is not None:
            return await self._atomic(_one, "ref_key = ?", reference)
        return None

    async def list(self, status: IntakeStatus | None, limit: int) -> list[IntakeRecord]:
        def step(conn: sqlite3.Connection) -> list[IntakeRecord]:
            where, args = ("WHERE status = ?", (status,)) if status else ("", ())
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM intakes {where} ORDER BY accepted_at DESC, intake_id DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            )
            return [_record(row) for row in rows]

        return await self._atomic(step)

    async def ledger(self, skus: Sequence[str], now: float) -> HoldLedger:
        return await self._atomic(self._ledger, list(skus), now)

    def _ledger(self, conn: sqlite3.Connection, skus: Sequence[str], now: float) -> HoldLedger:
        conn.execute("DELETE FROM posted_holds WHERE posted_at < ?", (now - self._keep,))
        marks = ",".join("?" * len(skus))
        active = {
            (sku, wh): units
            for sku, wh, units in conn.execute(
                f"SELECT sku, warehouse, units FROM active_holds WHERE sku IN ({marks}) AND units > 0",  # noqa: S608
                tuple(skus),
            )
        }
        posted: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for sku, wh, at, units in conn.execute(
            f"SELECT sku, warehouse, posted_at, units FROM posted_holds WHERE sku IN ({marks})",  # noqa: S608
            tuple(skus),
        ):
            posted.setdefault((sku, wh), []).append((at, units))
        return HoldLedger(active=active, posted={place: tuple(items) for place, items in posted.items()})

    async def claim(self, now: float, lease_seconds: float, token: str) -> Claimed | None:
        return await self._atomic(self._claim, now, lease_seconds, token)

    def _claim(self, conn: sqlite3.Connection, now: float, lease: float, token: str) -> Claimed | None:
        conn.execute("DELETE FROM claim_tokens WHERE lease_until < ?", (now,))
        again = conn.execute("SELECT intake_id, lease_until FROM claim_tokens WHERE token = ?", (token,)).fetchone()
        if again is not None:
            record = _one(conn, "intake_id = ?", again[0])
            return Claimed(record=record, lease_until=again[1]) if record is not None else None
        row = conn.execute(
            "SELECT intake_id FROM intakes WHERE due_at IS NOT NULL AND due_at <= ?"
            " ORDER BY due_at, accepted_at LIMIT 1",
            (now,),
        ).fetchone()
        if row is None:
            return None
        record = _one(conn, "intake_id = ?", row[0])
        assert record is not None
        history = record.history if record.status == "posting" else (*record.history, Transition("posting", now))
        record = msgspec.structs.replace(record, status="posting", attempts=record.attempts + 1, history=history)
        lease_until = now + lease
        conn.execute(
            "UPDATE intakes SET status = 'posting', attempts = ?, history = ?, due_at = ?, lease_token = ?"
            " WHERE intake_id = ?",
            (record.attempts, _encode(record.history), lease_until, token, record.intake_id),
        )
        conn.execute("INSERT INTO claim_tokens VALUES (?, ?, ?)", (token, record.intake_id, lease_until))
        return Claimed(record=record, lease_until=lease_until)

    async def next_due(self) -> float | None:
        def step(conn: sqlite3.Connection) -> float | None:
            row = conn.execute("SELECT MIN(due_at) FROM intakes WHERE due_at IS NOT NULL").fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._atomic(step)

    async def posted(self, intake_id: str, attempt: int, order_number: str, now: float) -> IntakeRecord:
        def step(conn: sqlite3.Connection) -> IntakeRecord:
            record = _claimed(conn, intake_id, attempt, "posted")
            if record.status == "posted":
                return record
            record = msgspec.structs.replace(
                record,
                status="posted",
                order_number=order_number,
                posted_at=now,
                last_error=None,
                history=(*record.history, Transition("posted", now, order_number)),
            )
            _add_active(conn, record.holds, -1)
            conn.executemany(
                "INSERT INTO posted_holds VALUES (?, ?, ?, ?, ?)",
                [(intake_id, h.sku, h.warehouse, h.quantity, now) for h in record.holds],
            )
            _update(conn, record, due_at=None)
            return record

        return await self._atomic(step)

    async def retry(
        self, intake_id: str, attempt: int, error: str, due_at: float, now: float, *, spent: bool = True
    ) -> IntakeRecord:
        def step(conn: sqlite3.Connection) -> IntakeRecord:
            found = _one(conn, "intake_id = ?", intake_id)
            if found is not None and not spent and (found.status, found.attempts) == ("accepted", attempt - 1):
                return found  # this step, resent: the attempt was given back already
            record = _claimed(conn, intake_id, attempt, "accepted")
            if record.status == "accepted":
                return record
            record = msgspec.structs.replace(
                record,
                status="accepted",
                attempts=record.attempts if spent else record.attempts - 1,
                last_error=error,
                history=(*record.history, Transition("accepted", now, error)),
            )
            _update(conn, record, due_at=due_at)
            return record

        return await self._atomic(step)

    async def give_up(
        self,
        intake_id: str,
        attempt: int | None,
        status: Literal["rejected", "dead_lettered", "cancelled"],
        detail: str,
        now: float,
    ) -> IntakeRecord:
        def step(conn: sqlite3.Connection) -> IntakeRecord:
            if attempt is not None:
                record = _claimed(conn, intake_id, attempt, status)
                if record.status == status:
                    return record
            else:
                found = _one(conn, "intake_id = ?", intake_id)
                if found is None:
                    raise KeyError(intake_id)
                if found.status == status:  # cancelled already: this very step sent twice, or twice asked
                    return found
                if not cancellable(found):
                    raise Stale(found)
                record = found
            if record.status in ACTIVE:
                _add_active(conn, record.holds, -1)
            record = msgspec.structs.replace(
                record,
                status=status,
                last_error=detail if status != "cancelled" else record.last_error,
                history=(*record.history, Transition(status, now, detail)),
            )
            _update(conn, record, due_at=None)
            return record

        return await self._atomic(step)

    async def replay(self, intake_id: str, detail: str, now: float, needs: Sequence[LineNeed]) -> IntakeRecord | Short:
        def step(conn: sqlite3.Connection) -> IntakeRecord | Short:
            record = _one(conn, "intake_id = ?", intake_id)
            if record is None:
                raise KeyError(intake_id)
            if record.status == "cancelled":
                raise Stale(record)
            if record.status not in ("rejected", "dead_lettered"):
                return record
            ledger = self._ledger(conn, sorted({need.sku for need in needs}), now)
            holds, short = allocate(needs, ledger.held)
            if short:
                return Short(lines=tuple(short))
            record = msgspec.structs.replace(
                record,
                status="accepted",
                replayed_after=record.attempts,
                holds=tuple(holds),
                history=(*record.history, Transition("accepted", now, detail)),
            )
            _add_active(conn, record.holds, +1)
            _update(conn, record, due_at=now)
            return record

        return await self._atomic(step)

    async def aclose(self) -> None:
        await self._file.aclose()


# -- rows --------------------------------------------------------------------------------


def _row(record: IntakeRecord) -> tuple[Any, ...]:
    return (
        record.intake_id,
        record.external_ref,
        record.key,
        record.fingerprint,
        record.request,
        _encode(record.holds),
        record.status,
        record.accepted_at,
        record.attempts,
        record.order_number,
        record.last_error,
        record.posted_at,
        _encode(record.history),
        record.reference,
        record.replayed_after,
    )


def _record(row: Sequence[Any]) -> IntakeRecord:
    return IntakeRecord(
        intake_id=row[0],
        external_ref=row[1],
        key=row[2],
        fingerprint=row[3],
        request=bytes(row[4]),
        holds=_HOLDS.decode(row[5]),
        status=row[6],
        accepted_at=row[7],
        attempts=row[8],
        order_number=row[9],
        last_error=row[10],
        posted_at=row[11],
        history=_HISTORY.decode(row[12]),
        ref_key=row[13],
        replayed_after=row[14],
    )


def cancellable(record: IntakeRecord) -> bool:
    """No ERP order can exist for it: refused by the ERP, or never sent (a sent attempt whose
    answer was lost or timed out may have made one, which only posting can find by its key)."""
    never_sent = all(step.status != "posting" for step in record.history)
    return record.status == "rejected" or (record.status == "accepted" and never_sent)


def _one(conn: sqlite3.Connection, where: str, value: str) -> IntakeRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM intakes WHERE {where}", (value,)).fetchone()  # noqa: S608
    return None if row is None else _record(row)


def _claimed(conn: sqlite3.Connection, intake_id: str, attempt: int, target: str) -> IntakeRecord:
    """The intake if this attempt still holds it (``posting`` at ``attempt``), or if that very
    attempt already moved it to ``target`` (a step sent twice); ``Stale`` otherwise."""
    record = _one(conn, "intake_id = ?", intake_id)
    if record is None:
        raise KeyError(intake_id)
    if record.attempts == attempt and record.status in ("posting", target):
        return record
    raise Stale(record)


def _update(conn: sqlite3.Connection, record: IntakeRecord, *, due_at: float | None) -> None:
    conn.execute(
        "UPDATE intakes SET status = ?, attempts = ?, order_number = ?, last_error = ?, posted_at = ?,"
        " history = ?, due_at = ?, lease_token = NULL, holds = ?, ended_at = ?, replayed_after = ?"
        " WHERE intake_id = ?",
        (
            record.status,
            record.attempts,
            record.order_number,
            record.last_error,
            record.posted_at,
            _encode(record.history),
            due_at,
            _encode(record.holds),
            record.history[-1].at if record.status not in ACTIVE else None,  # ended: retention runs from then
            record.replayed_after,
            record.intake_id,
        ),
    )


def _add_active(conn: sqlite3.Connection, holds: Sequence[Hold], sign: int) -> None:
    conn.executemany(
        "INSERT INTO active_holds VALUES (?, ?, ?) ON CONFLICT (sku, warehouse) DO UPDATE SET units = units + ?",
        [(h.sku, h.warehouse, sign * h.quantity, sign * h.quantity) for h in holds],
    )
    negative = conn.execute("SELECT sku, warehouse, units FROM active_holds WHERE units < 0").fetchone()
    if negative is not None:  # a release without its hold: a bug, never silently absorbed
        raise AssertionError(f"active hold below zero: {negative}")
