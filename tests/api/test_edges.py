"""Cross-cutting HTTP behaviour: correlation IDs, problems for unknown routes, health, docs."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from erp_backends.errors import ErpTimeout, ErpUnavailable
from erp_backends.port import CallContext
from erp_backends.sample import SampleBackend, SampleSettings
from gateway.settings import Settings
from tests.conftest import AppClient, assert_problem

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_caller_request_id_is_echoed(client: TestClient[Any]) -> None:
    response = client.get("/v1/availability/MUG-SND", headers={"X-Request-ID": "shop-4711"})
    assert response.headers["x-request-id"] == "shop-4711"


def test_request_id_is_generated_when_absent_or_unusable(client: TestClient[Any]) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(first) == 32
    assert first != second
    assert " " not in second


def test_unknown_route_and_method_are_problems(client: TestClient[Any]) -> None:
    assert_problem(client.get("/v2/anything"), 404, "not-found")
    assert_problem(client.delete("/v1/orders/SO-1001"), 405, "method-not-allowed")


class _RecordingBackend(SampleBackend):
    """Sample backend that remembers the context it was called with (own-logic test)."""

    seen: list[CallContext]

    async def get_order(self, order_number: str, ctx: CallContext) -> Any:
        self.seen.append(ctx)
        return await super().get_order(order_number, ctx)


def test_correlation_and_traceparent_reach_the_backend(sample_path: Any, app_client: AppClient) -> None:
    backend = _RecordingBackend(SampleSettings(path=str(sample_path)))
    backend.seen = []
    with app_client(Settings(), backend=backend) as client:
        client.get("/v1/orders/SO-1001", headers={"X-Request-ID": "abc-123", "traceparent": TRACEPARENT})
        client.get("/v1/orders/SO-1002", headers={"traceparent": "00-zz-bad"})
    assert backend.seen[0].correlation_id == "abc-123"
    assert backend.seen[0].traceparent == TRACEPARENT
    assert backend.seen[1].traceparent is None


class _BrokenBackend(SampleBackend):
    def __init__(self, settings: SampleSettings, error: Exception) -> None:
        super().__init__(settings)
        self.error = error

    async def get_order(self, order_number: str, ctx: CallContext) -> Any:
        raise self.error

    async def check_ready(self) -> None:
        raise self.error


def test_erp_outages_map_to_503_and_504_with_retry_after(sample_path: Any, app_client: AppClient) -> None:
    for error, status, slug in [
        (ErpUnavailable("connection refused"), 503, "erp-unavailable"),
        (ErpTimeout("no answer in 5 s"), 504, "erp-timeout"),
    ]:
        backend = _BrokenBackend(SampleSettings(path=str(sample_path)), error)
        with app_client(Settings(), backend=backend) as client:
            response = client.get("/v1/orders/SO-1001")
            assert_problem(response, status, slug)
            assert int(response.headers["retry-after"]) > 0
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"][0]["ok"] is False


def test_unexpected_errors_are_a_500_problem_without_internals(sample_path: Any, app_client: AppClient) -> None:
    backend = _BrokenBackend(SampleSettings(path=str(sample_path)), RuntimeError("secret internals"))
    with app_client(Settings(), backend=backend) as client:
        response = client.get("/v1/orders/SO-1001")
        body = assert_problem(response, 500, "internal-error")
        assert "secret" not in response.text
        assert body["instance"] == "/v1/orders/SO-1001"


def test_health_and_readiness(client: TestClient[Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": []}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ok"
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["backend:sample"]["ok"] is True
    assert checks["breaker:sample:reads"]["detail"] == "closed"
    assert "redis" not in checks  # the quickstart runs without Redis
    assert checks["intake-store"] == {"name": "intake-store", "ok": True, "required": False, "detail": None}


def test_docs_are_served_and_can_be_switched_off(
    client: TestClient[Any], sample_path: Any, app_client: AppClient
) -> None:
    assert "<html" in client.get("/docs").text.lower()
    spec = msgspec.json.decode(client.get("/docs/openapi.json").content)
    assert spec["info"]["title"] == "erp-gateway"
    settings = msgspec.convert({"http": {"docs_enabled": False}, "sample": {"path": str(sample_path)}}, Settings)
    with app_client(settings) as closed:
        assert closed.get("/docs").status_code == 404


def test_a_hanging_redis_degrades_readiness_instead_of_timing_it_out(
    client: TestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that hangs through a failover must not make /readyz time out (503 on every
    instance at once): its checks get their own, shorter budget and report it."""
    pings: list[float] = []

    class HangingRedis:
        configured = True
        last_error = None

        async def ping(self) -> bool:
            pings.append(1.0)
            await asyncio.sleep(30)
            return True

        async def aclose(self) -> None:
            pass

    monkeypatch.setattr(client.app.state.runtime, "redis", HangingRedis())
    ready = client.get("/readyz")
    assert pings == [1.0]
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded"
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["backend:sample"]["ok"] is True
    assert (checks["redis"]["ok"], checks["redis"]["required"]) == (False, False)
    assert "timed out" in checks["redis"]["detail"]
