"""Order validation before checkout, and order lookup for helpdesk agents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from msgspec import Meta

from contracts._base import Request, Response
from contracts.v1._types import (
    CurrencyCode,
    CustomerRef,
    ExternalRef,
    Freshness,
    LineRef,
    Money,
    OrderNumber,
    Quantity,
    Sku,
    WarehouseCode,
)

__all__ = [
    "Address",
    "Customer",
    "Order",
    "OrderLine",
    "OrderList",
    "OrderValidation",
    "OrderValidationRequest",
    "Shipment",
    "ShipmentLine",
    "ValidationLine",
    "ValidationProblem",
]

OrderStatus = Literal["open", "partially_shipped", "shipped", "cancelled"]
InvoiceState = Literal["not_invoiced", "partially_invoiced", "invoiced"]
PaymentState = Literal["unpaid", "partially_paid", "paid"]
ShipmentState = Literal["pending", "shipped", "cancelled"]
ProblemCode = Literal["unknown_sku", "not_salable", "insufficient_stock", "price_changed"]


class ValidationLine(Request):
    sku: Sku
    quantity: Quantity
    unit_price: Annotated[Money, Meta(description="The unit price the shopper saw.")]


class OrderValidationRequest(Request):
    """The cart the checkout is about to submit. Nothing is written to the ERP."""

    currency: CurrencyCode
    lines: Annotated[list[ValidationLine], Meta(min_length=1, max_length=200)]
    customer: CustomerRef | None = None
    warehouse: WarehouseCode | None = None


class ValidationProblem(Response):
    """One reason a cart line would fail. ``line`` is the index in the request's ``lines``."""

    line: int
    sku: Sku
    code: ProblemCode
    detail: str
    available: int | None = None
    seen_unit_price: Money | None = None
    current_unit_price: Money | None = None


class OrderValidation(Response):
    valid: bool
    problems: list[ValidationProblem]
    checked_at: datetime


class Address(Response):
    street: str
    postal_code: str
    city: str
    country: str


class Customer(Response):
    """The ordering customer. Contact fields are personal data."""

    reference: CustomerRef
    name: str
    email: str | None
    phone: str | None
    address: Address | None


class OrderLine(Response):
    line_ref: LineRef
    sku: Sku
    description: str
    quantity: int
    shipped_quantity: int
    invoiced_quantity: int
    returned_quantity: int
    unit_price: Money
    line_total: Money


class ShipmentLine(Response):
    sku: Sku
    quantity: int


class Shipment(Response):
    shipment_number: str
    state: ShipmentState
    shipped_on: date | None
    tracking_reference: str | None
    lines: list[ShipmentLine]


class Order(Response):
    order_number: OrderNumber
    external_ref: ExternalRef | None
    status: OrderStatus
    ordered_on: date
    currency: CurrencyCode
    total_amount: Money
    invoice_state: InvoiceState
    payment_state: PaymentState
    customer: Customer
    lines: list[OrderLine]
    shipments: list[Shipment]
    as_of: datetime | None = None
    freshness: Freshness = "fresh"


class OrderList(Response):
    items: list[Order]
