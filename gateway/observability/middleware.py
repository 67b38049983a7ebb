"""Per-request telemetry, wrapped around the whole Litestar ASGI handler.

It sits outside routing and exception handling, so it sees every answer (404s, 401s, 429s
included) with the status the ``before_send`` pass noted (``RESPONSE_STATUS``). Per request
and with traces off: two clock reads, a context variable, a dictionary lookup and the counter
and histogram updates; an access log line only for the answers ``observability.access_log``
asks for (by default the errors: a log line costs more than the rest of a cached answer).
With traces on: a server span that continues the caller's ``traceparent`` and carries the
route, status, client and correlation ID.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from gateway.cache_status import call_notes
from gateway.correlation import correlation_id, traceparent
from gateway.identity import client_identity
from gateway.observability.logging import REQUEST_SCOPE
from gateway.observability.telemetry import Telemetry

__all__ = ["QUOTA_REFUSAL", "RESPONSE_STATUS", "RequestTelemetry"]

#: One line per answer, as ``observability.access_log`` says (uvicorn's own is off).
access_log = logging.getLogger("erp_gateway.access")

#: Scope-state key: the status of the response, noted by the ``before_send`` pass.
RESPONSE_STATUS = "response_status"
#: Scope-state key: why the quota refused the request (``exceeded`` or ``store_down``).
QUOTA_REFUSAL = "quota_refusal"


def _parent(scope: Scope) -> Any:
    """The caller's trace as an OpenTelemetry context (None: a new trace)."""
    header = traceparent(scope)
    if header is None:
        return None
    parent = SpanContext(
        trace_id=int(header[3:35], 16),
        span_id=int(header[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(header[53:55], 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


class RequestTelemetry:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry
        self.metrics = telemetry.metrics
        self.tracer = telemetry.tracer
        #: Lowest status that gets an access log line (``observability.access_log``).
        self.access_from = {"all": 0, "errors": 400, "off": 1000}[telemetry.settings.access_log]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        token = REQUEST_SCOPE.set(scope)
        start = time.perf_counter()
        try:
            if self.tracer is None:
                await self.app(scope, receive, send)
            else:
                await self._traced(scope, receive, send)
        finally:
            seconds = time.perf_counter() - start
            if self.metrics is not None:
                self._record(scope, seconds)
            if self.access_from <= scope["state"].get(RESPONSE_STATUS, 500):
                self._access_line(scope, seconds)
            REQUEST_SCOPE.reset(token)

    @staticmethod
    def _access_line(scope: HTTPScope, seconds: float) -> None:
        # The route template, never the path: no SKU, order number or query string in the logs.
        identity = client_identity(scope)
        access_log.info(
            "%s %s %s %.1f ms client=%s",
            scope["method"],
            scope.get("path_template") or "unmatched",
            scope["state"].get(RESPONSE_STATUS, 500),
            seconds * 1000,
            identity.client_id if identity else "anonymous",
        )

    def _record(self, scope: HTTPScope, seconds: float) -> None:
        metrics = self.metrics
        assert metrics is not None
        state = scope["state"]
        route = scope.get("path_template") or "unmatched"
        identity = client_identity(scope)
        client = metrics.client_label(identity.client_id if identity else None)
        metrics.observe_request(route, scope["method"], state.get(RESPONSE_STATUS, 500), client, seconds)
        notes = call_notes(scope)
        if notes is not None and (notes.hits or notes.misses or notes.stale):
            metrics.observe_cache(route, notes.hits, notes.misses, notes.stale)
        if (refusal := state.get(QUOTA_REFUSAL)) is not None:
            metrics.quota_rejections.labels(client, refusal).inc()

    async def _traced(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        tracer = self.tracer
        assert tracer is not None
        method = scope["method"]
        with tracer.start_as_current_span(
            method,
            context=_parent(scope),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "erpgw.correlation_id": correlation_id(scope),
            },
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            try:
                await self.app(scope, receive, send)
            finally:
                state = scope["state"]
                status = state.get(RESPONSE_STATUS, 500)
                if route := scope.get("path_template"):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if identity := client_identity(scope):
                    span.set_attribute("erpgw.client_id", identity.client_id)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
