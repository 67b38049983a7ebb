"""The order in which policies wrap an ERP backend call, stated once.

    route
      -> caching          reads answered from the two-tier cache; only misses go on
      -> retry            idempotent reads only, jittered backoff, on ERP failures
      -> circuit breaker  fail fast while the ERP is down (reads and writes apart, shared)
      -> call budget      calls/second and in-flight cap; wait briefly, then shed with 503
      -> timeout          per operation class (read, write)
      -> the adapter

Why this order: a cache hit costs no ERP budget and is served even while the breaker is
open (stale-if-error sits in the cache, outside the breaker); a retry is a new call, so it
passes the breaker and the budget again; an open breaker never consumes budget; the budget
is taken before the clock of the timeout starts, so waiting for budget is not an ERP timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import msgspec

from contracts.v1 import (
    AvailabilityBatch,
    Order,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckRequest,
    ReturnAuthorization,
    ReturnRequest,
)
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, ReturnOutcome
from policies.caching import CacheSettings, CachingBackend
from policies.circuit_breaking import BreakerSettings, CircuitOpen, SharedCircuitBreaker
from policies.erp_protection import CallBudget, CallBudgetExhausted, ErpLimitSettings
from policies.redis_link import RedisLink
from policies.retrying import RetrySettings, retrying
from policies.timeouts import TimeoutSettings, with_timeout

__all__ = ["GuardedBackend", "PolicyChain", "PolicySettings", "wrap_backend"]

T = TypeVar("T")


class PolicySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    erp_limits: ErpLimitSettings = msgspec.field(default_factory=ErpLimitSettings)
    timeouts: TimeoutSettings = msgspec.field(default_factory=TimeoutSettings)


class GuardedBackend(ErpBackend):
    """Retry, breaker, budget and timeout around every call of ``inner``."""

    def __init__(self, inner: ErpBackend, settings: PolicySettings, redis: RedisLink) -> None:
        self.inner = inner
        self.name = inner.name
        self.settings = settings
        self.budget = CallBudget(settings.erp_limits)
        self.breakers = {
            # Shedding by the call budget is the gateway protecting the ERP, not an ERP failure.
            kind: SharedCircuitBreaker(
                f"{inner.name}:{kind}", settings.breaker, redis, not_failures=(CallBudgetExhausted,)
            )
            for kind in ("reads", "writes")
        }

    async def _guard(self, kind: str, fn: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
        seconds = self.settings.timeouts.read_seconds if kind == "reads" else self.settings.timeouts.write_seconds

        async def budgeted() -> T:
            return await self.budget.call(lambda: with_timeout(fn, seconds, what))

        if not self.settings.breaker.enabled:
            return await budgeted()
        return await self.breakers[kind].call(budgeted)

    async def _read(self, fn: Callable[[], Coroutine[Any, Any, T]], what: str) -> T:
        return await retrying(
            lambda: self._guard("reads", fn, what), self.settings.retry, give_up=(CircuitOpen, CallBudgetExhausted)
        )

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self._read(lambda: self.inner.get_availability(skus, warehouses, ctx), "availability")

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        return await self._read(lambda: self.inner.check_prices(request, ctx), "prices")

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        return await self._read(lambda: self.inner.validate_order(request, ctx), "order validation")

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        return await self._read(lambda: self.inner.get_order(order_number, ctx), "order lookup")

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        return await self._read(lambda: self.inner.find_orders(external_ref, ctx), "order lookup")

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        return await self._guard("writes", lambda: self.inner.create_return(request, idempotency, ctx), "return")

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self._read(lambda: self.inner.get_return(rma_number, ctx), "return lookup")

    async def check_ready(self) -> None:
        await with_timeout(self.inner.check_ready, self.settings.timeouts.read_seconds, "readiness")

    async def aclose(self) -> None:
        await self.inner.aclose()


class PolicyChain(msgspec.Struct, frozen=True, kw_only=True):
    """The wrapped backend routes call, and handles on the policies inside it."""

    backend: ErpBackend
    guarded: GuardedBackend
    cache: CachingBackend | None


def wrap_backend(adapter: ErpBackend, settings: PolicySettings, redis: RedisLink) -> PolicyChain:
    """The adapter inside every policy, in the order stated above."""
    guarded = GuardedBackend(adapter, settings, redis)
    cache = CachingBackend(guarded, redis, settings.cache) if settings.cache.enabled else None
    return PolicyChain(backend=cache or guarded, guarded=guarded, cache=cache)
