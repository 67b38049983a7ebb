"""Return authorizations (RMA): create idempotently, read back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from contracts._base import Request, Response
from contracts.v1._types import CurrencyCode, LineRef, Money, OrderNumber, Quantity, RmaNumber, Sku

__all__ = ["RefundEstimate", "ReturnAuthorization", "ReturnLine", "ReturnRequest", "ReturnRequestLine"]

ReturnReason = Literal["damaged", "defective", "wrong_item", "not_as_described", "no_longer_needed", "other"]
ReturnStatus = Literal["authorized", "received", "refunded", "rejected", "cancelled"]


class ReturnRequestLine(Request):
    """One line to return, named by ``sku`` or by ``line_ref`` (exactly one of the two)."""

    quantity: Quantity
    reason: ReturnReason
    sku: Sku | None = None
    line_ref: LineRef | None = None
    comment: Annotated[str, Meta(max_length=500)] | None = None


class ReturnRequest(Request):
    order_number: OrderNumber
    lines: Annotated[list[ReturnRequestLine], Meta(min_length=1, max_length=100)]


class ReturnLine(Response):
    line_ref: LineRef
    sku: Sku
    quantity: int
    reason: ReturnReason
    unit_price: Money
    refund_amount: Money


class RefundEstimate(Response):
    currency: CurrencyCode
    amount: Money


class ReturnAuthorization(Response):
    rma_number: RmaNumber
    order_number: OrderNumber
    status: ReturnStatus
    created_at: datetime
    lines: list[ReturnLine]
    refund_estimate: RefundEstimate
