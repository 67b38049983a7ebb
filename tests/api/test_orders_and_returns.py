"""HTTP behaviour of /v1/orders and /v1/returns."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import TestClient

from tests.conftest import assert_problem


def _key() -> str:
    return str(uuid.uuid4())


def test_order_by_number(client: TestClient[Any]) -> None:
    body = client.get("/v1/orders/SO-1002").json()
    assert body["status"] == "partially_shipped"
    assert body["lines"][0] == {
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
    assert body["shipments"][0]["trackingReference"] == "1Z999AA10123456784"
    assert body["customer"]["email"] == "purchasing@acme-retail.example"


def test_order_by_external_ref(client: TestClient[Any]) -> None:
    body = client.get("/v1/orders", params={"externalRef": "WC-5005"}).json()
    assert [(o["orderNumber"], o["paymentState"]) for o in body["items"]] == [("SO-1005", "paid")]
    assert client.get("/v1/orders", params={"externalRef": "WC-404"}).json() == {"items": []}


def test_order_errors(client: TestClient[Any]) -> None:
    assert_problem(client.get("/v1/orders/SO-404"), 404, "order-not-found")
    body = assert_problem(client.get("/v1/orders"), 400, "validation-failed")
    assert body["errors"][0]["field"] == "externalRef"


def test_return_lifecycle(client: TestClient[Any]) -> None:
    key = _key()
    request = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}
    created = client.post("/v1/returns", json=request, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    rma = created.json()
    assert created.headers["location"] == f"/v1/returns/{rma['rmaNumber']}"
    assert "idempotent-replayed" not in created.headers
    assert rma["refundEstimate"] == {"currency": "EUR", "amount": "59.00"}

    replay = client.post("/v1/returns", json=request, headers={"Idempotency-Key": key})
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == rma

    assert client.get(f"/v1/returns/{rma['rmaNumber']}").json() == rma
    order = client.get("/v1/orders/SO-1003").json()
    assert order["lines"][0]["returnedQuantity"] == 1

    again = client.post("/v1/returns", json=request, headers={"Idempotency-Key": _key()})
    body = assert_problem(again, 422, "return-quantity-exceeded")
    assert body["line"] == "lines[0].quantity"
    assert body["available"] == 0


def test_same_key_with_another_body_is_a_422(client: TestClient[Any]) -> None:
    key = _key()
    first = {"orderNumber": "SO-1005", "lines": [{"sku": "TOTE-NAT", "quantity": 1, "reason": "damaged"}]}
    assert client.post("/v1/returns", json=first, headers={"Idempotency-Key": key}).status_code == 201
    second = {"orderNumber": "SO-1005", "lines": [{"sku": "TOTE-NAT", "quantity": 2, "reason": "damaged"}]}
    assert_problem(
        client.post("/v1/returns", json=second, headers={"Idempotency-Key": key}), 422, "idempotency-key-reused"
    )


def test_return_errors(client: TestClient[Any]) -> None:
    line = [{"sku": "MUG-SND", "quantity": 1, "reason": "damaged"}]
    missing_key = client.post("/v1/returns", json={"orderNumber": "SO-1003", "lines": line})
    assert assert_problem(missing_key, 400, "validation-failed")["errors"][0]["field"] == "Idempotency-Key"
    short_key = client.post(
        "/v1/returns", json={"orderNumber": "SO-1003", "lines": line}, headers={"Idempotency-Key": "k"}
    )
    assert_problem(short_key, 400, "validation-failed")
    headers = {"Idempotency-Key": _key()}
    assert_problem(
        client.post("/v1/returns", json={"orderNumber": "SO-404", "lines": line}, headers=headers),
        404,
        "order-not-found",
    )
    headers = {"Idempotency-Key": _key()}
    assert_problem(
        client.post("/v1/returns", json={"orderNumber": "SO-1001", "lines": line}, headers=headers),
        409,
        "nothing-delivered",
    )
    bad_reason = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "meh"}]}
    body = assert_problem(
        client.post("/v1/returns", json=bad_reason, headers={"Idempotency-Key": _key()}), 400, "validation-failed"
    )
    assert body["errors"][0]["field"] == "lines[0].reason"
    assert_problem(client.get("/v1/returns/RMA-404"), 404, "return-authorization-not-found")
