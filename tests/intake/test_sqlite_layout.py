"""The SQLite intake file written by an earlier gateway (layout 1: storefront references unique
across every client, retention counted from acceptance) is migrated on open, its intakes kept
as they were: an order accepted before the upgrade is still found, held and posted."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from gateway.intake.sqlite_store import SCHEMA_VERSION, SqliteIntakeStore
from gateway.intake.store import AlreadySubmitted, Hold, IntakeRecord, IntakeStoreUnavailable, LineNeed, Transition

_V1 = (
    "CREATE TABLE intakes (intake_id TEXT PRIMARY KEY, external_ref TEXT NOT NULL UNIQUE,"
    " key TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL, request BLOB NOT NULL, holds BLOB NOT NULL,"
    " status TEXT NOT NULL, accepted_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " order_number TEXT, last_error TEXT, posted_at REAL, history BLOB NOT NULL, due_at REAL,"
    " lease_token TEXT)",
    "CREATE INDEX intakes_due ON intakes (due_at) WHERE due_at IS NOT NULL",
    "CREATE INDEX intakes_status ON intakes (status, accepted_at)",
    "CREATE TABLE active_holds (sku TEXT NOT NULL, warehouse TEXT NOT NULL,"
    " units INTEGER NOT NULL, PRIMARY KEY (sku, warehouse))",
)


def _v1_file(path: Path, now: float) -> None:
    conn = sqlite3.connect(path)
    for statement in _V1:
        conn.execute(statement)
    holds = msgspec.json.encode((Hold("TEE-NVY-M", "EAST", 2),))
    conn.execute(
        "INSERT INTO intakes VALUES (?, ?, ?, ?, ?, ?, 'accepted', ?, 0, NULL, NULL, NULL, ?, ?, NULL)",
        (
            "in_old",
            "WC-1",
            "shop/k-1",
            "fp",
            b"{}",
            holds,
            now - 60,
            msgspec.json.encode((Transition("accepted", now - 60),)),
            now - 60,
        ),
    )
    conn.execute(
        "INSERT INTO intakes VALUES ('in_done', 'WC-2', 'shop/k-2', 'fp', x'7b7d', '[]', 'posted', ?, 1,"
        " 'SO-9', NULL, ?, ?, NULL, NULL)",
        (now - 120, now - 100, msgspec.json.encode((Transition("posted", now - 100, "SO-9"),))),
    )
    conn.execute("INSERT INTO active_holds VALUES ('TEE-NVY-M', 'EAST', 2)")
    conn.commit()
    conn.close()


async def test_a_layout_1_file_is_migrated_with_its_intakes_holds_and_queue(tmp_path: Path) -> None:
    now = time.time()
    path = tmp_path / "intake.sqlite"
    _v1_file(path, now)
    store = SqliteIntakeStore(str(path), posted_hold_seconds=600)
    try:
        old = await store.get("in_old")
        assert old is not None
        assert (old.status, old.external_ref, old.reference) == ("accepted", "WC-1", "WC-1")
        assert await store.find(reference="WC-1") == old
        assert (await store.ledger(["TEE-NVY-M"], now)).active == {("TEE-NVY-M", "EAST"): 2}
        claimed = await store.claim(now, 30, "t-1")
        assert claimed is not None
        assert claimed.record.intake_id == "in_old"
        # the old reference still refuses its own duplicate; a client-scoped one is new
        need = LineNeed(line=0, sku="TEE-NVY-M", quantity=1, stock=(("EAST", 10),), snapshot_at=now)
        dup = msgspec.structs.replace(old, intake_id="in_dup", key="shop/k-3", ref_key="")
        assert await store.accept(dup, [need], now) == AlreadySubmitted(intake_id="in_old")
        done = await store.get("in_done")
        assert done is not None
        assert (done.status, done.order_number) == ("posted", "SO-9")
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        ended = conn.execute("SELECT ended_at FROM intakes WHERE intake_id = 'in_done'").fetchone()[0]
        assert ended == pytest.approx(now - 100)
    finally:
        conn.close()


async def test_a_file_of_a_newer_layout_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteIntakeStore(str(path), posted_hold_seconds=600)
    try:
        with pytest.raises(IntakeStoreUnavailable, match="newer gateway"):
            await store.get("in_x")
    finally:
        await store.aclose()


async def test_a_layout_2_file_gains_the_replay_count(tmp_path: Path) -> None:
    from gateway.intake import sqlite_store

    path = tmp_path / "intake.sqlite"
    v2_table = sqlite_store._SCHEMA[0].replace(", replayed_after INTEGER NOT NULL DEFAULT 0", "")
    assert v2_table != sqlite_store._SCHEMA[0]
    now = time.time()
    conn = sqlite3.connect(path)
    conn.execute(v2_table)
    conn.execute(
        "INSERT INTO intakes (intake_id, external_ref, key, fingerprint, request, holds, status, accepted_at,"
        " attempts, history, ref_key, ended_at) VALUES ('in_v2', 'WC-9', 'shop/k', 'fp', x'7b7d', '[]',"
        " 'rejected', ?, 4, ?, 'shop/WC-9', ?)",
        (now - 10, msgspec.json.encode((Transition("rejected", now - 5, "refused"),)), now - 5),
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = SqliteIntakeStore(str(path), posted_hold_seconds=600)
    try:
        old = await store.get("in_v2")
        assert old is not None
        assert (old.attempts, old.replayed_after, old.round_attempts) == (4, 0, 4)
        need = LineNeed(line=0, sku="TEE-NVY-M", quantity=1, stock=(("EAST", 10),), snapshot_at=now)
        replayed = await store.replay("in_v2", "fixed", now, [need])
        assert isinstance(replayed, IntakeRecord)
        assert (replayed.attempts, replayed.round_attempts) == (4, 0)
    finally:
        await store.aclose()
