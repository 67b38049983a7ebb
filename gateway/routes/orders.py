"""POST /v1/orders/validate, GET /v1/orders/{orderNumber}, GET /v1/orders?externalRef=, and
POST /v1/orders (order intake: ``gateway.routes.intake``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, HttpMethod, Response, get, post, route
from litestar.params import Parameter, QueryParameter

from contracts.v1 import Order, OrderIntake, OrderIntakeRequest, OrderList, OrderValidation, OrderValidationRequest
from contracts.v1._types import PATH_REFERENCE_PATTERN, REFERENCE_MAX_LENGTH
from gateway.auth.minimization import minimize_order, minimize_orders
from gateway.auth.scopes import requires
from gateway.routes._deps import AnyRequest, erp_call, runtime_of
from gateway.routes._openapi import body, example, responses
from gateway.routes.intake import ORDER_EXAMPLE, SUBMIT_ORDER, OrderKeyHeader, submit_order

__all__ = ["OrdersController"]

_ORDER = {
    "orderNumber": "SO-1002",
    "externalRef": "WC-5002",
    "status": "partially_shipped",
    "orderedOn": "2026-11-18",
    "currency": "EUR",
    "totalAmount": "316.35",
    "invoiceState": "not_invoiced",
    "paymentState": "unpaid",
    "customer": {
        "reference": "C-1001",
        "name": "Acme Retail GmbH",
        "email": "purchasing@acme-retail.example",
        "phone": "+49 30 5550 1001",
        "address": {"street": "Friedrichstrasse 101", "postalCode": "10117", "city": "Berlin", "country": "DE"},
    },
    "lines": [
        {
            "lineRef": "1",
            "sku": "LAMP-WHT",
            "description": "LED desk lamp, white",
            "quantity": 3,
            "shippedQuantity": 2,
            "invoicedQuantity": 0,
            "returnedQuantity": 0,
            "unitPrice": "75.05",
            "lineTotal": "225.15",
        }
    ],
    "shipments": [
        {
            "shipmentNumber": "SH-2001",
            "state": "shipped",
            "shippedOn": "2026-11-19",
            "trackingReference": "1Z999AA10123456784",
            "lines": [{"sku": "LAMP-WHT", "quantity": 2}],
        }
    ],
    "asOf": "2026-11-28T10:00:00Z",
    "freshness": "fresh",
}

OrderNumberPath = Annotated[
    str,
    Parameter(
        pattern=PATH_REFERENCE_PATTERN,
        max_length=REFERENCE_MAX_LENGTH,
        description=(
            "The ERP order number. One with `/` in it cannot be named in a path, not even percent-encoded "
            "(a 404 `not-found`): find it by `externalRef`."
        ),
    ),
]
ExternalRefQuery = Annotated[
    str,
    QueryParameter(
        name="externalRef",
        pattern=r"^[\x21-\x7e]+$",
        min_length=1,
        max_length=128,
        description="The storefront's order id, as kept on the ERP order.",
    ),
]


class OrdersController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allowed(self) -> Response[None]:
        """Litestar's own OPTIONS answer for a path of two handlers names only the first's method."""
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"}, media_type="text/plain")

    @post("/", **SUBMIT_ORDER)
    async def submit(
        self,
        data: Annotated[OrderIntakeRequest, body("Two mugs for a known customer", ORDER_EXAMPLE)],
        idempotency_key: OrderKeyHeader,
        request: AnyRequest,
    ) -> Response[OrderIntake]:
        return await submit_order(data, idempotency_key, request)

    @post(
        "/validate",
        status_code=200,
        operation_id="validateOrder",
        **requires("orders:validate"),
        summary="Validate a cart before checkout",
        description=(
            "Checks every line for unknown SKU, not salable, insufficient stock and changed price. Stock is "
            "the ERP's less what accepted orders (`submitOrder`) hold, as `availableToPromise` shows it. "
            "`valid: false` with per-line problems is a normal answer (200), not an error. Writes nothing."
        ),
        responses=responses(
            200,
            OrderValidation,
            "The verdict with per-line problems",
            [
                example(
                    "Price changed on one line",
                    {
                        "valid": False,
                        "problems": [
                            {
                                "line": 0,
                                "sku": "TEE-NVY-M",
                                "code": "price_changed",
                                "detail": "unit price is now 19.90, the shopper saw 17.90",
                                "available": None,
                                "seenUnitPrice": "17.90",
                                "currentUnitPrice": "19.90",
                            }
                        ],
                        "checkedAt": "2026-11-28T10:00:00Z",
                    },
                )
            ],
            "unknown-customer",
            "unknown-warehouse",
            "unsupported-currency",
            "payload-too-large",
        ),
    )
    async def validate(
        self,
        data: Annotated[
            OrderValidationRequest,
            body(
                "The cart about to be submitted",
                {
                    "customer": "C-1002",
                    "currency": "EUR",
                    "warehouse": "EAST",
                    "lines": [{"sku": "TEE-NVY-M", "quantity": 2, "unitPrice": "17.90"}],
                },
            ),
        ],
        request: AnyRequest,
    ) -> OrderValidation:
        erp, ctx = erp_call(request)
        verdict = await erp.validate_order(data, ctx)
        intake = runtime_of(request).intake
        return verdict if intake is None else await intake.holds.judge(erp, data, verdict, ctx)

    @get(
        "/{orderNumber:str}",
        operation_id="getOrder",
        **requires("orders:read"),
        summary="Look up an order by its ERP number",
        description=(
            "Status, lines with ordered/shipped/invoiced/returned quantities, shipments, invoice and payment state. "
            "The customer's email, phone and address are null unless the token also holds `orders:read:pii`."
        ),
        responses=responses(200, Order, "The order", [example("Partly shipped order", _ORDER)], "order-not-found"),
    )
    async def get_order(self, orderNumber: OrderNumberPath, request: AnyRequest) -> Order:  # noqa: N803 - the wire name
        erp, ctx = erp_call(request)
        return minimize_order(await erp.get_order(orderNumber, ctx), request.scope)

    @get(
        "/",
        operation_id="findOrdersByExternalRef",
        **requires("orders:read"),
        summary="Find orders by the storefront's reference",
        description=(
            "Usually one order; an empty list when the ERP has none with that reference. The customer's email, "
            "phone and address are null unless the token also holds `orders:read:pii`."
        ),
        responses=responses(200, OrderList, "Matching orders", [example("One match", {"items": [_ORDER]})]),
    )
    async def find_orders(self, external_ref: ExternalRefQuery, request: AnyRequest) -> OrderList:
        erp, ctx = erp_call(request)
        return minimize_orders(await erp.find_orders(external_ref, ctx), request.scope)
