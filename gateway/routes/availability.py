"""GET /v1/availability/{sku} and POST /v1/availability/batch."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.params import Parameter

from contracts.v1 import AvailabilityBatch, AvailabilityBatchRequest, SkuAvailability
from contracts.v1._types import PATH_REFERENCE_PATTERN, REFERENCE_MAX_LENGTH
from erp_backends.errors import NotFound
from erp_backends.port import CallContext
from gateway.auth.scopes import requires
from gateway.routes._deps import AnyRequest, erp_call, runtime_of
from gateway.routes._openapi import body, example, responses

__all__ = ["AvailabilityController"]

_ITEM = {
    "sku": "TEE-NVY-M",
    "unit": "unit",
    "onHand": 180,
    "committed": 2,
    "availableToPromise": 178,
    "warehouses": [
        {"warehouse": "EAST", "onHand": 80, "committed": 2, "availableToPromise": 78},
        {"warehouse": "WEST", "onHand": 100, "committed": 0, "availableToPromise": 100},
    ],
    "asOf": "2026-11-28T10:00:00Z",
    "freshness": "fresh",
}

SkuPath = Annotated[
    str,
    Parameter(
        pattern=PATH_REFERENCE_PATTERN,
        max_length=REFERENCE_MAX_LENGTH,
        description=(
            "The SKU. A SKU with `/` in it cannot be named in a path, not even percent-encoded (`A%2FB` is "
            "decoded to two path segments, which name no route: a 404 `not-found`); ask "
            "`POST /v1/availability/batch` for it, which accepts every SKU."
        ),
    ),
]
WarehouseQuery = Annotated[
    str | None,
    Parameter(pattern=r"^[A-Za-z0-9_-]+$", max_length=32, description="Only this warehouse (default: all)."),
]


class AvailabilityController(Controller):
    path = "/v1/availability"
    tags = ["availability"]

    @get(
        "/{sku:str}",
        operation_id="getAvailability",
        **requires("availability:read"),
        summary="Stock of one SKU",
        description=(
            "On hand, committed and available to promise, per warehouse. `availableToPromise` is the ERP's less "
            "what accepted orders (`submitOrder`) hold until the ERP's own stock shows them. Unknown SKU: 404."
        ),
        responses=responses(
            200,
            SkuAvailability,
            "Stock of the SKU",
            [example("In stock in both warehouses", _ITEM)],
            "sku-not-found",
            "unknown-warehouse",
        ),
    )
    async def get_one(self, sku: SkuPath, request: AnyRequest, warehouse: WarehouseQuery = None) -> SkuAvailability:
        erp, ctx = erp_call(request)
        batch = await held_back(
            request, ctx, await erp.get_availability([sku], [warehouse] if warehouse else None, ctx)
        )
        if not batch.items:
            raise NotFound("sku", sku)
        return batch.items[0]

    @post(
        "/batch",
        status_code=200,
        operation_id="getAvailabilityBatch",
        **requires("availability:read"),
        summary="Stock of up to 200 SKUs",
        description="One item per known SKU in the order asked; unknown SKUs are listed in `unknownSkus`.",
        responses=responses(
            200,
            AvailabilityBatch,
            "Stock per SKU",
            [example("One known, one unknown SKU", {"items": [_ITEM], "unknownSkus": ["NO-SUCH-SKU"]})],
            "unknown-warehouse",
            "payload-too-large",
        ),
    )
    async def get_batch(
        self,
        data: Annotated[
            AvailabilityBatchRequest,
            body("Two SKUs in one warehouse", {"skus": ["TEE-NVY-M", "NO-SUCH-SKU"], "warehouses": ["EAST"]}),
        ],
        request: AnyRequest,
    ) -> AvailabilityBatch:
        erp, ctx = erp_call(request)
        return await held_back(request, ctx, await erp.get_availability(data.skus, data.warehouses, ctx))


async def held_back(request: AnyRequest, ctx: CallContext, batch: AvailabilityBatch) -> AvailabilityBatch:
    """``batch`` less the units accepted orders hold (``gateway.intake.holds``)."""
    intake = runtime_of(request).intake
    if intake is None:
        return batch
    return await intake.holds.subtract(batch, ctx.notes.read_at if ctx.notes is not None else {})
