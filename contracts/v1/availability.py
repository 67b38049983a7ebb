"""Availability: stock per SKU and warehouse, as the checkout asks for it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta

from contracts._base import Request, Response
from contracts.v1._types import MAX_BATCH_SKUS, Freshness, Sku, WarehouseCode

__all__ = ["AvailabilityBatch", "AvailabilityBatchRequest", "SkuAvailability", "WarehouseStock"]


class WarehouseStock(Response):
    """Stock of one SKU in one warehouse."""

    warehouse: WarehouseCode
    on_hand: int
    committed: int
    available_to_promise: int


class SkuAvailability(Response):
    """Stock of one SKU, summed over the warehouses asked for, with the breakdown.

    ``available_to_promise`` is on hand minus what open orders have already committed; it can
    be negative when the ERP has over-committed a SKU (a backorder). It is also less what orders
    accepted through ``submitOrder`` hold until the ERP's own figures show them (never below 0
    on their account); ``on_hand`` and ``committed`` are the ERP's own.
    """

    sku: Sku
    unit: str
    on_hand: int
    committed: int
    available_to_promise: int
    warehouses: list[WarehouseStock]
    as_of: datetime
    freshness: Freshness = "fresh"


class AvailabilityBatchRequest(Request):
    """Stock for up to 200 SKUs, optionally restricted to some warehouses."""

    skus: Annotated[list[Sku], Meta(min_length=1, max_length=MAX_BATCH_SKUS)]
    warehouses: Annotated[list[WarehouseCode], Meta(min_length=1, max_length=32)] | None = None


class AvailabilityBatch(Response):
    """Answer to a batch: one item per known SKU, in the order asked; unknown SKUs listed apart.

    A batch never fails because a SKU is unknown.
    """

    items: list[SkuAvailability]
    unknown_skus: list[Sku]
