"""POST /v1/returns (idempotent) and GET /v1/returns/{rmaNumber}."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import HeaderParameter, Parameter

from contracts.v1 import ReturnAuthorization, ReturnRequest
from contracts.v1._types import PATH_REFERENCE_PATTERN, REFERENCE_MAX_LENGTH
from gateway.auth.scopes import requires
from gateway.routes._deps import AnyRequest, call_context, erp_call, runtime_of
from gateway.routes._openapi import body, example, responses

__all__ = ["ReturnsController"]

_RMA = {
    "rmaNumber": "RMA-000001",
    "orderNumber": "SO-1003",
    "status": "authorized",
    "createdAt": "2026-11-28T10:00:00Z",
    "lines": [
        {
            "lineRef": "1",
            "sku": "HOOD-BLK-L",
            "quantity": 1,
            "reason": "wrong_item",
            "unitPrice": "59.00",
            "refundAmount": "59.00",
        }
    ],
    "refundEstimate": {"currency": "EUR", "amount": "59.00"},
}

IdempotencyKeyHeader = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=8,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Required. A unique key per return the caller means to create (a UUID is ideal). Retrying with "
            "the same key and body replays the first answer; the same key with another body is refused (422); "
            "while a request with the key is in progress, another gets 409 with Retry-After."
        ),
    ),
]
RmaPath = Annotated[
    str,
    Parameter(
        pattern=PATH_REFERENCE_PATTERN,
        max_length=REFERENCE_MAX_LENGTH,
        description="Return authorization number, as `rmaNumber` in the answer of `createReturn`.",
    ),
]


class ReturnsController(Controller):
    path = "/v1/returns"
    tags = ["returns"]

    @post(
        "/",
        operation_id="createReturn",
        **requires("returns:write"),
        summary="Authorize a return (idempotent)",
        description=(
            "Creates a return authorization for delivered lines of an order. At most delivered minus already "
            "returned per line. A replay answers the original authorization with `Idempotent-Replayed: true`."
        ),
        responses=responses(
            201,
            ReturnAuthorization,
            "The return authorization (new or replayed)",
            [example("Authorized", _RMA)],
            "order-not-found",
            "nothing-delivered",
            "return-quantity-exceeded",
            "idempotency-key-reused",
            "idempotency-request-in-progress",
            "idempotency-unavailable",
            "invalid-return-line",
            "line-not-on-order",
            "ambiguous-return-line",
            "payload-too-large",
        ),
    )
    async def create(
        self,
        data: Annotated[
            ReturnRequest,
            body(
                "Return one delivered hoodie",
                {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]},
            ),
        ],
        idempotency_key: IdempotencyKeyHeader,
        request: AnyRequest,
    ) -> Response[ReturnAuthorization]:
        outcome = await runtime_of(request).returns.create(data, idempotency_key, call_context(request))
        rma = outcome.authorization
        headers = {"Location": f"/v1/returns/{rma.rma_number}"}
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(rma, status_code=201, headers=headers)

    @get(
        "/{rmaNumber:str}",
        operation_id="getReturn",
        **requires("returns:read"),
        summary="Read a return authorization",
        description=(
            "The authorization as `createReturn` answered it, with its current status (`authorized`, then "
            "`received`, `refunded`, or `rejected`/`cancelled`). Unknown number: 404."
        ),
        responses=responses(
            200,
            ReturnAuthorization,
            "The return authorization",
            [example("Authorized", _RMA)],
            "return-authorization-not-found",
        ),
    )
    async def get_return(self, rmaNumber: RmaPath, request: AnyRequest) -> ReturnAuthorization:  # noqa: N803 - the wire name
        erp, ctx = erp_call(request)
        return await erp.get_return(rmaNumber, ctx)
