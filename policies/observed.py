"""Observation of every ERP adapter call: the innermost edge of the policy chain.

``ObservedBackend`` wraps the bare adapter and reports each call (backend, operation, duration,
outcome) to an ``ErpCallObserver`` given by the composition root; policies know nothing of
how it is recorded (metrics, spans). Only calls that reach the adapter are seen: cache hits,
open breakers and shed calls never are. The observer may hand the call a new ``CallContext``
(for example one whose ``traceparent`` names the call's own span).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

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
from erp_backends.errors import ErpTimeout, ErpUnavailable, NotFound, Rejected
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, ReturnOutcome

__all__ = ["ErpCallObserver", "ErpCallProbe", "ObservedBackend", "outcome_of"]

T = TypeVar("T")


class ErpCallProbe(Protocol):
    """One call under observation."""

    def context(self, ctx: CallContext) -> CallContext:
        """The context to call the adapter with."""

    def finish(self, outcome: str, error: BaseException | None) -> None:
        """The call ended with ``outcome`` (see ``outcome_of``)."""


class ErpCallObserver(Protocol):
    def start(self, backend: str, operation: str) -> ErpCallProbe:
        """A call of ``operation`` on ``backend`` begins."""


def outcome_of(error: BaseException | None) -> str:
    """A closed list: ok, not_found, rejected (business answers); unavailable, timeout, cancelled, error."""
    if error is None:
        return "ok"
    if isinstance(error, NotFound):
        return "not_found"
    if isinstance(error, Rejected):
        return "rejected"
    if isinstance(error, ErpTimeout):
        return "timeout"
    if isinstance(error, ErpUnavailable):
        return "unavailable"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"  # the timeout policy outside, or the caller went away
    return "error"


class ObservedBackend(ErpBackend):
    def __init__(self, inner: ErpBackend, observer: ErpCallObserver) -> None:
        self.inner = inner
        self.name = inner.name
        self._observer = observer

    async def _observe(
        self, operation: str, ctx: CallContext, fn: Callable[[CallContext], Coroutine[Any, Any, T]]
    ) -> T:
        probe = self._observer.start(self.name, operation)
        try:
            result = await fn(probe.context(ctx))
        except BaseException as exc:
            probe.finish(outcome_of(exc), exc)
            raise
        probe.finish("ok", None)
        return result

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self._observe("get_availability", ctx, lambda c: self.inner.get_availability(skus, warehouses, c))

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        return await self._observe("check_prices", ctx, lambda c: self.inner.check_prices(request, c))

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        return await self._observe("validate_order", ctx, lambda c: self.inner.validate_order(request, c))

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        return await self._observe("get_order", ctx, lambda c: self.inner.get_order(order_number, c))

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        return await self._observe("find_orders", ctx, lambda c: self.inner.find_orders(external_ref, c))

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        return await self._observe("create_return", ctx, lambda c: self.inner.create_return(request, idempotency, c))

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self._observe("get_return", ctx, lambda c: self.inner.get_return(rma_number, c))

    async def check_ready(self) -> None:
        probe = self._observer.start(self.name, "check_ready")
        try:
            await self.inner.check_ready()
        except BaseException as exc:
            probe.finish(outcome_of(exc), exc)
            raise
        probe.finish("ok", None)

    async def aclose(self) -> None:
        await self.inner.aclose()
