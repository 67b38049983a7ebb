"""A backend that wraps another: every port operation becomes an ``Invocation`` given to ``handle``.

Decorators of a backend (the policy chain's guard, call observation, the tests' fault injection)
override ``handle`` once instead of repeating the port's operations; by default it sends the
invocation to ``inner``. The lifecycle hooks (``start``, ``check_ready``, ``aclose``) pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from contracts.v1 import (
    AvailabilityBatch,
    Order,
    OrderIntakeRequest,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckRequest,
    ReturnAuthorization,
    ReturnRequest,
)
from erp_backends.invocation import Invocation
from erp_backends.port import CallContext, ErpBackend, IdempotencyToken, OrderOutcome, ReturnOutcome

__all__ = ["WrappingBackend"]

T = TypeVar("T")


class WrappingBackend(ErpBackend):
    def __init__(self, inner: ErpBackend) -> None:
        self.inner = inner
        self.name = inner.name

    async def handle(self, invocation: Invocation[T]) -> T:
        """Carry out one call; the default sends it to the wrapped backend."""
        return await invocation.send(self.inner)

    async def get_availability(
        self, skus: Sequence[str], warehouses: Sequence[str] | None, ctx: CallContext
    ) -> AvailabilityBatch:
        return await self.handle(Invocation[AvailabilityBatch]("get_availability", (skus, warehouses), ctx))

    async def check_prices(self, request: PriceCheckRequest, ctx: CallContext) -> PriceCheck:
        return await self.handle(Invocation[PriceCheck]("check_prices", (request,), ctx))

    async def validate_order(self, request: OrderValidationRequest, ctx: CallContext) -> OrderValidation:
        return await self.handle(Invocation[OrderValidation]("validate_order", (request,), ctx))

    async def get_order(self, order_number: str, ctx: CallContext) -> Order:
        return await self.handle(Invocation[Order]("get_order", (order_number,), ctx))

    async def find_orders(self, external_ref: str, ctx: CallContext) -> OrderList:
        return await self.handle(Invocation[OrderList]("find_orders", (external_ref,), ctx))

    async def create_return(
        self, request: ReturnRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> ReturnOutcome:
        return await self.handle(Invocation[ReturnOutcome]("create_return", (request, idempotency), ctx))

    async def create_order(
        self, request: OrderIntakeRequest, idempotency: IdempotencyToken, ctx: CallContext
    ) -> OrderOutcome:
        return await self.handle(Invocation[OrderOutcome]("create_order", (request, idempotency), ctx))

    async def get_return(self, rma_number: str, ctx: CallContext) -> ReturnAuthorization:
        return await self.handle(Invocation[ReturnAuthorization]("get_return", (rma_number,), ctx))

    async def start(self, ctx: CallContext) -> None:
        await self.inner.start(ctx)

    async def check_ready(self) -> None:
        await self.inner.check_ready()

    async def aclose(self) -> None:
        await self.inner.aclose()
