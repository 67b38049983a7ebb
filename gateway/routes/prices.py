"""POST /v1/prices/check."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, post

from contracts.v1 import PriceCheck, PriceCheckRequest
from gateway.auth.scopes import requires
from gateway.routes._deps import AnyRequest, erp_call
from gateway.routes._openapi import body, example, responses

__all__ = ["PricesController"]

_ANSWER = {
    "customer": "C-1001",
    "currency": "EUR",
    "lines": [
        {
            "sku": "TOTE-NAT",
            "quantity": 20,
            "unitPrice": "15.30",
            "listPrice": "18.00",
            "lineTotal": "306.00",
            "source": {"kind": "price_list", "priceList": "ACME-2026", "rule": "ACME-TOTE-10"},
            "asOf": "2026-11-28T10:00:00Z",
            "freshness": "cached",
        }
    ],
    "listTotal": "360.00",
    "total": "306.00",
    "rounding": {"minorUnit": 2, "mode": "half_up"},
    "asOf": "2026-11-28T10:00:00Z",
}


class PricesController(Controller):
    path = "/v1/prices"
    tags = ["prices"]

    @post(
        "/check",
        status_code=200,
        operation_id="checkPrices",
        **requires("prices:read"),
        summary="Customer-specific unit prices for a cart",
        description=(
            "Without `customer` the anonymous list price applies. Unit prices are rounded half-up to the "
            "currency's minor unit; line totals are unit price times quantity."
        ),
        responses=responses(
            200,
            PriceCheck,
            "Prices per line and cart totals",
            [example("Contract price with a quantity break", _ANSWER)],
            "unknown-customer",
            "unknown-sku",
            "unsupported-currency",
            "payload-too-large",
        ),
    )
    async def check(
        self,
        data: Annotated[
            PriceCheckRequest,
            body(
                "A contract customer's cart",
                {"customer": "C-1001", "currency": "EUR", "lines": [{"sku": "TOTE-NAT", "quantity": 20}]},
            ),
        ],
        request: AnyRequest,
    ) -> PriceCheck:
        erp, ctx = erp_call(request)
        return await erp.check_prices(data, ctx)
