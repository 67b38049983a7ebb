"""Circuit breaking: stop calling an ERP that is failing, for every worker at once.

One pybreaker ``CircuitBreaker`` per backend and operation class (reads, writes). pybreaker's
``call()`` is synchronous, so the coroutine is awaited first and its outcome is then
*replayed* through ``breaker.call`` (a function that returns the result or raises the
error): pybreaker counts it and moves between closed, open and half-open exactly as for a
synchronous call, and nothing blocking runs on the event loop. While open, calls fail fast
with ``CircuitOpen`` (a 503 with ``Retry-After``); after ``reset_timeout_seconds`` one trial
call per process goes through (half-open) and its outcome closes or reopens the breaker.

Shared state (a ``LenientState``: a failure is a miss): every state change is written to Redis
(asynchronously), and each process reads the shared state every ``sync_interval_seconds``: an
ERP that is down for one worker is down for all within that interval, and closes for all when
one trial succeeds. Without Redis, each process keeps its own breaker. Only failures of the
ERP count: ``ErpUnavailable`` (unreachable, 5xx) and ``ErpTimeout``. Business answers
(``NotFound``, ``Rejected``), a caller's bad input and the gateway's own bugs (any other
exception) pass through uncounted: one caller sending something that crashes the gateway must
never open the breaker for everybody.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pybreaker

from erp_backends.errors import ErpTimeout, ErpUnavailable
from policies.shared_state import LenientState

__all__ = ["BreakerSettings", "CircuitOpen", "SharedCircuitBreaker"]

log = logging.getLogger("erp_gateway.breaker")
T = TypeVar("T")


class BreakerSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Use circuit breakers at all.
    enabled: bool = True
    #: Consecutive failed ERP calls that open the breaker.
    fail_max: int = 5
    #: Seconds the breaker stays open before one trial call may go through.
    reset_timeout_seconds: float = 10.0
    #: Seconds between reads of the shared breaker state in Redis.
    sync_interval_seconds: float = 0.5


def _is_erp_failure(exc: BaseException, not_failures: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` says the ERP is failing (the only thing a breaker counts)."""
    return isinstance(exc, (ErpUnavailable, ErpTimeout)) and not isinstance(exc, not_failures)


class CircuitOpen(ErpUnavailable):
    """The breaker is open: the ERP is not called at all until ``retry_after`` has passed."""

    code = "erp-circuit-open"


class _SharedState(msgspec.Struct, array_like=True):
    state: str
    since: float
    origin: str


class _Publisher(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: SharedCircuitBreaker) -> None:
        self.owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        self.owner._on_state_change(new.name)


class SharedCircuitBreaker:
    """A pybreaker breaker usable from asyncio, with its state shared through Redis."""

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        shared: LenientState,
        not_failures: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self.settings = settings
        self._shared = shared
        self._key = f"breaker:{name}"
        self._origin = uuid.uuid4().hex
        self._applying_remote = False
        self._trial_running = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._synced_at = 0.0
        self._seen_since = 0.0
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max,
            reset_timeout=settings.reset_timeout_seconds,
            exclude=[lambda exc: not _is_erp_failure(exc, not_failures)],
            listeners=[_Publisher(self)],
            name=name,
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        return str(self.breaker.current_state)

    def refusing_for(self) -> float:
        """Seconds the breaker still refuses every call, as this worker last saw it (0: a call
        goes through, or is the trial call once the reset timeout ran out)."""
        return self._open_remaining() if self.state == "open" else 0.0

    def _open_remaining(self) -> float:
        opened_at = self.breaker._state_storage.opened_at
        if opened_at is None:
            return 0.0
        return max(0.0, opened_at.timestamp() + self.settings.reset_timeout_seconds - time.time())

    async def call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        await self._sync()
        state = self.breaker.current_state
        trial = False
        if state != pybreaker.STATE_CLOSED:
            remaining = self._open_remaining() if state == pybreaker.STATE_OPEN else 0.0
            if remaining > 0 or self._trial_running:
                raise CircuitOpen(
                    f"the ERP is failing; calls are paused (breaker {self.name} is open)",
                    retry_after=remaining or self.settings.reset_timeout_seconds,
                )
            trial = self._trial_running = True
        try:
            try:
                result = await fn()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                failure: BaseException | None = exc
            else:
                failure = None

            def replay() -> T:
                if failure is not None:
                    raise failure
                return result

            try:
                return self.breaker.call(replay)
            except pybreaker.CircuitBreakerError:
                # Another coroutine opened the breaker while this call was under way; the
                # outcome of this call stands as it is.
                if failure is not None:
                    raise failure from None
                return result
        finally:
            if trial:
                self._trial_running = False

    # -- sharing through Redis -------------------------------------------------------------

    def _on_state_change(self, new_state: str) -> None:
        log.warning("circuit breaker %s is now %s", self.name, new_state)
        if self._applying_remote or not self._shared.configured:
            return
        now = time.time()
        self._seen_since = now
        shared = msgspec.json.encode(_SharedState(new_state, now, self._origin))
        try:
            task = asyncio.get_running_loop().create_task(self._shared.set_many([(self._key, shared, None)]))
        except RuntimeError:  # no running loop (state changed outside a request)
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def refresh(self) -> str:
        """The state after reading the shared state (for readiness reports)."""
        await self._sync()
        return self.state

    async def _sync(self) -> None:
        if not self._shared.configured:
            return
        now = time.monotonic()
        if now - self._synced_at < self.settings.sync_interval_seconds:
            return
        self._synced_at = now
        found = await self._shared.get_many([self._key])
        raw = found[0] if found else None
        if raw is None:
            return
        try:
            shared = msgspec.json.decode(raw, type=_SharedState)
        except msgspec.DecodeError:
            return
        if shared.origin == self._origin or shared.since <= self._seen_since:
            return
        self._seen_since = shared.since
        local = self.breaker.current_state
        self._applying_remote = True
        try:
            if shared.state == pybreaker.STATE_OPEN and local != pybreaker.STATE_OPEN:
                self.breaker.open()
                self.breaker._state_storage.opened_at = datetime.fromtimestamp(shared.since, UTC)
            elif shared.state == pybreaker.STATE_CLOSED and local != pybreaker.STATE_CLOSED:
                self.breaker.close()
        finally:
            self._applying_remote = False
