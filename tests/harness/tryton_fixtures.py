"""Pytest helpers around the Tryton harness: one server per session, golden data on demand.

Tests that write to Tryton (return complaints, sales for order intakes) leave it "dirty";
``clean_tryton`` resets the server (stop, copy the golden file back or re-create the PostgreSQL
database from its golden template, start: ~1 s) only when the previous test wrote, so read-only
tests cost nothing and every test still starts from the dataset, as with ``sample``.
"""

from __future__ import annotations

import sqlite3

from erp_backends.tryton import TrytonSettings
from tests.harness.tryton import DATABASE, TrytonServer, password_file

__all__ = ["clean_tryton", "tryton_settings", "tryton_written"]

_WRITES = (
    "SELECT (SELECT COUNT(*) FROM sale_complaint) + (SELECT COUNT(*) FROM sale_sale WHERE idempotency_key IS NOT NULL)"
)


def tryton_written(server: TrytonServer) -> bool:
    """Whether the server's data differs from the golden copy in a way tests see (returns filed,
    orders created by the gateway: sales carrying an idempotency key).

    Reads the live database directly: the SQLite file (read-only), or PostgreSQL through psql.
    No login, a few milliseconds.
    """
    if server.database_kind == "postgresql":
        return server.postgres.psql(_WRITES, database=server.database) != "0"
    path = server.workdir / f"{DATABASE}.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        (count,) = conn.execute(_WRITES).fetchone()
    finally:
        conn.close()
    return bool(count)


def clean_tryton(server: TrytonServer) -> TrytonServer:
    """The server with golden data: started if a test stopped it, reset if a test wrote."""
    if not server.running:
        server.start()  # start() copies the golden file back too
    elif tryton_written(server):
        server.reset()
    return server


def tryton_settings(server: TrytonServer) -> TrytonSettings:
    """Adapter settings pointing at the harness server (password from its secret file)."""
    return TrytonSettings(
        url=server.url, database=server.database, user=server.user, password_file=str(password_file())
    )
