"""The real gateway stack (auth, policies, routes) configured for Tryton: every endpoint, real ERP data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from gateway.settings import Settings
from tests.conftest import AppClient, assert_problem
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

pytestmark = pytest.mark.tryton


@pytest.fixture
def tryton_client(tryton: TrytonServer, app_client: AppClient) -> Iterator[TestClient[Any]]:
    settings = Settings(backend="tryton", tryton=tryton_settings(tryton))
    # No Redis: cache, quotas and breakers per process, as `make run` does.
    settings = msgspec.structs.replace(settings, quotas=msgspec.structs.replace(settings.quotas, enabled=False))
    with app_client(settings) as client:
        yield client


def test_readiness_names_the_tryton_backend(tryton_client: TestClient[Any]) -> None:
    ready = tryton_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert "backend:tryton" in ready.text


def test_availability_single_and_batch(tryton_client: TestClient[Any]) -> None:
    one = tryton_client.get("/v1/availability/LAMP-WHT", params={"warehouse": "EAST"}).json()
    assert (one["onHand"], one["committed"], one["availableToPromise"]) == (12, 1, 11)
    batch = tryton_client.post(
        "/v1/availability/batch", json={"skus": ["TEE-NVY-M", "MUG-SND", "NO-SUCH-SKU"], "warehouses": ["EAST"]}
    ).json()
    assert [i["sku"] for i in batch["items"]] == ["TEE-NVY-M", "MUG-SND"]
    assert batch["unknownSkus"] == ["NO-SUCH-SKU"]
    assert_problem(tryton_client.get("/v1/availability/NO-SUCH-SKU"), 404, "sku-not-found")


def test_prices_and_validation(tryton_client: TestClient[Any]) -> None:
    prices = tryton_client.post(
        "/v1/prices/check",
        json={"customer": "C-1001", "currency": "EUR", "lines": [{"sku": "TOTE-NAT", "quantity": 20}]},
    ).json()
    assert prices["lines"][0]["unitPrice"] == "15.30"
    assert prices["lines"][0]["source"]["priceList"] == "ACME-2026"
    verdict = tryton_client.post(
        "/v1/orders/validate",
        json={
            "currency": "EUR",
            "warehouse": "EAST",
            "lines": [{"sku": "LAMP-WHT", "quantity": 12, "unitPrice": "79.00"}],
        },
    ).json()
    assert [(p["code"], p["available"]) for p in verdict["problems"]] == [("insufficient_stock", 11)]
    body = assert_problem(
        tryton_client.post(
            "/v1/prices/check",
            json={"customer": "C-9999", "currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 1}]},
        ),
        422,
        "unknown-customer",
    )
    assert "C-9999" in body["detail"]


def test_orders_by_number_and_reference(tryton_client: TestClient[Any]) -> None:
    order = tryton_client.get("/v1/orders/SO-1002").json()
    assert order["status"] == "partially_shipped"
    assert order["lines"][0]["description"] == "LED desk lamp, white"
    assert order["shipments"][0]["trackingReference"] == "1Z999AA10123456784"
    found = tryton_client.get("/v1/orders", params={"externalRef": "WC-5005"}).json()
    assert [(o["orderNumber"], o["paymentState"]) for o in found["items"]] == [("SO-1005", "paid")]
    assert_problem(tryton_client.get("/v1/orders/SO-404"), 404, "order-not-found")


def test_return_lifecycle_against_tryton(tryton_client: TestClient[Any]) -> None:
    key = str(uuid.uuid4())
    request = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}
    created = tryton_client.post("/v1/returns", json=request, headers={"Idempotency-Key": key})
    assert created.status_code == 201, created.text
    rma = created.json()
    assert rma["rmaNumber"].startswith("RMA-")  # Tryton's complaint sequence
    assert rma["refundEstimate"] == {"currency": "EUR", "amount": "59.00"}
    replay = tryton_client.post("/v1/returns", json=request, headers={"Idempotency-Key": key})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == rma
    assert tryton_client.get(f"/v1/returns/{rma['rmaNumber']}").json() == rma
    over = tryton_client.post("/v1/returns", json=request, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert_problem(over, 422, "return-quantity-exceeded")
    other = {**request, "lines": [{"sku": "SOCK-ANT-43-46", "quantity": 1, "reason": "wrong_item"}]}
    assert_problem(
        tryton_client.post("/v1/returns", json=other, headers={"Idempotency-Key": key}), 422, "idempotency-key-reused"
    )
    assert_problem(tryton_client.get("/v1/returns/RMA-999999"), 404, "return-authorization-not-found")
