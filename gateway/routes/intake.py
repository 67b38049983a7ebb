"""POST /v1/orders (order intake), GET /v1/order-intakes/{intakeId}, and the operators' routes
(/v1/admin/order-intakes: list, replay, cancel)."""

from __future__ import annotations

from typing import Annotated, Any, cast, get_args

from litestar import Controller, Response, get, post
from litestar.params import HeaderParameter, Parameter, QueryParameter

from contracts.v1 import IntakeList, OrderIntake, OrderIntakeRequest
from contracts.v1.intake import INTAKE_ID_PATTERN, IntakeStatus
from erp_backends.errors import ErpUnavailable
from gateway.auth.scopes import requires, requires_any
from gateway.identity import client_identity
from gateway.intake.service import IntakeService, intake_view
from gateway.routes._deps import AnyRequest, call_context, runtime_of
from gateway.routes._openapi import example, responses

__all__ = [
    "ORDER_EXAMPLE",
    "SUBMIT_ORDER",
    "IntakeAdminController",
    "IntakeController",
    "OrderKeyHeader",
    "submit_order",
]

_INTAKE = {
    "intakeId": "in_01jd8x3k5v0000000000000000",
    "externalRef": "WC-7001",
    "status": "accepted",
    "held": [{"sku": "MUG-SND", "warehouse": "EAST", "quantity": 2}],
    "orderNumber": None,
    "attempts": 0,
    "lastError": None,
    "history": [{"status": "accepted", "at": "2026-12-02T10:00:00Z", "detail": None}],
    "acceptedAt": "2026-12-02T10:00:00Z",
}
_POSTED = {
    **_INTAKE,
    "status": "posted",
    "orderNumber": "SO-2001",
    "attempts": 1,
    "history": [
        {"status": "accepted", "at": "2026-12-02T10:00:00Z", "detail": None},
        {"status": "posting", "at": "2026-12-02T10:00:00.120Z", "detail": None},
        {"status": "posted", "at": "2026-12-02T10:00:00.180Z", "detail": "SO-2001"},
    ],
}
_ORDER = {
    "externalRef": "WC-7001",
    "customer": "C-1001",
    "currency": "EUR",
    "lines": [{"sku": "MUG-SND", "quantity": 2, "unitPrice": "12.50"}],
    "shippingAddress": {
        "name": "Acme Retail GmbH",
        "street": "Friedrichstrasse 101",
        "postalCode": "10117",
        "city": "Berlin",
        "country": "DE",
    },
    "contact": {"name": "Jo Buyer", "email": "jo@acme-retail.example"},
}

ORDER_EXAMPLE = _ORDER
#: The ``@post`` arguments of ``submitOrder`` (the handler is in ``gateway.routes.orders``).
SUBMIT_ORDER: dict[str, Any] = dict(
    status_code=202,
    operation_id="submitOrder",
    **requires("orders:write"),
    summary="Submit an order: accepted at once with its stock held, posted to the ERP in the background",
    description=(
        "Judged as `validateOrder` judges a cart, against the gateway's stock (minus what accepted orders hold) "
        "and prices, without waiting for the ERP: every line is held, or none. Accepted: 202 with `Location` "
        "of the intake, whose status then moves `accepted` -> `posting` -> `posted` (with `orderNumber`), or "
        "to `rejected`/`dead_lettered` with `lastError` (the hold released). The same `Idempotency-Key` and "
        "body answer the same intake (`Idempotent-Replayed: true`); another body with the key: 422; the same "
        "`externalRef` from the same client under another key: 409 `order-already-submitted` (an "
        "`externalRef` is the storefront's own: other clients may use the same one). A hold is subtracted from "
        "`availableToPromise` (not from `onHand` or `committed`) until the ERP's own stock shows the order."
    ),
    responses=responses(
        202,
        OrderIntake,
        "The accepted intake (new or replayed)",
        [example("Accepted", _INTAKE)],
        "insufficient-stock",
        "price-changed",
        "order-already-submitted",
        "unknown-sku",
        "not-salable",
        "unknown-warehouse",
        "unknown-customer",
        "unsupported-currency",
        "idempotency-key-reused",
        "intake-unavailable",
        "payload-too-large",
    ),
)

OrderKeyHeader = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=8,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Required. One key per order the storefront means to submit (its checkout attempt id, or a UUID). "
            "Retrying with the same key and body answers the same intake (`Idempotent-Replayed: true`), however "
            "far it has got; the same key with another body is refused (422)."
        ),
    ),
]

IntakeIdPath = Annotated[
    str, Parameter(pattern=INTAKE_ID_PATTERN, description="The intake's id, as `intakeId` in `submitOrder`'s answer.")
]


async def submit_order(data: OrderIntakeRequest, idempotency_key: str, request: AnyRequest) -> Response[OrderIntake]:
    """``POST /v1/orders`` (declared in ``gateway.routes.orders``, which owns the path)."""
    record, replayed = await _service(request).submit(data, idempotency_key, call_context(request))
    headers = {"Location": f"/v1/order-intakes/{record.intake_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(intake_view(record), status_code=202, headers=headers)


class IntakeSwitchedOff(ErpUnavailable):
    """503 ``service-unavailable``: this gateway does not take orders."""

    code = "service-unavailable"


def _service(request: AnyRequest) -> IntakeService:
    service = runtime_of(request).intake
    if service is None:  # ERPGW_INTAKE__ENABLED=false
        raise IntakeSwitchedOff("order intake is switched off on this gateway (ERPGW_INTAKE__ENABLED=false)")
    return service


class IntakeController(Controller):
    path = "/v1/order-intakes"
    tags = ["orders"]

    @get(
        "/{intakeId:str}",
        operation_id="getOrderIntake",
        **requires_any("orders:write", "orders:read"),
        summary="Read an order intake's status",
        description="Where the order is on its way to the ERP, with its history. Unknown id: 404.",
        responses=responses(
            200,
            OrderIntake,
            "The intake",
            [example("Posted", _POSTED)],
            "intake-not-found",
            "intake-unavailable",
        ),
    )
    async def get_intake(self, intakeId: IntakeIdPath, request: AnyRequest) -> OrderIntake:  # noqa: N803 - the wire name
        return intake_view(await _service(request).get(intakeId))


#: A plain string (not the enum): a nullable enum in the spec makes generated clients declare
#: one enum per schema branch. The pattern is the statuses, so a misspelt one is a 400.
StatusQuery = Annotated[
    str | None,
    QueryParameter(pattern=f"^({'|'.join(get_args(IntakeStatus))})$", description="Only intakes in this status."),
]
LimitQuery = Annotated[int, QueryParameter(ge=1, le=500, description="At most this many, newest first.")]


class IntakeAdminController(Controller):
    path = "/v1/admin/order-intakes"
    tags = ["admin"]

    @get(
        "/",
        operation_id="listOrderIntakes",
        **requires("admin"),
        summary="List order intakes (newest first), by status",
        description=(
            "For operators: the dead-lettered and rejected ones (with `lastError`) to fix and replay, the "
            "`accepted` backlog waiting for the ERP. At most `limit` (500), newest first."
        ),
        responses=responses(
            200, IntakeList, "The intakes", [example("Dead-lettered", {"items": []})], "intake-unavailable"
        ),
    )
    async def list_intakes(
        self, request: AnyRequest, status: StatusQuery = None, limit: LimitQuery = 100
    ) -> IntakeList:
        records = await _service(request).list(cast(IntakeStatus | None, status), limit)
        return IntakeList(items=[intake_view(record) for record in records])

    @post(
        "/{intakeId:str}/replay",
        status_code=200,
        operation_id="replayOrderIntake",
        **requires("admin"),
        summary="Queue a rejected or dead-lettered intake again (audited)",
        description=(
            "Judges its lines on the stock now, as `submitOrder` does (409 `insufficient-stock` when its units "
            "were promised since: it stays as it was), holds them again and posts it once more; replaying "
            "twice, or an intake not given up, changes nothing (the ERP order is created once per intake "
            "whatever happens). A cancelled intake: 409."
        ),
        responses=responses(
            200,
            OrderIntake,
            "The intake",
            [example("Queued again", _INTAKE)],
            "intake-not-found",
            "intake-not-changeable",
            "insufficient-stock",
            "intake-unavailable",
        ),
    )
    async def replay(self, intakeId: IntakeIdPath, request: AnyRequest) -> OrderIntake:  # noqa: N803 - the wire name
        return intake_view(await _service(request).replay(intakeId, _operator(request), call_context(request)))

    @post(
        "/{intakeId:str}/cancel",
        status_code=200,
        operation_id="cancelOrderIntake",
        **requires("admin"),
        summary="Cancel an intake no ERP order can exist for (audited); its hold is released",
        description=(
            "Only a `rejected` intake (the ERP refused it), or an `accepted` one never sent to the ERP. Any "
            "other, 409 `intake-not-changeable`: a `posted` order is cancelled in the ERP; one that is `posting`, "
            "was sent before (its answer lost or timed out) or `dead_lettered` may exist in the ERP: replay it, "
            "and posting finds that order by its key. Cancelling twice answers the cancelled intake."
        ),
        responses=responses(
            200,
            OrderIntake,
            "The cancelled intake",
            [example("Cancelled", {**_INTAKE, "status": "cancelled"})],
            "intake-not-found",
            "intake-not-changeable",
            "intake-unavailable",
        ),
    )
    async def cancel(self, intakeId: IntakeIdPath, request: AnyRequest) -> OrderIntake:  # noqa: N803 - the wire name
        return intake_view(await _service(request).cancel(intakeId, _operator(request), call_context(request)))


def _operator(request: AnyRequest) -> str:
    identity = client_identity(request.scope)
    return identity.client_id if identity and identity.client_id else "an operator"
