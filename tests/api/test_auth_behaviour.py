"""What authentication changes for callers who get in: PII minimization, the audit log,
security headers, header limits and CORS."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from gateway.settings import Settings
from tests.conftest import AppClient, Mint, assert_problem


def _orders(client: TestClient[Any], token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    one = client.get("/v1/orders/SO-1002", headers=headers)
    found = client.get("/v1/orders", params={"externalRef": "WC-5002"}, headers=headers)
    assert one.status_code == 200, one.text
    assert found.status_code == 200, found.text
    return one.json()["customer"], found.json()["items"][0]["customer"]


def test_order_lookups_without_the_pii_scope_hide_contact_data(client: TestClient[Any], mint: Mint) -> None:
    for customer in _orders(client, mint("orders:read")):
        assert customer["email"] is None
        assert customer["phone"] is None
        assert customer["address"] is None
        assert customer["reference"] == "C-1001"  # not personal data: stays
        assert customer["name"]


def test_order_lookups_with_the_pii_scope_show_contact_data(client: TestClient[Any], mint: Mint) -> None:
    for customer in _orders(client, mint("orders:read", "orders:read:pii")):
        assert customer["email"]
        assert "@" in customer["email"]
        assert customer["address"]["city"]


def test_the_pii_scope_alone_does_not_open_order_lookups(client: TestClient[Any], mint: Mint) -> None:
    response = client.get("/v1/orders/SO-1002", headers={"Authorization": f"Bearer {mint('orders:read:pii')}"})
    assert_problem(response, 403, "forbidden")


def _audit(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "erp_gateway.audit"]


def test_writes_are_audited_without_tokens_or_personal_data(
    client: TestClient[Any], mint: Mint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="erp_gateway.audit")
    token = mint("returns:write", "orders:read", client_id="helpdesk")
    key = str(uuid.uuid4())
    body = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key, "X-Request-ID": "audit-1"}
    first = client.post("/v1/returns", json=body, headers=headers)
    replay = client.post("/v1/returns", json=body, headers={**headers, "X-Request-ID": "audit-2"})
    client.get("/v1/orders/SO-1003", headers=headers)  # a read: not audited
    denied = client.post(
        "/v1/returns", json=body, headers={**headers, "Authorization": f"Bearer {mint('orders:read')}"}
    )
    anonymous = client.post("/v1/returns", json=body, headers={"Idempotency-Key": key, "Authorization": ""})
    assert (first.status_code, replay.status_code, denied.status_code, anonymous.status_code) == (201, 201, 403, 401)

    records = _audit(caplog)
    assert [(r["status"], r["outcome"], r["replayed"]) for r in records] == [
        (201, "success", False),
        (201, "success", True),
        (403, "denied", False),
        (401, "denied", False),
    ]
    created = records[0]
    assert created["client_id"] == "helpdesk"
    assert created["client_class"] == "default"
    assert created["action"] == "createReturn"
    assert created["method"] == "POST"
    assert created["target"] == first.headers["location"]
    assert created["correlation_id"] == "audit-1"
    assert created["ts"].endswith("Z")
    assert records[3]["client_id"] is None
    text = caplog.text
    assert token not in text
    assert token.split(".")[2] not in text
    assert "@" not in text  # no customer e-mail (or any other body content)


def test_admin_operations_are_audited(client: TestClient[Any], mint: Mint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="erp_gateway.audit")
    response = client.post(
        "/v1/admin/cache/invalidate", json={"skus": ["MUG-SND"]}, headers={"Authorization": f"Bearer {mint('admin')}"}
    )
    assert response.status_code == 200, response.text
    (record,) = _audit(caplog)
    assert record["action"] == "invalidateCache"
    assert record["status"] == 200


def test_security_headers_on_every_answer(client: TestClient[Any]) -> None:
    ok = client.get("/v1/availability/MUG-SND")
    problem = client.get("/v1/orders/SO-404")
    health = client.get("/healthz")
    docs = client.get("/docs")
    for response in (ok, problem, health, docs):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    for response in (ok, problem):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "content-security-policy" not in docs.headers  # the reference page loads its renderer
    assert (
        "access-control-allow-origin"
        not in client.get("/v1/availability/MUG-SND", headers={"Origin": "https://x"}).headers
    )


def test_oversized_headers_are_a_431_problem(client: TestClient[Any]) -> None:
    response = client.get("/v1/availability/MUG-SND", headers={"X-Padding": "x" * 20_000})
    assert_problem(response, 431, "headers-too-large")


def test_cors_allow_list(sample_path: Any, app_client: AppClient) -> None:
    settings = msgspec.convert(
        {"sample": {"path": str(sample_path)}, "http": {"cors_allow_origins": "https://shop.example.com"}}, Settings
    )
    with app_client(settings) as client:
        allowed = client.get("/v1/availability/MUG-SND", headers={"Origin": "https://shop.example.com"})
        assert allowed.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
        other = client.get("/v1/availability/MUG-SND", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            "/v1/availability/batch",
            headers={
                "Origin": "https://shop.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
                "Authorization": "",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example.com"
