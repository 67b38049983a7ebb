"""Smoke program for the Python client generated from openapi/v1.json by openapi-python-client.

Calls every operation of the spec against a running gateway, each once with success and once
with an error the spec documents, as a partner would: through the generated functions and
models only (``sync_detailed`` gives the status, the parsed model and the headers). Run by
tests/clients/test_generated_clients.py with the generated package ``erp_gateway_client`` on
``PYTHONPATH`` and ERPGW_URL, ERPGW_TOKEN (all scopes) and ERPGW_NARROW_TOKEN (``returns:read``
only) in the environment, against a gateway that does not post orders itself
(``ERPGW_INTAKE__POST_IN_WORKERS=false``, no ``erp-gateway worker``): the order it submits stays
``accepted`` until it cancels it, which releases its hold, so a rerun finds the same stock.
Exits 0 when every check held, else prints each failure and exits 1.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any, TypeVar

from erp_gateway_client import AuthenticatedClient, Client
from erp_gateway_client.api.admin import (
    cancel_order_intake,
    invalidate_cache,
    list_order_intakes,
    list_shadow_mismatches,
    replay_order_intake,
)
from erp_gateway_client.api.availability import get_availability, get_availability_batch
from erp_gateway_client.api.operations import healthz, readyz
from erp_gateway_client.api.orders import (
    find_orders_by_external_ref,
    get_order,
    get_order_intake,
    submit_order,
    validate_order,
)
from erp_gateway_client.api.prices import check_prices
from erp_gateway_client.api.returns import create_return, get_return
from erp_gateway_client.models import (
    AvailabilityBatch,
    AvailabilityBatchRequest,
    CacheInvalidation,
    CacheInvalidationRequest,
    Health,
    IntakeList,
    Order,
    OrderIntake,
    OrderIntakeRequest,
    OrderIntakeStatus,
    OrderList,
    OrderValidation,
    OrderValidationRequest,
    PriceCheck,
    PriceCheckRequest,
    Problem,
    ReturnAuthorization,
    ReturnRequest,
    ShadowReport,
    SkuAvailability,
)
from erp_gateway_client.types import Response

T = TypeVar("T")
PROBLEM_TYPES = "https://erp-gateway.dev/problems/"
#: well-formed (``in_`` and 26 of [0-9a-z]) but no intake's
UNKNOWN_INTAKE = "in_" + "0" * 26
failures: list[str] = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


def success(operation: str, response: Response[Any], status: int, model: type[T]) -> T | None:
    """The answer is ``status`` with a body the generated client parsed into ``model``."""
    parsed = response.parsed
    check(
        response.status_code == status and isinstance(parsed, model),
        f"{operation}: {status} {model.__name__} (got {int(response.status_code)} {type(parsed).__name__})",
    )
    check(bool(response.headers.get("X-Request-ID")), f"{operation}: X-Request-ID on the answer")
    return parsed if isinstance(parsed, model) else None


def problem(operation: str, response: Response[Any], status: int, problem_type: str) -> Problem | None:
    """The answer is the documented error: ``status`` with a Problem of ``problem_type``."""
    parsed = response.parsed
    got = parsed.type_ if isinstance(parsed, Problem) else type(parsed).__name__
    check(
        response.status_code == status and isinstance(parsed, Problem) and parsed.type_ == PROBLEM_TYPES + problem_type,
        f"{operation}: {status} {problem_type} (got {int(response.status_code)} {got})",
    )
    if isinstance(parsed, Problem):
        check(
            parsed.correlation_id == response.headers.get("X-Request-ID"), f"{operation}: correlationId = X-Request-ID"
        )
    return parsed if isinstance(parsed, Problem) else None


def main() -> int:
    url = os.environ["ERPGW_URL"]
    client = AuthenticatedClient(base_url=url, token=os.environ["ERPGW_TOKEN"], raise_on_unexpected_status=True)
    narrow = AuthenticatedClient(base_url=url, token=os.environ["ERPGW_NARROW_TOKEN"], raise_on_unexpected_status=True)
    forged = AuthenticatedClient(base_url=url, token="not-a-jwt", raise_on_unexpected_status=True)
    anonymous = Client(base_url=url, raise_on_unexpected_status=True)

    # healthz / readyz: open, no token
    success("healthz", healthz.sync_detailed(client=anonymous), 200, Health)
    ready = success("readyz", readyz.sync_detailed(client=anonymous), 200, Health)
    check(ready is not None and ready.status in ("ok", "degraded"), "readyz: status ok or degraded")

    # getAvailability: a miss, then a hit (Cache-Status); the caller's X-Request-ID comes back
    # (invalidated first, so a repeated run starts from a miss as well)
    invalidate_cache.sync_detailed(client=client, body=CacheInvalidationRequest.from_dict({"skus": ["TEE-NVY-M"]}))
    first = get_availability.sync_detailed("TEE-NVY-M", client=client)
    stock = success("getAvailability", first, 200, SkuAvailability)
    check(stock is not None and stock.sku == "TEE-NVY-M", "getAvailability: the SKU asked")
    check("fwd=miss" in first.headers.get("Cache-Status", ""), "getAvailability: Cache-Status fwd=miss")
    mine = f"smoke-{uuid.uuid4().hex}"
    again = get_availability.sync_detailed("TEE-NVY-M", client=client.with_headers({"X-Request-ID": mine}))
    success("getAvailability (cached)", again, 200, SkuAvailability)
    # (a hit or, from the other worker with no Redis shared, a miss)
    check(bool(again.headers.get("Cache-Status")), "getAvailability: Cache-Status the second time")
    check(again.headers.get("X-Request-ID") == mine, "getAvailability: the caller's X-Request-ID echoed")
    check(bool(again.headers.get("RateLimit")), "getAvailability: RateLimit header")
    east = success(
        "getAvailability ?warehouse",
        get_availability.sync_detailed("TEE-NVY-M", client=client, warehouse="EAST"),
        200,
        SkuAvailability,
    )
    check(east is not None and [w.warehouse for w in east.warehouses] == ["EAST"], "getAvailability: warehouse filter")
    problem("getAvailability", get_availability.sync_detailed("NO-SUCH-SKU", client=client), 404, "sku-not-found")

    # getAvailabilityBatch: unknown SKUs listed, not failed; 403 without availability:read
    batch_request = AvailabilityBatchRequest.from_dict({"skus": ["TEE-NVY-M", "MUG-SND", "NO-SUCH-SKU"]})
    batch = success(
        "getAvailabilityBatch",
        get_availability_batch.sync_detailed(client=client, body=batch_request),
        200,
        AvailabilityBatch,
    )
    check(batch is not None and batch.unknown_skus == ["NO-SUCH-SKU"], "getAvailabilityBatch: unknownSkus")
    denied = get_availability_batch.sync_detailed(client=narrow, body=batch_request)
    problem("getAvailabilityBatch", denied, 403, "forbidden")
    check("insufficient_scope" in denied.headers.get("WWW-Authenticate", ""), "getAvailabilityBatch: WWW-Authenticate")

    # checkPrices: a contract price; an unknown customer is a 422
    prices = success(
        "checkPrices",
        check_prices.sync_detailed(
            client=client,
            body=PriceCheckRequest.from_dict(
                {"customer": "C-1001", "currency": "EUR", "lines": [{"sku": "TOTE-NAT", "quantity": 20}]}
            ),
        ),
        200,
        PriceCheck,
    )
    check(prices is not None and len(prices.lines) == 1, "checkPrices: one line")
    unknown_customer = PriceCheckRequest.from_dict(
        {"customer": "C-9999", "currency": "EUR", "lines": [{"sku": "TOTE-NAT", "quantity": 1}]}
    )
    problem("checkPrices", check_prices.sync_detailed(client=client, body=unknown_customer), 422, "unknown-customer")

    # validateOrder: an answer with valid true or false; a forged token is a 401
    cart = OrderValidationRequest.from_dict(
        {"currency": "EUR", "warehouse": "EAST", "lines": [{"sku": "LAMP-WHT", "quantity": 1, "unitPrice": "79.00"}]}
    )
    success("validateOrder", validate_order.sync_detailed(client=client, body=cart), 200, OrderValidation)
    refused = validate_order.sync_detailed(client=forged, body=cart)
    problem("validateOrder", refused, 401, "unauthorized")
    check("invalid_token" in refused.headers.get("WWW-Authenticate", ""), "validateOrder: WWW-Authenticate")

    # getOrder / findOrdersByExternalRef
    order = success("getOrder", get_order.sync_detailed("SO-1002", client=client), 200, Order)
    check(order is not None and order.order_number == "SO-1002", "getOrder: the order asked")
    problem("getOrder", get_order.sync_detailed("SO-9999", client=client), 404, "order-not-found")
    found = success(
        "findOrdersByExternalRef",
        find_orders_by_external_ref.sync_detailed(client=client, external_ref="WC-5002"),
        200,
        OrderList,
    )
    check(
        found is not None and [o.order_number for o in found.items] == ["SO-1002"], "findOrdersByExternalRef: SO-1002"
    )
    problem(
        "findOrdersByExternalRef",
        find_orders_by_external_ref.sync_detailed(client=narrow, external_ref="WC-5002"),
        403,
        "forbidden",
    )

    # submitOrder: 202 with the intake (its line held) and Location; the same key and body again
    # answer the same intake (Idempotent-Replayed); more units than exist are a 409 naming the short
    # line; 403 without orders:write. A fresh externalRef and key per run: a rerun is a new order.
    def checkout(ref: str, quantity: int) -> OrderIntakeRequest:
        return OrderIntakeRequest.from_dict(
            {
                "externalRef": ref,
                "currency": "EUR",
                "lines": [{"sku": "MUG-SND", "quantity": quantity, "unitPrice": "14.00"}],
                "shippingAddress": {
                    "name": "Jo Buyer",
                    "street": "Hauptstrasse 1",
                    "postalCode": "10115",
                    "city": "Berlin",
                    "country": "DE",
                },
                "contact": {"name": "Jo Buyer", "email": "jo@example.com"},
            }
        )

    order_ref = f"SMOKE-{uuid.uuid4().hex}"
    order_key = str(uuid.uuid4())
    submitted_response = submit_order.sync_detailed(
        client=client, body=checkout(order_ref, 1), idempotency_key=order_key
    )
    submitted = success("submitOrder", submitted_response, 202, OrderIntake)
    check(
        submitted is not None
        and submitted.external_ref == order_ref
        and submitted.status == OrderIntakeStatus.ACCEPTED,
        "submitOrder: accepted, with the externalRef sent",
    )
    check(
        submitted is not None and [(h.sku, h.quantity) for h in submitted.held] == [("MUG-SND", 1)],
        "submitOrder: the one unit held",
    )
    intake_location = submitted_response.headers.get("Location", "")
    check(
        submitted is not None and intake_location.endswith("/v1/order-intakes/" + submitted.intake_id),
        f"submitOrder: Location {intake_location}",
    )
    check("Idempotent-Replayed" not in submitted_response.headers, "submitOrder: a new intake is not replayed")
    resubmitted_response = submit_order.sync_detailed(
        client=client, body=checkout(order_ref, 1), idempotency_key=order_key
    )
    resubmitted = success("submitOrder (replay)", resubmitted_response, 202, OrderIntake)
    check(resubmitted_response.headers.get("Idempotent-Replayed") == "true", "submitOrder: Idempotent-Replayed: true")
    check(
        submitted is not None and resubmitted is not None and resubmitted.intake_id == submitted.intake_id,
        "submitOrder: the replay is the same intake",
    )
    short = problem(
        "submitOrder",
        submit_order.sync_detailed(
            client=client, body=checkout(f"SMOKE-{uuid.uuid4().hex}", 1_000_000), idempotency_key=str(uuid.uuid4())
        ),
        409,
        "insufficient-stock",
    )
    short_lines = short.short_lines if short is not None and isinstance(short.short_lines, list) else []
    check(
        [(s.line, s.sku, s.requested) for s in short_lines] == [(0, "MUG-SND", 1_000_000)]
        and short_lines[0].available < 1_000_000,
        "submitOrder: shortLines names the line",
    )
    problem(
        "submitOrder (narrow token)",
        submit_order.sync_detailed(
            client=narrow, body=checkout(f"SMOKE-{uuid.uuid4().hex}", 1), idempotency_key=str(uuid.uuid4())
        ),
        403,
        "forbidden",
    )

    # getOrderIntake: the intake submitted; an unknown (well-formed) id is a 404
    if submitted is not None:
        read = success(
            "getOrderIntake", get_order_intake.sync_detailed(submitted.intake_id, client=client), 200, OrderIntake
        )
        check(
            read is not None and read.intake_id == submitted.intake_id and read.status == OrderIntakeStatus.ACCEPTED,
            "getOrderIntake: the intake submitted, accepted",
        )
    problem("getOrderIntake", get_order_intake.sync_detailed(UNKNOWN_INTAKE, client=client), 404, "intake-not-found")

    # listOrderIntakes (admin): the accepted backlog holds the intake; 403 without the admin scope
    backlog = success(
        "listOrderIntakes",
        list_order_intakes.sync_detailed(client=client, status="accepted"),
        200,
        IntakeList,
    )
    check(
        backlog is not None
        and submitted is not None
        and submitted.intake_id in [i.intake_id for i in backlog.items]
        and all(i.status == OrderIntakeStatus.ACCEPTED for i in backlog.items),
        "listOrderIntakes: the accepted intakes, the one submitted among them",
    )
    problem(
        "listOrderIntakes",
        list_order_intakes.sync_detailed(client=narrow, status="accepted"),
        403,
        "forbidden",
    )

    # listShadowMismatches (admin): no shadow configured, so none; 403 without the admin scope
    report = success("listShadowMismatches", list_shadow_mismatches.sync_detailed(client=client), 200, ShadowReport)
    check(report is not None and report.items == [], "listShadowMismatches: no shadow reads, no mismatches")
    problem("listShadowMismatches", list_shadow_mismatches.sync_detailed(client=narrow), 403, "forbidden")

    # replayOrderIntake / cancelOrderIntake (admin): replaying an intake not given up changes
    # nothing; cancelled (its hold released), cancelled again as it is; a cancelled intake cannot
    # be replayed (409); an unknown intake cannot be cancelled (404)
    if submitted is not None:
        replayed = success(
            "replayOrderIntake",
            replay_order_intake.sync_detailed(submitted.intake_id, client=client),
            200,
            OrderIntake,
        )
        check(
            replayed is not None and replayed.status == OrderIntakeStatus.ACCEPTED,
            "replayOrderIntake: an accepted intake stays accepted",
        )
        for attempt in ("cancelOrderIntake", "cancelOrderIntake (again)"):
            cancelled = success(
                attempt, cancel_order_intake.sync_detailed(submitted.intake_id, client=client), 200, OrderIntake
            )
            check(
                cancelled is not None and cancelled.status == OrderIntakeStatus.CANCELLED,
                f"{attempt}: status cancelled",
            )
        problem(
            "replayOrderIntake",
            replay_order_intake.sync_detailed(submitted.intake_id, client=client),
            409,
            "intake-not-changeable",
        )
    problem(
        "cancelOrderIntake",
        cancel_order_intake.sync_detailed(UNKNOWN_INTAKE, client=client),
        404,
        "intake-not-found",
    )

    # createReturn: 201 with Location; the same key replays (Idempotent-Replayed); the same key
    # with another body is a 422
    key = str(uuid.uuid4())
    body = ReturnRequest.from_dict(
        {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}
    )
    created_response = create_return.sync_detailed(client=client, body=body, idempotency_key=key)
    created = success("createReturn", created_response, 201, ReturnAuthorization)
    location = created_response.headers.get("Location", "")
    check(
        created is not None and location.endswith("/v1/returns/" + created.rma_number),
        f"createReturn: Location {location}",
    )
    replay_response = create_return.sync_detailed(client=client, body=body, idempotency_key=key)
    replay = success("createReturn (replay)", replay_response, 201, ReturnAuthorization)
    check(replay_response.headers.get("Idempotent-Replayed") == "true", "createReturn: Idempotent-Replayed: true")
    check(
        created is not None and replay is not None and replay.rma_number == created.rma_number,
        "createReturn: the replay is the same RMA",
    )
    other = ReturnRequest.from_dict(
        {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "damaged"}]}
    )
    problem(
        "createReturn",
        create_return.sync_detailed(client=client, body=other, idempotency_key=key),
        422,
        "idempotency-key-reused",
    )

    # getReturn
    if created is not None:
        got = success(
            "getReturn", get_return.sync_detailed(created.rma_number, client=client), 200, ReturnAuthorization
        )
        check(got is not None and got.rma_number == created.rma_number, "getReturn: the RMA created")
    problem("getReturn", get_return.sync_detailed("RMA-999999", client=client), 404, "return-authorization-not-found")

    # invalidateCache (admin); 403 without the admin scope
    dropped = success(
        "invalidateCache",
        invalidate_cache.sync_detailed(client=client, body=CacheInvalidationRequest.from_dict({"skus": ["TEE-NVY-M"]})),
        200,
        CacheInvalidation,
    )
    check(dropped is not None and dropped.invalidated_entries >= 0, "invalidateCache: invalidatedEntries")
    problem(
        "invalidateCache",
        invalidate_cache.sync_detailed(client=narrow, body=CacheInvalidationRequest.from_dict({"skus": ["TEE-NVY-M"]})),
        403,
        "forbidden",
    )

    for c in (client, narrow, forged, anonymous):
        c.get_httpx_client().close()
    print(f"python client: {len(failures)} failed" if failures else "python client: every check held")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
