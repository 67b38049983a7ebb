"""``SharedState`` on Redis: one client from ``connect``, every redis-py failure translated at
this one edge, and a back-off window after a failure so no call waits on a dead socket.

Every failure class is caught: ``RedisError`` (connection, timeout, response errors, and the
cluster errors that derive from it), ``RedisClusterException`` (``SlotNotCoveredError`` and
friends do not derive from ``RedisError``), ``OSError`` and the built-in ``TimeoutError``.
After a failure the store is "down" for ``retry_seconds`` (calls fail at once), then is asked
again by itself; transitions are logged once and shown in /readyz.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError

from gateway.shared_state.connect import RedisClient, RedisSettings, close, connect, multi_get
from policies.shared_state import LenientState, SharedState, SharedStateUnavailable, Write

__all__ = ["REDIS_FAILURES", "RedisSharedState", "client_of", "open_shared_state"]

log = logging.getLogger("erp_gateway.redis")
T = TypeVar("T")

#: Everything redis-py (standalone, Sentinel, Cluster) raises when Redis cannot answer.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)


class RedisSharedState(SharedState):
    """The strict port on one Redis client; ``LenientState(store)`` for the lenient one."""

    def __init__(self, client: RedisClient, settings: RedisSettings) -> None:
        self.client = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self._scripts: dict[str, AsyncScript] = {}
        self._read_many = multi_get(client)
        self._down_until = 0.0
        self._was_down = False
        self.last_error: str | None = None
        self._slot_map = asyncio.Lock()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def _run(self, operation: Callable[[], Awaitable[T]]) -> T:
        if not self.available:
            raise SharedStateUnavailable(f"Redis: {self.last_error or 'unavailable'}")
        try:
            await self._learn_slot_map()
            result = await operation()
        except REDIS_FAILURES as exc:
            self._down_until = time.monotonic() + self.settings.retry_seconds
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self._was_down:
                self._was_down = True
                log.warning("Redis unavailable, serving from in-process state: %s", self.last_error)
            raise SharedStateUnavailable(f"Redis: {self.last_error}") from exc
        if self._was_down:
            self._was_down = False
            self.last_error = None
            log.warning("Redis is back; shared state resumes")
        return result

    async def _learn_slot_map(self) -> None:
        """Cluster: read the slot map once, by one caller, before any command is sent.

        redis-py's async ``RedisCluster`` (8.1) breaks commands sent concurrently to a client
        that has not read the slot map yet (first use, or after it closed itself on a
        connection error during a failover): they fail with ``ConnectionError`` or even an
        ``AttributeError`` from a connection closed under them (20 concurrent first INCRs: 10
        failed). Callers wait here instead, and the map is read once."""
        client = self.client
        if isinstance(client, RedisCluster) and client._initialize:
            async with self._slot_map:
                if client._initialize:
                    await client.initialize()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        names = [self.prefix + key for key in keys]
        values: list[Any] = await self._run(lambda: self._read_many(names))
        return values

    async def _pipelined(self, writes: Sequence[Write], **options: Any) -> list[Any]:
        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value, ttl_ms in writes:
                    pipe.set(self.prefix + key, value, px=ttl_ms, **options)
                return await pipe.execute()

        return await self._run(run)

    async def set_many(self, writes: Sequence[Write]) -> None:
        if writes:
            await self._pipelined(writes)

    async def swap_many(self, writes: Sequence[Write]) -> list[bytes | None]:
        return await self._pipelined(writes, get=True) if writes else []

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        names = [self.prefix + key for key in keys]
        return int(await self._run(lambda: self.client.delete(*names)))

    def register_script(self, name: str, source: str) -> None:
        self._scripts[name] = self.client.register_script(source)

    async def run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts[name]
        names = [self.prefix + key for key in keys]
        return await self._run(lambda: script(keys=names, args=list(args)))

    async def ping(self) -> None:
        self._down_until = 0.0
        await self._run(self.client.ping)

    async def aclose(self) -> None:
        await close(self.client)


def open_shared_state(settings: RedisSettings) -> LenientState:
    """The lenient shared state the settings describe (``.strict``: the strict one; None inside
    without a URL). The client is also at ``.strict.client``, for instrumentation."""
    client = connect(settings)
    return LenientState(RedisSharedState(client, settings) if client is not None else None)


def client_of(state: LenientState) -> RedisClient | None:
    """The Redis client behind ``state`` (for instrumentation), if it is Redis."""
    return state.strict.client if isinstance(state.strict, RedisSharedState) else None
