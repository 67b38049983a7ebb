"""Requests are read exactly as the contract says, once for every route (gateway.decoding):
JSON only, not nested without end, strict types, money as a finite decimal string, and the
published spec states every constraint that is enforced."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from gateway.cli import DEFAULT_SPEC_PATH
from gateway.decoding import MAX_JSON_DEPTH, json_too_deep
from tests.conftest import assert_problem

SPEC = Path(__file__).parents[2] / DEFAULT_SPEC_PATH
JSON = {"content-type": "application/json"}
CART = {"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 2}]}


def _cart(unit_price: Any) -> bytes:
    line = b'{"sku": "LAMP-WHT", "quantity": 1, "unitPrice": ' + unit_price + b"}"
    return b'{"currency": "EUR", "lines": [' + line + b"]}"


@pytest.mark.parametrize("depth", [1_000, 20_000])
def test_json_nested_thousands_deep_is_a_400_not_a_500(client: TestClient[Any], depth: int) -> None:
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"currency": "EUR", "lines": ' + b"[" * depth + b"]" * depth + b"}",
        b'{"skus": ["MUG-SND"], "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}",
    ):
        for path in ("/v1/prices/check", "/v1/availability/batch"):
            problem = assert_problem(client.post(path, content=body, headers=JSON), 400, "validation-failed")
            assert "nested deeper than 64" in problem["detail"]


def test_depth_is_counted_outside_strings_and_up_to_the_limit() -> None:
    assert not json_too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert json_too_deep(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not json_too_deep(b'{"comment": "' + b"[{" * 1000 + b'\\"[["}')
    # one level per pass: alternating brackets are not undercounted
    alternating = b"{[" * 33 + b"]}" * 33
    assert json_too_deep(alternating)
    assert not json_too_deep(b'{"lines": [' + b'{"sku": "A", "quantity": 1},' * 199 + b"{}]}")


def test_the_depth_scan_is_cheap() -> None:
    normal = msgspec.json.encode({"currency": "EUR", "lines": [{"sku": f"S-{i}", "quantity": 1} for i in range(200)]})
    attack = b"[" * 128_000 + b"]" * 128_000  # the whole 256 KiB body limit
    started = time.perf_counter()
    for _ in range(100):
        json_too_deep(normal)
    json_too_deep(attack)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "money",
    [
        b'"NaN"',
        b'"Infinity"',
        b'"sNaN"',
        b'"-inf"',
        b'"1e5"',
        b'"079.00"',
        b'" 79.00"',
        b"1e999",
        b"79.00",
        b'"79.001"',
    ],
)
def test_money_is_a_finite_decimal_string(client: TestClient[Any], money: bytes) -> None:
    response = client.post("/v1/orders/validate", content=_cart(money), headers=JSON)
    problem = assert_problem(response, 400, "validation-failed")
    assert problem["errors"][0]["field"] == "lines[0].unitPrice"


def test_money_as_callers_send_it_is_accepted(client: TestClient[Any]) -> None:
    for money in (b'"79.00"', b'"79"', b'"79.0"', b'"0.50"'):
        response = client.post("/v1/orders/validate", content=_cart(money), headers=JSON)
        assert response.status_code == 200, response.text
    assert client.post("/v1/orders/validate", content=_cart(b'"79.00"'), headers=JSON).json()["valid"] is True


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/prices/check", {"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": "2"}]}, "lines[0].quantity"),
        ("/v1/prices/check", {"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": 2.0}]}, "lines[0].quantity"),
        ("/v1/prices/check", {"currency": "EUR", "lines": [{"sku": "MUG-SND", "quantity": True}]}, "lines[0].quantity"),
        ("/v1/availability/batch", {"skus": "MUG-SND"}, "skus"),
        ("/v1/availability/batch", {"skus": [1]}, "skus[0]"),
        (
            "/v1/returns",
            {"orderNumber": 1003, "lines": [{"sku": "X", "quantity": 1, "reason": "other"}]},
            "orderNumber",
        ),
    ],
)
def test_bodies_are_decoded_strictly(client: TestClient[Any], path: str, body: Any, field: str) -> None:
    response = client.post(path, json=body, headers={"Idempotency-Key": "strict-decoding-1"})
    assert assert_problem(response, 400, "validation-failed")["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ],
)
def test_a_body_that_is_not_json_is_a_415(client: TestClient[Any], content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/prices/check", "/v1/availability/batch", "/v1/orders/validate", "/v1/returns"):
        response = client.post(
            path, content=msgspec.json.encode(CART), headers={**headers, "Idempotency-Key": "media-type-1"}
        )
        assert_problem(response, 415, "unsupported-media-type")


def test_two_content_types_are_a_415(client: TestClient[Any]) -> None:
    twice = [("content-type", "application/json"), ("content-type", "text/plain")]
    response = client.post("/v1/prices/check", content=msgspec.json.encode(CART), headers=twice)
    assert_problem(response, 415, "unsupported-media-type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/x+json", 'application/json; charset="UTF-8"'],
)
def test_json_media_types_are_accepted(client: TestClient[Any], content_type: str) -> None:
    response = client.post(
        "/v1/prices/check", content=msgspec.json.encode(CART), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text


def test_a_single_valued_parameter_given_twice_is_a_400(client: TestClient[Any]) -> None:
    twice = client.get("/v1/availability/MUG-SND?warehouse=EAST&warehouse=WEST")
    assert assert_problem(twice, 400, "validation-failed")["errors"][0]["field"] == "warehouse"
    twice = client.get("/v1/orders?externalRef=WC-5001&externalRef=WC-5002")
    assert assert_problem(twice, 400, "validation-failed")["errors"][0]["field"] == "externalRef"
    assert client.get("/v1/availability/MUG-SND?warehouse=EAST").status_code == 200
    headers = [("Idempotency-Key", "dup-key-00001"), ("Idempotency-Key", "dup-key-00002")]
    body = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}
    response = client.post("/v1/returns", content=msgspec.json.encode(body), headers=[*headers, *JSON.items()])
    assert_problem(response, 400, "validation-failed")


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = msgspec.json.decode(SPEC.read_bytes())["components"]["schemas"]
    return schemas


def test_the_spec_states_item_constraints_unknown_fields_and_money() -> None:
    schemas = _schemas()
    batch = schemas["AvailabilityBatchRequest"]["properties"]
    assert batch["skus"]["items"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._/-]*$"
    assert batch["skus"]["items"]["maxLength"] == 64
    warehouses = next(s for s in batch["warehouses"]["oneOf"] if s["type"] == "array")
    assert warehouses["items"]["pattern"] == "^[A-Za-z0-9_-]+$"
    for name in ("AvailabilityBatchRequest", "PriceCheckRequest", "PriceCheckLine", "OrderValidationRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    for name in ("ValidationLine", "ReturnRequest", "ReturnRequestLine", "CacheInvalidationRequest"):
        assert schemas[name]["additionalProperties"] is False, name
    assert "additionalProperties" not in schemas["PriceCheck"]  # answers may gain fields
    unit_price = schemas["ValidationLine"]["properties"]["unitPrice"]
    assert unit_price["type"] == "string"
    assert unit_price["pattern"] == r"^-?(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"
    assert schemas["PriceCheck"]["properties"]["total"]["pattern"] == unit_price["pattern"]
