"""A SQLite file several processes share (gunicorn's workers): opened in WAL mode, safely.

Switching a file to WAL needs it to itself for a moment and is refused at once, without the
busy wait, while another process holds it: every worker opening the file at start-up meets
that. ``open_shared`` retries that step briefly; call it on a worker thread, never the loop.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["open_shared"]


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
