"""The order in which policies wrap an ERP backend call, stated once.

    route
      -> caching          reads answered from the two-tier cache; only misses go on
      -> start-up guard   the adapter started once per worker before its first call
      -> retry            idempotent reads only (``erp_backends.operations``), jittered backoff
      -> circuit breaker  fail fast while the ERP is down (reads and writes apart, shared)
      -> call budget      calls/second and in-flight cap; wait briefly, then shed with 503
      -> timeout          per operation class (read, write)
      -> observation      every call that reaches the adapter reported (metrics, spans)
      -> the adapter      (as the composition root gave it: tests may wrap it, e.g. faults)

Each backend gets a chain of its own, named after it: breakers ``<name>:reads`` and
``<name>:writes``, its own call budget, its observation label, its cache.

Before its first call a worker starts the adapter once (login, reference data: ``start``),
through the breaker and under its own ``start_seconds`` timeout, never a request's: a
healthy ERP that takes a second to log in must not fail (or open the breaker for) reads.

Why this order: a cache hit costs no ERP budget and is served even while the breaker is
open (stale-if-error sits in the cache, outside the breaker); a retry is a new call, so it
passes the breaker and the budget again; an open breaker never consumes budget; the budget
is taken before the clock of the timeout starts, so waiting for budget is not an ERP timeout;
observation is innermost, so only calls that reach the ERP are measured, each attempt apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgspec

from erp_backends.invocation import Invocation
from erp_backends.port import CallContext, ErpBackend
from erp_backends.wrapping import WrappingBackend
from policies.caching import CacheSettings, CachingBackend
from policies.call_budget import CallBudget, CallBudgetExhausted, CallBudgetSettings
from policies.circuit_breaking import BreakerSettings, CircuitOpen, SharedCircuitBreaker
from policies.observed import ErpCallObserver, ObservedBackend
from policies.retrying import RetrySettings, retrying
from policies.shared_state import LenientState
from policies.timeouts import TimeoutSettings, with_timeout

__all__ = ["GuardedBackend", "PolicyChain", "PolicySettings", "wrap_backend"]

T = TypeVar("T")


class PolicySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    erp_limits: CallBudgetSettings = msgspec.field(default_factory=CallBudgetSettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)
    #: Worker processes serving this chain's backend on one host (``ERPGW_SERVER__WORKERS``).
    workers: int = 1


class GuardedBackend(WrappingBackend):
    """Retry (reads only), breaker, budget and timeout around every call of ``inner``."""

    def __init__(self, inner: ErpBackend, settings: PolicySettings, redis: LenientState) -> None:
        super().__init__(inner)
        self.settings = settings
        self.budget = CallBudget(settings.erp_limits)
        self.breakers = {
            # Shedding by the call budget is the gateway protecting the ERP, not an ERP failure.
            kind: SharedCircuitBreaker(
                f"{inner.name}:{kind}", settings.breaker, redis, not_failures=(CallBudgetExhausted,)
            )
            for kind in ("reads", "writes")
        }
        self._started = False
        self._starting: asyncio.Task[None] | None = None

    async def start(self, ctx: CallContext) -> None:
        """Start the adapter once per worker; concurrent callers share one attempt, a failed
        attempt is tried again by the next caller. A caller that gives up does not cancel it."""
        if self._started:
            return
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start(ctx))
        task = self._starting
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._starting is task:
                self._starting = None
                self._started = not task.cancelled() and task.exception() is None

    async def _start(self, ctx: CallContext) -> None:
        seconds = self.settings.timeouts.start_seconds

        async def timed() -> None:
            await with_timeout(lambda: self.inner.start(ctx), seconds, "the start-up login")

        if self.settings.breaker.enabled:
            await self.breakers["reads"].call(timed)
        else:
            await timed()

    async def handle(self, invocation: Invocation[T]) -> T:
        if not self._started:
            await self.start(invocation.ctx)
        operation = invocation.operation
        if not invocation.spec.retried:  # writes, and anything undeclared
            kind = "writes" if invocation.spec.kind == "write" else "reads"
            return await self._guard(kind, operation, lambda: invocation.send(self.inner))
        return await retrying(
            lambda: self._guard("reads", operation, lambda: invocation.send(self.inner)),
            self.settings.retry,
            give_up=(CircuitOpen, CallBudgetExhausted),
        )

    async def _guard(self, kind: str, operation: str, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        seconds = self.settings.timeouts.read_seconds if kind == "reads" else self.settings.timeouts.write_seconds

        async def budgeted() -> T:
            return await self.budget.call(lambda: with_timeout(fn, seconds, operation))

        if not self.settings.breaker.enabled:
            return await budgeted()
        return await self.breakers[kind].call(budgeted)

    async def check_ready(self) -> None:
        """Ready once started (login done) and the ERP answers."""
        seconds = self.settings.timeouts.read_seconds
        if not self._started:  # the probe waits a read timeout at most; the start-up goes on
            await with_timeout(lambda: self.start(CallContext(correlation_id="readiness")), seconds, "readiness")
        await with_timeout(self.inner.check_ready, seconds, "readiness")


class PolicyChain(msgspec.Struct, frozen=True, kw_only=True):
    """One backend's wrapped form (what routes call), and handles on the policies inside it."""

    name: str
    backend: ErpBackend
    guarded: GuardedBackend
    cache: CachingBackend | None


def wrap_backend(
    adapter: ErpBackend, settings: PolicySettings, redis: LenientState, observer: ErpCallObserver | None = None
) -> PolicyChain:
    """The adapter inside every policy, in the order stated above."""
    edge: ErpBackend = ObservedBackend(adapter, observer) if observer is not None else adapter
    guarded = GuardedBackend(edge, settings, redis)
    cache = CachingBackend(guarded, redis, settings.cache, workers=settings.workers) if settings.cache.enabled else None
    return PolicyChain(name=adapter.name, backend=cache or guarded, guarded=guarded, cache=cache)
