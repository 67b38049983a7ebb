"""HTTP behaviour of /v1/availability."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.conftest import assert_problem


def test_one_sku(client: TestClient[Any]) -> None:
    response = client.get("/v1/availability/LAMP-WHT")
    assert response.status_code == 200
    body = response.json()
    assert body["sku"] == "LAMP-WHT"
    assert (body["onHand"], body["committed"], body["availableToPromise"]) == (72, 1, 71)
    assert {w["warehouse"]: w["availableToPromise"] for w in body["warehouses"]} == {"EAST": 11, "WEST": 60}
    assert body["asOf"].endswith("Z")


def test_one_sku_in_one_warehouse(client: TestClient[Any]) -> None:
    body = client.get("/v1/availability/LAMP-WHT", params={"warehouse": "WEST"}).json()
    assert [w["warehouse"] for w in body["warehouses"]] == ["WEST"]
    assert body["onHand"] == 60


def test_unknown_sku_is_a_404_problem(client: TestClient[Any]) -> None:
    body = assert_problem(client.get("/v1/availability/NO-SUCH-SKU"), 404, "sku-not-found")
    assert "NO-SUCH-SKU" in body["detail"]


def test_unknown_warehouse_is_a_422_problem(client: TestClient[Any]) -> None:
    body = assert_problem(client.get("/v1/availability/MUG-SND?warehouse=MOON"), 422, "unknown-warehouse")
    assert body["errors"][0]["field"] == "warehouse"


def test_malformed_sku_is_a_400_naming_the_field(client: TestClient[Any]) -> None:
    body = assert_problem(client.get("/v1/availability/%20bad%20sku"), 400, "validation-failed")
    assert body["errors"][0]["field"] == "sku"


def test_batch_reports_unknown_skus_per_item(client: TestClient[Any]) -> None:
    response = client.post("/v1/availability/batch", json={"skus": ["MUG-SND", "NOPE-1", "CAP-OLV"]})
    assert response.status_code == 200
    body = response.json()
    assert [item["sku"] for item in body["items"]] == ["MUG-SND", "CAP-OLV"]
    assert body["unknownSkus"] == ["NOPE-1"]


def test_batch_limits(client: TestClient[Any]) -> None:
    too_many = {"skus": [f"SKU-{i}" for i in range(201)]}
    body = assert_problem(client.post("/v1/availability/batch", json=too_many), 400, "validation-failed")
    assert body["errors"][0]["field"] == "skus"
    assert_problem(client.post("/v1/availability/batch", json={"skus": []}), 400, "validation-failed")
    full = client.post("/v1/availability/batch", json={"skus": [f"SKU-{i}" for i in range(200)]})
    assert full.status_code == 200
    assert len(full.json()["unknownSkus"]) == 200


def test_batch_rejects_unknown_fields_and_wrong_types(client: TestClient[Any]) -> None:
    body = assert_problem(
        client.post("/v1/availability/batch", json={"skus": ["MUG-SND"], "warehouse": "EAST"}), 400, "validation-failed"
    )
    assert "warehouse" in body["detail"]
    body = assert_problem(client.post("/v1/availability/batch", json={"skus": "MUG-SND"}), 400, "validation-failed")
    assert body["errors"][0]["field"] == "skus"


def test_malformed_json_is_a_400_problem(client: TestClient[Any]) -> None:
    response = client.post(
        "/v1/availability/batch", content=b'{"skus": [', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "validation-failed")


def test_oversized_body_is_a_413_problem(client: TestClient[Any]) -> None:
    huge = b'{"skus": ["' + b"A" * 300_000 + b'"]}'
    response = client.post("/v1/availability/batch", content=huge, headers={"content-type": "application/json"})
    assert_problem(response, 413, "payload-too-large")
