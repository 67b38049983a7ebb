"""A backend that wraps another: every port operation goes through one ``around`` method.

Decorators of a backend (fault injection, the policy chain's guard, call observation) each
implement ``around`` once instead of repeating the port's eight operations.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal, TypeVar

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

__all__ = ["WRITES", "Operation", "WrappingBackend"]

T = TypeVar("T")

Operation = Literal[
    "get_availability",
    "check_prices",
    "validate_order",
    "get_order",
    "find_orders",
    "create_return",
    "get_return",
]
#: Operations that change the ERP: never retried, guarded apart from reads.
WRITES: frozenset[Operation] = frozenset({"create_return"})


class WrappingBackend(ErpBackend):
    def __init__(self, inner: ErpBackend) -> None:
        self.inner = inner
        self.name = inner.name

    @abc.abstractmethod
    async def around(
        self, operation: Operation, ctx: CallContext, call: Callable[[CallContext], Coroutine[Any, Any, T]]
    ) -> T:
        """Run ``call`` (the inner backend's operation, given the context to use)."""

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self.around("get_availability", ctx, lambda c: self.inner.get_availability(skus, warehouses, c))

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        return await self.around("check_prices", ctx, lambda c: self.inner.check_prices(request, c))

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        return await self.around("validate_order", ctx, lambda c: self.inner.validate_order(request, c))

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        return await self.around("get_order", ctx, lambda c: self.inner.get_order(order_number, c))

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        return await self.around("find_orders", ctx, lambda c: self.inner.find_orders(external_ref, c))

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        return await self.around("create_return", ctx, lambda c: self.inner.create_return(request, idempotency, c))

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self.around("get_return", ctx, lambda c: self.inner.get_return(rma_number, c))

    async def start(self, ctx: CallContext) -> None:
        await self.inner.start(ctx)

    async def check_ready(self) -> None:
        await self.inner.check_ready()

    async def aclose(self) -> None:
        await self.inner.aclose()
