"""Order intake: the order the storefront just took, accepted at once with its stock held, and
posted to the ERP in the background (``POST /v1/orders``, ``GET /v1/order-intakes/{intakeId}``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from contracts._base import Request, Response
from contracts.v1._types import (
    CurrencyCode,
    CustomerRef,
    ExternalRef,
    Money,
    OrderNumber,
    Quantity,
    Sku,
    WarehouseCode,
)

__all__ = [
    "INTAKE_ID_PATTERN",
    "Contact",
    "HeldLine",
    "IntakeLine",
    "IntakeList",
    "IntakeStatus",
    "OrderIntake",
    "OrderIntakeRequest",
    "ShippingAddress",
    "StatusChange",
]

#: ``accepted`` (held, queued) -> ``posting`` (a worker is sending it) -> ``posted`` (the ERP
#: has it: ``orderNumber``); or ``rejected`` (the ERP refused it: ``lastError``), ``dead_lettered``
#: (given up after the configured attempts), ``cancelled`` (by an operator). Only ``accepted``
#: and ``posting`` hold stock; a posted order's hold lasts until the ERP's stock shows it.
IntakeStatus = Literal["accepted", "posting", "posted", "rejected", "dead_lettered", "cancelled"]

#: Intake ids: ``in_`` and 26 lower-case base-32 characters.
INTAKE_ID_PATTERN = r"^in_[0-9a-z]{26}$"

_Text = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class IntakeLine(Request):
    sku: Sku
    quantity: Quantity
    unit_price: Annotated[Money, Meta(description="The unit price the shopper saw.")]
    warehouse: Annotated[
        WarehouseCode | None,
        Meta(description="Ship from this warehouse only; none: from any, in the ERP's order, split if need be."),
    ] = None


class ShippingAddress(Request):
    """Where the order goes. Personal data: kept with the intake for the ERP, never logged."""

    name: _Text
    street: _Text
    postal_code: Annotated[str, Meta(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9 -]+$")]
    city: _Text
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code.")]


class Contact(Request):
    """Who to reach about the order. Personal data: kept with the intake, never logged."""

    name: _Text
    email: Annotated[str, Meta(max_length=254, pattern=r"^[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+$")]
    phone: Annotated[str, Meta(max_length=32, pattern=r"^\+?[0-9 ()./-]{3,31}$")] | None = None


class OrderIntakeRequest(Request):
    """The order the shopper just placed. Judged as ``validateOrder`` judges a cart, against the
    gateway's current stock (minus what accepted orders hold) and prices; all lines are held
    or none."""

    external_ref: ExternalRef
    currency: CurrencyCode
    lines: Annotated[list[IntakeLine], Meta(min_length=1, max_length=200)]
    shipping_address: ShippingAddress
    contact: Contact
    customer: Annotated[CustomerRef | None, Meta(description="The ERP customer; none: a guest order.")] = None
    payment_reference: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")] | None = None


class HeldLine(Response):
    """Units of one SKU held in one warehouse for the order."""

    sku: Sku
    warehouse: WarehouseCode
    quantity: int


class StatusChange(Response):
    status: IntakeStatus
    at: datetime
    detail: str | None = None


class OrderIntake(Response):
    """An accepted order on its way to the ERP."""

    intake_id: str
    external_ref: ExternalRef
    status: IntakeStatus
    held: list[HeldLine]
    order_number: OrderNumber | None
    attempts: int
    last_error: str | None
    history: list[StatusChange]
    accepted_at: datetime


class IntakeList(Response):
    items: list[OrderIntake]
