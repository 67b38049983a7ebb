"""Count what a redis-py asyncio client actually sends: network writes per Redis node.

One ``send_packed_command`` (a ``writelines`` then ``drain`` on the connection's stream) carries
one command or a whole pipeline for one node, and is answered by one read of the replies: a
round trip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

__all__ = ["RoundTrips", "count_round_trips"]


class RoundTrips:
    """Writes per node ``port`` while counting (``total``: all of them)."""

    def __init__(self) -> None:
        self.by_port: Counter[int] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_port.values())

    def clear(self) -> None:
        self.by_port.clear()


@contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    """``with count_round_trips() as trips: ...``: every write of every asyncio Redis connection
    made inside the block, by the port it went to (connection handshakes included: warm up first)."""
    trips = RoundTrips()
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        port: Any = getattr(self, "port", 0)
        trips.by_port[int(port)] += 1
        await original(self, command, check_health)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", counted)
        yield trips
