"""Client spans below the ERP call: the adapter's HTTP requests and Redis commands."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from gateway.observability.settings import ObservabilitySettings
from gateway.observability.telemetry import Telemetry
from gateway.settings import Settings
from gateway.shared_state import RedisSettings
from tests.conftest import Mint

TRACING = ObservabilitySettings(traces_exporter="console")  # the exporter is replaced by an in-memory one


async def test_the_erp_http_request_is_a_child_span_and_carries_its_traceparent() -> None:
    spans = InMemorySpanExporter()
    telemetry = Telemetry(TRACING, span_processor=SimpleSpanProcessor(spans))
    sent: list[str] = []

    def erp(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["traceparent"])
        return httpx.Response(200, json={"id": 1, "result": "8.2"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(erp))
    telemetry.instrument_http_client(client)
    probe = telemetry.start("tryton", "get_availability")
    # the adapter sends the traceparent it was handed; the HTTP span's own one goes out instead
    await client.post("http://erp.invalid/rpc/", headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    probe.finish("ok", None)
    await client.aclose()

    (http, call) = spans.get_finished_spans()
    assert call.name == "erp get_availability"
    assert http.kind == SpanKind.CLIENT
    assert http.parent is not None
    assert http.parent.span_id == call.context.span_id
    ctx = http.context
    assert sent == [f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"]


def test_redis_commands_are_spans_of_the_request(settings: Settings, redis_url: str, mint: Mint) -> None:
    spans = InMemorySpanExporter()
    settings = msgspec.structs.replace(settings, redis=RedisSettings(url=redis_url), observability=TRACING)
    telemetry = Telemetry(TRACING, span_processor=SimpleSpanProcessor(spans))
    with TestClient(create_app(settings, telemetry=telemetry)) as client:
        client.headers["Authorization"] = f"Bearer {mint()}"
        assert client.get("/readyz").status_code == 200  # the worker's start-up is done...
        spans.clear()  # ...and its own Redis reads (breaker state) are not this request's
        assert client.get("/v1/availability/MUG-SND").status_code == 200
    finished = spans.get_finished_spans()
    server = next(s for s in finished if s.kind == SpanKind.SERVER)
    redis_spans: list[Any] = [s for s in finished if s.attributes and s.attributes.get("db.system") == "redis"]
    assert redis_spans, [s.name for s in finished]
    assert all(s.context.trace_id == server.context.trace_id for s in redis_spans)
    assert any(s.name == "MGET" for s in redis_spans), [s.name for s in redis_spans]
