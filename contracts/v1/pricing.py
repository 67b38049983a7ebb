"""Price check: customer-specific unit prices for a cart."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from contracts._base import Request, Response
from contracts.v1._types import CurrencyCode, CustomerRef, Freshness, Money, Quantity, Sku

__all__ = ["PriceCheck", "PriceCheckLine", "PriceCheckRequest", "PriceLine", "PriceSource", "Rounding"]

MAX_CART_LINES = 200


class PriceCheckLine(Request):
    sku: Sku
    quantity: Quantity


class PriceCheckRequest(Request):
    """A cart to price. Without ``customer`` the anonymous list price applies."""

    currency: CurrencyCode
    lines: Annotated[list[PriceCheckLine], Meta(min_length=1, max_length=MAX_CART_LINES)]
    customer: CustomerRef | None = None


class PriceSource(Response):
    """Which price list, and which rule of it, produced a unit price."""

    kind: Literal["list_price", "price_list"]
    price_list: str | None
    rule: str | None


class PriceLine(Response):
    sku: Sku
    quantity: int
    unit_price: Money
    list_price: Money
    line_total: Money
    source: PriceSource
    as_of: datetime | None = None
    freshness: Freshness = "fresh"


class Rounding(Response):
    """How amounts were rounded: unit prices to ``minor_unit`` decimals, then multiplied."""

    minor_unit: int
    mode: Literal["half_up"]


class PriceCheck(Response):
    customer: CustomerRef | None
    currency: CurrencyCode
    lines: list[PriceLine]
    list_total: Money
    total: Money
    rounding: Rounding
    as_of: datetime
