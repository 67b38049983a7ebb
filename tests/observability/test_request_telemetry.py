"""One request that reaches the ERP: its spans, its metric samples and its log lines."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.observability.logging import JsonFormatter
from gateway.observability.settings import ObservabilitySettings
from gateway.observability.telemetry import Telemetry
from gateway.settings import Settings
from tests.conftest import Mint

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
ROUTE = "/v1/availability/{sku}"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics answer, by name and labels (parsed with prometheus_client's parser)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(settings: Settings, spans: InMemorySpanExporter, mint: Mint) -> Iterator[TestClient[Any]]:
    observability = ObservabilitySettings(traces_exporter="console")  # replaced by the in-memory processor
    settings = msgspec.structs.replace(settings, observability=observability)
    telemetry = Telemetry(observability, span_processor=SimpleSpanProcessor(spans))
    with TestClient(create_app(settings, telemetry=telemetry)) as client:
        client.headers["Authorization"] = f"Bearer {mint(client_id='storefront')}"
        yield client


def by_name(found: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [s for s in found if s.name == name]
    assert len(matching) == 1, [s.name for s in found]
    return matching[0]


def test_a_request_reaching_the_erp_is_one_trace(traced: TestClient[Any], spans: InMemorySpanExporter) -> None:
    response = traced.get("/v1/availability/LAMP-WHT", headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-1"})
    assert response.status_code == 200

    finished = spans.get_finished_spans()
    server = by_name(finished, f"GET {ROUTE}")
    erp = by_name(finished, "erp get_availability")
    assert server.kind == SpanKind.SERVER
    assert erp.kind == SpanKind.CLIENT
    # the caller's trace goes on: same trace id, the caller's span is the server span's parent
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    assert erp.context.trace_id == server.context.trace_id
    assert erp.parent is not None
    assert erp.parent.span_id == server.context.span_id
    assert server.attributes is not None
    assert erp.attributes is not None
    assert server.attributes["http.route"] == ROUTE
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["erpgw.correlation_id"] == "req-1"
    assert server.attributes["erpgw.client_id"] == "storefront"
    assert dict(erp.attributes) == {"erp.backend": "sample", "erp.operation": "get_availability", "erp.outcome": "ok"}


def test_the_erp_is_handed_the_current_span(traced: TestClient[Any], spans: InMemorySpanExporter) -> None:
    seen: list[str | None] = []
    backend = traced.app.state.runtime.erp.default.guarded.inner  # the observed adapter
    adapter = backend.inner
    original = adapter.get_availability

    async def spy(skus: Any, warehouses: Any, ctx: Any) -> Any:
        seen.append(ctx.traceparent)
        return await original(skus, warehouses, ctx)

    adapter.get_availability = spy
    traced.get("/v1/availability/MUG-SND", headers={"traceparent": TRACEPARENT})
    erp = by_name(spans.get_finished_spans(), "erp get_availability")
    assert seen == [f"00-{TRACE_ID}-{erp.context.span_id:016x}-01"]


def test_metrics_count_the_request_its_erp_call_and_the_cache(traced: TestClient[Any]) -> None:
    assert traced.get("/v1/availability/LAMP-WHT").status_code == 200  # miss: reaches the ERP
    assert traced.get("/v1/availability/LAMP-WHT").status_code == 200  # hit
    assert traced.get("/v1/availability/NO-SUCH-SKU").status_code == 404

    text = traced.get("/metrics").text
    found = samples(text)
    labels = {"route": ROUTE, "method": "GET", "client": "storefront"}
    assert value(found, "erpgw_http_requests_total", status="200", **labels) == 2
    assert value(found, "erpgw_http_requests_total", status="404", **labels) == 1
    assert value(found, "erpgw_http_request_duration_seconds_count", route=ROUTE, method="GET") == 3
    assert 0 < value(found, "erpgw_http_request_duration_seconds_sum", route=ROUTE, method="GET") < 10
    assert value(found, "erpgw_http_request_duration_seconds_bucket", route=ROUTE, method="GET", le="10.0") == 3
    erp = {"backend": "sample", "operation": "get_availability", "outcome": "ok"}
    assert value(found, "erpgw_erp_call_duration_seconds_count", **erp) == 2  # LAMP-WHT once, NO-SUCH-SKU once
    assert value(found, "erpgw_erp_calls_in_flight", backend="sample") == 0
    assert value(found, "erpgw_cache_lookups_total", route=ROUTE, result="miss") == 2
    assert value(found, "erpgw_cache_lookups_total", route=ROUTE, result="hit") == 1
    assert value(found, "erpgw_breaker_state", breaker="sample:reads") == 0
    # bounded labels: no SKU anywhere
    assert "LAMP-WHT" not in text
    assert "NO-SUCH-SKU" not in text


def test_quota_refusals_are_counted(settings: Settings, app_client: Any) -> None:
    from policies.quotas import QuotaClass

    quotas = msgspec.structs.replace(settings.quotas, classes={"default": QuotaClass(requests=1)})
    with app_client(msgspec.structs.replace(settings, quotas=quotas)) as client:
        client.get("/v1/availability/MUG-SND")
        assert client.get("/v1/availability/MUG-SND").status_code == 429
        found = samples(client.get("/metrics").text)
    assert value(found, "erpgw_quota_rejections_total", client="test-client", reason="exceeded") == 1
    assert value(found, "erpgw_http_requests_total", route=ROUTE, method="GET", status="429", client="test-client") == 1


def test_erp_failures_are_counted_by_outcome(settings: Settings, app_client: Any) -> None:
    from erp_backends.errors import ErpUnavailable

    with app_client(settings) as client:
        adapter = client.app.state.runtime.erp.default.guarded.inner.inner

        async def down(*args: Any) -> Any:
            raise ErpUnavailable("the ERP is down")

        adapter.get_order = down
        assert client.get("/v1/orders/SO-1001").status_code == 503
        found = samples(client.get("/metrics").text)
    erp = {"backend": "sample", "operation": "get_order", "outcome": "unavailable"}
    assert value(found, "erpgw_erp_call_errors_total", **erp) >= 1
    assert value(found, "erpgw_erp_call_duration_seconds_count", **erp) >= 1


def test_unmatched_paths_and_clients_beyond_the_cap_have_bounded_labels(settings: Settings, mint: Mint) -> None:
    observability = ObservabilitySettings(metrics_max_clients=1)
    with TestClient(create_app(msgspec.structs.replace(settings, observability=observability))) as client:
        for name in ("first", "second", "third"):
            client.get("/v1/availability/MUG-SND", headers={"Authorization": f"Bearer {mint(client_id=name)}"})
        client.get("/no/such/path/ABC-123")
        text = client.get("/metrics").text
    found = samples(text)
    labels = {"route": ROUTE, "method": "GET", "status": "200"}
    assert value(found, "erpgw_http_requests_total", client="first", **labels) == 1
    assert value(found, "erpgw_http_requests_total", client="other", **labels) == 2
    assert value(found, "erpgw_http_requests_total", route="unmatched", method="GET", status="404", client="anonymous")
    assert "ABC-123" not in text
    assert 'client="second"' not in text


def test_metrics_token_guards_the_endpoint(settings: Settings) -> None:
    observability = ObservabilitySettings(metrics_token="scrape-secret")
    with TestClient(create_app(msgspec.structs.replace(settings, observability=observability))) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")


def test_metrics_can_be_turned_off(settings: Settings) -> None:
    observability = ObservabilitySettings(metrics_enabled=False)
    with TestClient(create_app(msgspec.structs.replace(settings, observability=observability))) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200


def test_metrics_stay_out_of_the_published_spec(client: TestClient[Any]) -> None:
    assert "/metrics" not in client.get("/docs/openapi.json").json()["paths"]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured(name: str) -> Iterator[_Capture]:
    """The JSON lines logger ``name`` writes at INFO and above while the block runs."""
    capture = _Capture()
    logger = logging.getLogger(name)
    logger.addHandler(capture)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old)


def test_logs_are_json_with_correlation_and_trace_ids_and_no_token(
    traced: TestClient[Any], spans: InMemorySpanExporter, mint: Mint
) -> None:
    token = traced.headers["Authorization"].removeprefix("Bearer ")
    with captured("erp_gateway") as capture:
        # an audited write: one JSON line on erp_gateway.audit
        response = traced.post(
            "/v1/returns",
            headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-audit", "Idempotency-Key": str(uuid.uuid4())},
            json={"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]},
        )
        assert response.status_code in (200, 201)
        # and a log line that carries a token by mistake
        logging.getLogger("erp_gateway.test").warning("caller sent Bearer %s", token)
    records = [json.loads(line) for line in capture.lines]
    audit = next(r for r in records if r["logger"] == "erp_gateway.audit")
    assert audit["correlation_id"] == "req-audit"
    assert audit["trace_id"] == TRACE_ID
    assert audit["audit"]["action"] == "createReturn"
    assert audit["audit"]["correlation_id"] == "req-audit"
    assert all(token not in line for line in capture.lines)
    assert any("[redacted]" in r.get("msg", "") for r in records)


def test_logs_outside_tracing_take_the_callers_trace_id(client: TestClient[Any]) -> None:
    with captured("erp_gateway.audit") as capture:
        client.post(
            "/v1/returns",
            headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-2", "Idempotency-Key": str(uuid.uuid4())},
            json={"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]},
        )
    record = json.loads(capture.lines[0])
    assert (record["correlation_id"], record["trace_id"]) == ("req-2", TRACE_ID)
    assert "span_id" not in record


@pytest.mark.parametrize(
    ("access_log", "logged"),
    [
        ("errors", ["GET /v1/availability/{sku} 404"]),
        ("all", ["GET /v1/availability/{sku} 200"] * 2 + ["GET /v1/availability/{sku} 404"]),
        ("off", []),
    ],
)
def test_access_lines_name_route_status_and_client_never_the_path(
    settings: Settings, app_client: Any, mint: Mint, access_log: str, logged: list[str]
) -> None:
    observability = msgspec.structs.replace(settings.observability, access_log=access_log)
    with (
        captured("erp_gateway.access") as capture,
        app_client(
            msgspec.structs.replace(settings, observability=observability), token=mint(client_id="storefront")
        ) as client,
    ):
        client.get("/v1/availability/LAMP-WHT", headers={"X-Request-ID": "req-a"})
        client.get("/v1/availability/LAMP-WHT", headers={"X-Request-ID": "req-a"})  # the hot path
        client.get("/v1/availability/NO-SUCH-SKU", headers={"X-Request-ID": "req-a"})
    records = [json.loads(line) for line in capture.lines]
    assert [r["msg"].rsplit(" ", 3)[0] for r in records] == logged
    for record in records:
        assert record["msg"].endswith(" ms client=storefront")
        assert record["correlation_id"] == "req-a"
        assert "LAMP-WHT" not in record["msg"]
        assert "NO-SUCH-SKU" not in record["msg"]
