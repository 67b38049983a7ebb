"""POST /v1/admin/cache/invalidate: drop cached answers after an ERP-side change."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, post
from msgspec import Meta

from contracts._base import Request, Response
from contracts.v1._types import CustomerRef, OrderNumber, Sku
from gateway.auth.scopes import requires
from gateway.routes._deps import AnyRequest, runtime_of
from gateway.routes._openapi import body, example, responses

__all__ = ["AdminController", "CacheInvalidation", "CacheInvalidationRequest"]


class CacheInvalidationRequest(Request):
    """What changed in the ERP: stock or prices of SKUs, a customer's prices, orders."""

    skus: Annotated[list[Sku], Meta(max_length=1000)] = []
    customers: Annotated[list[CustomerRef], Meta(max_length=1000)] = []
    orders: Annotated[list[OrderNumber], Meta(max_length=1000)] = []


class CacheInvalidation(Response):
    invalidated_entries: int


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post(
        "/cache/invalidate",
        status_code=200,
        operation_id="invalidateCache",
        summary="Invalidate cached answers (ERP change events)",
        description=(
            "Drops availability and prices of the SKUs, prices of the customers, and the orders, from Redis and "
            "this worker's in-process tier. Other workers drop their in-process copies within "
            "`ERPGW_CACHE__LOCAL_TTL_SECONDS`."
        ),
        **requires("admin"),
        responses=responses(
            200,
            CacheInvalidation,
            "How many entries were dropped",
            [example("Two SKUs", {"invalidatedEntries": 4})],
            "payload-too-large",
            "invalidation-not-shared",
        ),
    )
    async def invalidate(
        self,
        data: Annotated[
            CacheInvalidationRequest, body("Stock of two SKUs changed", {"skus": ["MUG-SND", "TEE-NVY-M"]})
        ],
        request: AnyRequest,
    ) -> CacheInvalidation:
        count = 0
        for chain in runtime_of(request).erp.chains.values():  # an ERP-side change: every backend's copies
            if chain.cache is not None:
                count += await chain.cache.invalidate(skus=data.skus, customers=data.customers, orders=data.orders)
        return CacheInvalidation(invalidated_entries=count)
