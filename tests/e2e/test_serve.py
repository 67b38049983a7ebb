"""The real ``erp-gateway serve`` process, 2 gunicorn workers, called over HTTP on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def http(gateway: GatewayProcess, token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway.url, timeout=10.0, headers=headers) as client:
        yield client


def test_runs_two_workers(gateway: GatewayProcess) -> None:
    assert len(gateway.worker_pids()) == 2


def test_every_endpoint_over_http(http: httpx.Client) -> None:
    assert http.get("/healthz").json()["status"] == "ok"
    assert http.get("/readyz").status_code == 200
    assert http.get("/v1/availability/MUG-SND").json()["availableToPromise"] == 136
    batch = http.post("/v1/availability/batch", json={"skus": ["MUG-SND", "NOPE"], "warehouses": ["WEST"]}).json()
    assert batch["unknownSkus"] == ["NOPE"]
    assert batch["items"][0]["onHand"] == 100
    prices = http.post(
        "/v1/prices/check",
        json={"customer": "C-1001", "currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 24}]},
    ).json()
    assert prices["lines"][0]["unitPrice"] == "11.20"
    verdict = http.post(
        "/v1/orders/validate",
        json={"currency": "EUR", "lines": [{"sku": "MUG-SLT", "quantity": 1, "unitPrice": "14.00"}]},
    ).json()
    assert [p["code"] for p in verdict["problems"]] == ["not_salable"]
    assert http.get("/v1/orders/SO-1004").json()["invoiceState"] == "invoiced"
    assert http.get("/v1/orders", params={"externalRef": "WC-5002"}).json()["items"][0]["orderNumber"] == "SO-1002"
    assert "<html" in http.get("/docs").text.lower()


def test_returns_are_idempotent_across_workers(http: httpx.Client, gateway: GatewayProcess, token: str) -> None:
    key = str(uuid.uuid4())
    body = {"orderNumber": "SO-1002", "lines": [{"lineRef": "2", "quantity": 2, "reason": "damaged"}]}
    # Fresh connections spread the retries over both workers.
    answers = []
    for _ in range(6):
        with httpx.Client(base_url=gateway.url, timeout=10.0, headers={"Authorization": f"Bearer {token}"}) as fresh:
            answers.append(fresh.post("/v1/returns", json=body, headers={"Idempotency-Key": key}))
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["rmaNumber"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 5
    rma = answers[0].json()["rmaNumber"]
    assert http.get(f"/v1/returns/{rma}").json()["lines"][0]["quantity"] == 2
    assert http.get("/v1/orders/SO-1002").json()["lines"][1]["returnedQuantity"] == 2


def test_errors_are_problems_with_the_callers_request_id(http: httpx.Client) -> None:
    response = http.get("/v1/orders/SO-404", headers={"X-Request-ID": "e2e-check-1"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"] == "e2e-check-1"
    assert response.json()["correlationId"] == "e2e-check-1"


def test_the_sample_database_lives_where_configured(gateway: GatewayProcess) -> None:
    assert Path(gateway.log_path.parent / "sample.sqlite").exists()


def test_every_worker_trusts_the_dev_key_and_refuses_anything_else(gateway: GatewayProcess, token: str) -> None:
    for _ in range(6):  # fresh connections reach both workers
        with httpx.Client(base_url=gateway.url, timeout=10.0) as fresh:
            assert fresh.get("/v1/availability/MUG-SND", headers={"Authorization": f"Bearer {token}"}).is_success
            refused = fresh.get("/v1/availability/MUG-SND")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "AUTH DEV MODE IS ON" in gateway.log_tail(200)
