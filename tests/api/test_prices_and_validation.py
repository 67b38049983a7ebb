"""HTTP behaviour of /v1/prices/check and /v1/orders/validate."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.conftest import assert_problem


def test_price_check_sends_money_as_decimal_strings(client: TestClient[Any]) -> None:
    response = client.post(
        "/v1/prices/check",
        json={"customer": "C-1001", "currency": "EUR", "lines": [{"sku": "TOTE-NAT", "quantity": 10}]},
    )
    assert response.status_code == 200
    body = response.json()
    line = body["lines"][0]
    assert (line["unitPrice"], line["listPrice"], line["lineTotal"]) == ("15.30", "18.00", "153.00")
    assert line["source"] == {"kind": "price_list", "priceList": "ACME-2026", "rule": "ACME-TOTE-10"}
    assert (body["total"], body["listTotal"]) == ("153.00", "180.00")
    assert body["rounding"] == {"minorUnit": 2, "mode": "half_up"}


def test_anonymous_price_check(client: TestClient[Any]) -> None:
    body = client.post(
        "/v1/prices/check", json={"currency": "EUR", "lines": [{"sku": "PEN-BLU", "quantity": 3}]}
    ).json()
    assert body["customer"] is None
    assert body["lines"][0]["source"] == {"kind": "list_price", "priceList": None, "rule": None}
    assert body["total"] == "14.70"


def test_price_check_errors(client: TestClient[Any]) -> None:
    unknown_sku = client.post(
        "/v1/prices/check",
        json={"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 1}, {"sku": "ZZ", "quantity": 1}]},
    )
    body = assert_problem(unknown_sku, 422, "unknown-sku")
    assert body["errors"] == [{"field": "lines[1].sku", "message": body["detail"]}]
    assert_problem(
        client.post(
            "/v1/prices/check",
            json={"customer": "C-404", "currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 1}]},
        ),
        422,
        "unknown-customer",
    )
    zero = client.post("/v1/prices/check", json={"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 0}]})
    assert assert_problem(zero, 400, "validation-failed")["errors"][0]["field"] == "lines[0].quantity"
    floaty = client.post("/v1/prices/check", json={"currency": "eur", "lines": [{"sku": "MUG-SND", "quantity": 1}]})
    assert assert_problem(floaty, 400, "validation-failed")["errors"][0]["field"] == "currency"


def test_validation_answers_per_line_problems(client: TestClient[Any]) -> None:
    response = client.post(
        "/v1/orders/validate",
        json={
            "currency": "EUR",
            "warehouse": "EAST",
            "lines": [
                {"sku": "LAMP-WHT", "quantity": 12, "unitPrice": "79.00"},
                {"sku": "TEE-NVY-M", "quantity": 1, "unitPrice": "19.90"},
            ],
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert [(p["line"], p["code"], p["available"]) for p in body["problems"]] == [(0, "insufficient_stock", 11)]


def test_a_valid_cart(client: TestClient[Any]) -> None:
    body = client.post(
        "/v1/orders/validate",
        json={
            "customer": "C-1001",
            "currency": "EUR",
            "lines": [{"sku": "MUG-SND", "quantity": 6, "unitPrice": "12.60"}],
        },
    ).json()
    assert body == {"valid": True, "problems": [], "checkedAt": body["checkedAt"]}


def test_a_price_is_a_decimal_string_never_a_json_number(client: TestClient[Any]) -> None:
    # 19.9 as a binary float is 19.899999...: money is a string on the wire (tests/api/test_strict_decoding.py).
    number = client.post(
        "/v1/orders/validate",
        json={"currency": "EUR", "lines": [{"sku": "TEE-NVY-M", "quantity": 1, "unitPrice": 19.9}]},
    )
    assert assert_problem(number, 400, "validation-failed")["errors"][0]["field"] == "lines[0].unitPrice"
    response = client.post(
        "/v1/orders/validate",
        json={"currency": "EUR", "lines": [{"sku": "TEE-NVY-M", "quantity": 1, "unitPrice": "19.9"}]},
    )
    assert response.json()["valid"] is True
    text = client.post(
        "/v1/orders/validate",
        json={"currency": "EUR", "lines": [{"sku": "TEE-NVY-M", "quantity": 1, "unitPrice": "not money"}]},
    )
    assert assert_problem(text, 400, "validation-failed")["errors"][0]["field"] == "lines[0].unitPrice"
