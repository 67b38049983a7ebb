"""RFC 9457 problem details, as every error of the gateway is answered."""

from __future__ import annotations

from decimal import Decimal

import msgspec

__all__ = ["ChangedPriceLine", "FieldError", "Problem", "ShortStockLine"]


class FieldError(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One invalid input: ``field`` is a JSON-path-like pointer such as ``lines[2].quantity``."""

    field: str
    message: str


class ShortStockLine(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """A line of an order that stock cannot cover: ``line`` is its index in ``lines``."""

    line: int
    sku: str
    requested: int
    available: int


class ChangedPriceLine(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """A line whose unit price is no longer what the shopper saw (money as decimal strings)."""

    line: int
    sku: str
    seen_unit_price: Decimal
    current_unit_price: Decimal


class Problem(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="camel"):
    """``application/problem+json``. ``type`` is stable per kind of error; match on it."""

    type: str
    title: str
    status: int
    detail: str
    correlation_id: str
    #: The path of the request the problem is about; always sent.
    instance: str
    errors: list[FieldError] | None = None
    line: str | None = None
    available: int | None = None
    #: ``order-already-submitted``: the intake the storefront's reference belongs to.
    existing: str | None = None
    #: ``insufficient-stock``: every line that stock cannot cover.
    short_lines: list[ShortStockLine] | None = None
    #: ``price-changed``: every line whose price moved beyond the tolerance.
    changed_lines: list[ChangedPriceLine] | None = None
