"""A SQLite file several processes share (gunicorn's workers): opened in WAL mode, safely.

Switching a file to WAL needs it to itself for a moment and is refused at once, without the
busy wait, while another process holds it: every worker opening the file at start-up meets
that. ``open_shared`` retries that step briefly; call it on a worker thread, never the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

__all__ = ["SqliteWorker", "open_shared"]

T = TypeVar("T")


def open_shared(path: Path, *statements: str) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit, 10 s busy timeout), after running the
    idempotent ``statements`` (``CREATE TABLE IF NOT EXISTS ...``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    try:
        for attempt in range(100):
            try:
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in statements:
                    conn.execute(statement)
                return conn
            except sqlite3.OperationalError:
                if attempt == 99:
                    raise
                time.sleep(0.02)
    except BaseException:
        conn.close()
        raise
    raise AssertionError("unreachable")  # pragma: no cover


class SqliteWorker:
    """A SQLite file used from one worker thread of its own (SQLite connections are not for
    the event loop): ``connect`` opens it there on first use (``open_shared`` and any schema
    step); ``run`` and ``atomic`` (``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any
    failure: atomic across the processes of one host) carry out one step; ``aclose`` closes it.
    sqlite3 and OS errors reach the caller as they are, for it to name in its own terms."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], thread_name: str) -> None:
        self._open = connect
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    async def run(self, step: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: step(self._connection()))

    async def atomic(self, step: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = step(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def aclose(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)
