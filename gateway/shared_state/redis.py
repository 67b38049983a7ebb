"""``SharedState`` on Redis: one client from ``connect``, every redis-py failure translated at
this one edge, and a back-off window after a failure so no call waits on a dead socket.

Every failure class is caught: ``RedisError`` (connection, timeout, response errors, and the
cluster errors that derive from it), ``RedisClusterException`` (``SlotNotCoveredError`` and
friends do not derive from ``RedisError``), ``OSError`` and the built-in ``TimeoutError``; and
any other exception raised inside the client (redis-py's async Cluster client raises
``AttributeError`` from a connection closed under it during a failover), logged with its
traceback. Each call has one deadline, ``DEADLINE_TIMEOUTS`` x ``timeout_seconds``, over all
the client's own retries and slot-map reads (on a hung Cluster they took 0.9 to 15 s). After a
failure the store is "down" for ``retry_seconds`` (calls fail at once), then is asked
again by itself; transitions are logged once and shown in /readyz.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from gateway.shared_state.connect import RedisClient, RedisSettings, close, connect, multi_get
from policies.shared_state import LenientState, SharedState, SharedStateUnavailable, Write

__all__ = ["REDIS_FAILURES", "RedisSharedState", "client_of", "open_shared_state"]

log = logging.getLogger("erp_gateway.redis")
T = TypeVar("T")

#: Everything redis-py (standalone, Sentinel, Cluster) raises when Redis cannot answer.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)

#: A call's deadline in socket timeouts: a retry after a broken connection, a slot-map read, a
#: ``SCRIPT LOAD`` after ``NOSCRIPT`` fit; a hung server does not hold the caller longer.
DEADLINE_TIMEOUTS = 4


class RedisSharedState(SharedState):
    """The strict port on one Redis client; ``LenientState(store)`` for the lenient one."""

    def __init__(self, client: RedisClient, settings: RedisSettings) -> None:
        self.client = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self._scripts: dict[str, tuple[str, str]] = {}  # name: (source, sha1)
        self._script_loads: defaultdict[str, int] = defaultdict(int)  # name: SCRIPT LOADs so far
        self._script_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
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
            async with asyncio.timeout(DEADLINE_TIMEOUTS * self.settings.timeout_seconds):
                await self._learn_slot_map()
                result = await operation()
        except REDIS_FAILURES as exc:
            raise self._failed(exc) from exc
        except Exception as exc:  # a redis-py bug under failover, not the caller's: Redis is unusable
            log.error("Redis client raised %s; counted as Redis unavailable", type(exc).__name__, exc_info=True)
            raise self._failed(exc) from exc
        if self._was_down:
            self._was_down = False
            self.last_error = None
            log.warning("Redis is back; shared state resumes")
        return result

    def _failed(self, exc: BaseException) -> SharedStateUnavailable:
        self._down_until = time.monotonic() + self.settings.retry_seconds
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not self._was_down:
            self._was_down = True
            log.warning("Redis unavailable, serving from in-process state: %s", self.last_error)
        return SharedStateUnavailable(f"Redis: {self.last_error}")

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
        self._scripts[name] = (source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())

    async def run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``EVALSHA``; after ``NOSCRIPT`` (a new server, a promoted replica: the script cache is
        not replicated) one ``SCRIPT LOAD`` for all the callers that got it at once, then again.

        Not redis-py's ``Script``: each caller that gets ``NOSCRIPT`` sends its own ``SCRIPT
        LOAD``, which on Cluster goes to every primary; 50 concurrent first calls made 150 new
        connections at once, and redis-py's async cluster client, closing a node's connections
        after one of them failed, broke the others mid-handshake (``AttributeError``)."""
        source, sha = self._scripts[name]
        names = [self.prefix + key for key in keys]

        async def run() -> Any:
            loads = self._script_loads[name]
            try:
                return await self.client.evalsha(sha, len(names), *names, *args)
            except NoScriptError:
                await self._load(name, source, loads)
                return await self.client.evalsha(sha, len(names), *names, *args)

        return await self._run(run)

    async def run_script_many(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """One pipeline of ``EVALSHA`` (per node on Cluster); the runs that got ``NOSCRIPT`` are
        sent again after one ``SCRIPT LOAD`` (see ``run_script``)."""
        if not calls:
            return []
        source, sha = self._scripts[name]
        named = [([self.prefix + key for key in keys], list(args)) for keys, args in calls]

        async def send(indexes: list[int]) -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for index in indexes:
                    keys, args = named[index]
                    # not ``pipe.evalsha``: redis-py's cluster pipeline refuses it by name (a
                    # script may span slots); each of these names one key, which routes it
                    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
                return await pipe.execute(raise_on_error=False)

        async def run() -> list[Any]:
            loads = self._script_loads[name]
            answers = await send(list(range(len(named))))
            missing = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
            if missing:
                await self._load(name, source, loads)
                for index, answer in zip(missing, await send(missing), strict=True):
                    answers[index] = answer
            for answer in answers:
                if isinstance(answer, Exception):
                    raise answer
            return answers

        return await self._run(run)

    async def _load(self, name: str, source: str, loads: int) -> None:
        """``SCRIPT LOAD`` once for every caller that saw ``NOSCRIPT`` since ``loads`` loads."""
        async with self._script_locks[name]:
            if self._script_loads[name] == loads:  # nobody loaded it since this call began
                await self.client.script_load(source)
                self._script_loads[name] += 1

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
