"""Where shadow reads' mismatches are kept for the report: a bounded sample, the newest first.

The port (``MismatchLog``) and its two adapters: a SQLite file every worker of one host shares
(no Redis), and Redis for many instances (one list, trimmed in the same script that adds). One
suite (``tests/routing/test_mismatch_logs.py``) runs against both. A log that cannot be written
loses that sample, never the caller's answer (the metrics still count the mismatch).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import msgspec

from erp_backends.sqlite_file import SqliteWorker, open_shared
from gateway.routing.compare import Difference
from policies.shared_state import SharedState

__all__ = ["Mismatch", "MismatchLog", "RedisMismatchLog", "SqliteMismatchLog"]


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """One shadowed call whose answers differed."""

    at: float
    operation: str
    #: What was asked (SKUs, an order number, a reference), never a customer's contact data.
    subject: str
    primary: str
    shadow: str
    differences: list[Difference]


_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(Mismatch).decode


class MismatchLog(abc.ABC):
    @abc.abstractmethod
    async def add(self, mismatch: Mismatch) -> None:
        """Keep it; beyond ``keep`` entries the oldest go."""

    @abc.abstractmethod
    async def recent(self, limit: int) -> list[Mismatch]:
        """Up to ``limit`` mismatches, the newest first."""

    @abc.abstractmethod
    async def clear(self) -> None:
        """Forget every mismatch (after a fix, to read the report afresh)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what it holds."""


class SqliteMismatchLog(MismatchLog):
    def __init__(self, path: str, keep: int) -> None:
        self._path = Path(path)
        self._keep = keep
        self._file = SqliteWorker(
            lambda: open_shared(
                self._path,
                "CREATE TABLE IF NOT EXISTS mismatches (id INTEGER PRIMARY KEY AUTOINCREMENT, entry BLOB NOT NULL)",
            ),
            "shadow-log",
        )

    async def _call(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        return await self._file.run(lambda conn: conn.execute(sql, args).fetchall())

    async def add(self, mismatch: Mismatch) -> None:
        await self._call("INSERT INTO mismatches (entry) VALUES (?)", _encode(mismatch))
        await self._call("DELETE FROM mismatches WHERE id <= (SELECT MAX(id) FROM mismatches) - ?", self._keep)

    async def recent(self, limit: int) -> list[Mismatch]:
        rows = await self._call("SELECT entry FROM mismatches ORDER BY id DESC LIMIT ?", limit)
        return [_decode(bytes(row[0])) for row in rows]

    async def clear(self) -> None:
        await self._call("DELETE FROM mismatches")

    async def aclose(self) -> None:
        await self._file.aclose()


#: The list's key (``SharedState`` puts its prefix in front); one key: any Cluster slot.
KEY = "shadow:mismatches"
_ADD = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
"""
_RECENT = """
return redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
"""
_CLEAR = """
return redis.call('DEL', KEYS[1])
"""


class RedisMismatchLog(MismatchLog):
    def __init__(self, shared: SharedState, keep: int) -> None:
        self._shared = shared
        self._keep = keep
        for name, source in (("shadow-add", _ADD), ("shadow-recent", _RECENT), ("shadow-clear", _CLEAR)):
            shared.register_script(name, source)

    async def add(self, mismatch: Mismatch) -> None:
        await self._shared.run_script("shadow-add", [KEY], [_encode(mismatch), self._keep])

    async def recent(self, limit: int) -> list[Mismatch]:
        entries = await self._shared.run_script("shadow-recent", [KEY], [limit])
        return [_decode(bytes(entry)) for entry in entries or ()]

    async def clear(self) -> None:
        await self._shared.run_script("shadow-clear", [KEY], [])
