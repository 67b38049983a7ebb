"""Adapters of ``IdempotencyStore``: SQLite (one host), Redis (every instance), and both
layered (the host's file, then Redis while it answers). One test suite runs against each."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from erp_backends.sqlite_file import SqliteWorker, open_shared
from gateway.writes.idempotency import Claim, IdempotencyStore, StoredAnswer, StoreUnavailable
from policies.shared_state import SharedState, SharedStateUnavailable

__all__ = ["LayeredIdempotencyStore", "RedisIdempotencyStore", "SqliteIdempotencyStore"]


class SqliteIdempotencyStore(IdempotencyStore):
    """Records in a SQLite file: ``BEGIN IMMEDIATE`` makes each step atomic across the
    processes of one host (gunicorn's workers, ``make run`` without Redis)."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._file = SqliteWorker(lambda: open_shared(self._path, *_SCHEMA), "idempotency")

    async def _atomic(self, step: Any, *args: Any) -> Any:
        try:
            return await self._file.atomic(lambda conn: step(conn, time.time(), *args))
        except (sqlite3.Error, OSError) as exc:  # locked past the timeout, unwritable, a directory...
            raise StoreUnavailable(f"idempotency file {self._path}: {exc}") from exc

    async def claim(self, key: str, fingerprint: str, owner: str, lease_seconds: int) -> Claim:
        result: Claim = await self._atomic(_sqlite_claim, key, fingerprint, owner, lease_seconds)
        return result

    async def complete(self, key: str, owner: str, answer: StoredAnswer, ttl_seconds: int) -> None:
        await self._atomic(_sqlite_complete, key, owner, answer, ttl_seconds)

    async def release(self, key: str, owner: str) -> None:
        await self._atomic(_sqlite_release, key, owner)

    async def aclose(self) -> None:
        await self._file.aclose()


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
    " owner TEXT NOT NULL, state TEXT NOT NULL, expires_at REAL NOT NULL,"
    " status INTEGER, body BLOB, location TEXT)",
    "CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at)",
)


def _sqlite_claim(conn: sqlite3.Connection, now: float, key: str, fingerprint: str, owner: str, lease: int) -> Claim:
    conn.execute("DELETE FROM records WHERE expires_at <= ?", (now,))
    row = conn.execute(
        "SELECT fingerprint, owner, state, expires_at, status, body, location FROM records WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO records (key, fingerprint, owner, state, expires_at) VALUES (?, ?, ?, 'in_progress', ?)",
            (key, fingerprint, owner, now + lease),
        )
        return Claim(state="claimed", fingerprint=fingerprint)
    held_fp, held_owner, state, expires_at, status, body, location = row
    if state == "completed":
        answer = StoredAnswer(status=status, body=bytes(body), location=location)
        return Claim(state="completed", fingerprint=held_fp, answer=answer)
    if held_owner == owner:
        return Claim(state="claimed", fingerprint=held_fp)
    return Claim(state="in_progress", fingerprint=held_fp, retry_after=expires_at - now)


def _sqlite_complete(
    conn: sqlite3.Connection, now: float, key: str, owner: str, answer: StoredAnswer, ttl: int
) -> None:
    conn.execute(
        "UPDATE records SET state = 'completed', expires_at = ?, status = ?, body = ?, location = ?"
        " WHERE key = ? AND owner = ? AND state = 'in_progress'",
        (now + ttl, answer.status, answer.body, answer.location, key, owner),
    )


def _sqlite_release(conn: sqlite3.Connection, now: float, key: str, owner: str) -> None:
    conn.execute("DELETE FROM records WHERE key = ? AND owner = ? AND state = 'in_progress'", (key, owner))


# One key per script call: legal on Redis Cluster. The lease is the key's own expiry, so a
# dead worker's claim vanishes by itself; asking again as the same owner (a command retried
# after a timeout that did run) is a claim, not a conflict.
_CLAIM = """
local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'owner', 'status', 'body', 'location')
if not rec[1] then
  redis.call('HSET', KEYS[1], 'state', 'in_progress', 'fp', ARGV[1], 'owner', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'claimed', ARGV[1]}
end
if rec[1] == 'in_progress' then
  if rec[3] == ARGV[2] then return {'claimed', rec[2]} end
  return {'in_progress', rec[2], redis.call('PTTL', KEYS[1])}
end
return {'completed', rec[2], 0, rec[4], rec[5], rec[6] or ''}
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'in_progress' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'body', ARGV[3], 'location', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'in_progress' then
  redis.call('DEL', KEYS[1])
end
return 1
"""
_SCRIPTS = {"idem-claim": _CLAIM, "idem-complete": _COMPLETE, "idem-release": _RELEASE}


class RedisIdempotencyStore(IdempotencyStore):
    """Records in Redis (the strict ``SharedState``), one hash per key; a failure raises
    ``StoreUnavailable``."""

    def __init__(self, shared: SharedState) -> None:
        self._shared = shared
        for name, source in _SCRIPTS.items():
            shared.register_script(name, source)

    async def _run(self, script: str, key: str, *args: Any) -> Any:
        try:
            return await self._shared.run_script(script, [f"idem:{key}"], args)
        except SharedStateUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def claim(self, key: str, fingerprint: str, owner: str, lease_seconds: int) -> Claim:
        reply = await self._run("idem-claim", key, fingerprint, owner, lease_seconds * 1000)
        state, held_fp = _text(reply[0]), _text(reply[1])
        if state == "claimed":
            return Claim(state="claimed", fingerprint=held_fp)
        if state == "in_progress":
            return Claim(state="in_progress", fingerprint=held_fp, retry_after=max(0, int(reply[2])) / 1000)
        location = _text(reply[5]) or None
        answer = StoredAnswer(status=int(reply[3]), body=bytes(reply[4]), location=location)
        return Claim(state="completed", fingerprint=held_fp, answer=answer)

    async def complete(self, key: str, owner: str, answer: StoredAnswer, ttl_seconds: int) -> None:
        await self._run(
            "idem-complete", key, owner, answer.status, answer.body, answer.location or "", ttl_seconds * 1000
        )

    async def release(self, key: str, owner: str) -> None:
        await self._run("idem-release", key, owner)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LayeredIdempotencyStore(IdempotencyStore):
    """The host's file first, then Redis: a claim needs both (Redis only while it answers).

    The host's file serializes the host's workers, always; Redis serializes instances. While
    Redis is down, attempts are serialized per host only: two instances may then both reach
    the ERP with one key, and the ERP-side check (the key on the ERP document, looked up in
    the same transaction or made unique) decides. Because the file is always asked first, an
    attempt begun during an outage still holds its key on its host after Redis is back.
    A claim is settled in every store that granted it.
    """

    def __init__(self, shared: IdempotencyStore, local: IdempotencyStore) -> None:
        self._shared = shared
        self._local = local
        self._granted_by: dict[str, tuple[IdempotencyStore, ...]] = {}

    async def claim(self, key: str, fingerprint: str, owner: str, lease_seconds: int) -> Claim:
        here = await self._local.claim(key, fingerprint, owner, lease_seconds)
        if here.state != "claimed":
            return here
        try:
            shared = await self._shared.claim(key, fingerprint, owner, lease_seconds)
        except StoreUnavailable:
            self._granted_by[owner] = (self._local,)
            return here
        if shared.state != "claimed":
            await self._local.release(key, owner)
            return shared
        self._granted_by[owner] = (self._shared, self._local)
        return shared

    async def complete(self, key: str, owner: str, answer: StoredAnswer, ttl_seconds: int) -> None:
        await self._settle(owner, lambda store: store.complete(key, owner, answer, ttl_seconds))

    async def release(self, key: str, owner: str) -> None:
        await self._settle(owner, lambda store: store.release(key, owner))

    async def _settle(self, owner: str, step: Callable[[IdempotencyStore], Awaitable[None]]) -> None:
        failed: StoreUnavailable | None = None
        for store in self._granted_by.pop(owner, ()):  # none: no claim of this owner to settle
            try:
                await step(store)
            except StoreUnavailable as exc:  # the others are still settled
                failed = exc
        if failed is not None:
            raise failed

    async def aclose(self) -> None:
        await self._shared.aclose()
        await self._local.aclose()
