"""One worker's telemetry: its metrics, its tracer (when traces are exported) and the hooks the
composition root hands to the policies, the adapters and the Redis client."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import msgspec
import pybreaker
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from erp_backends.port import CallContext
from gateway.observability.metrics import FLUSH_SECONDS, GatewayMetrics
from gateway.observability.settings import ObservabilitySettings
from gateway.observability.tracing import build_tracer_provider, traceparent_of
from policies.circuit_breaking import SharedCircuitBreaker
from policies.observed import ErpCallProbe

__all__ = ["Telemetry"]

log = logging.getLogger("erp_gateway.observability")

_BUSINESS = frozenset(("ok", "not_found", "rejected"))


class _Probe:
    """Metrics (and a client span when tracing) for one ERP adapter call."""

    __slots__ = ("_backend", "_operation", "_span", "_start", "_telemetry", "_token")

    def __init__(self, telemetry: Telemetry, backend: str, operation: str) -> None:
        self._telemetry = telemetry
        self._backend = backend
        self._operation = operation
        self._span: Any = None
        self._token: Any = None
        if telemetry.tracer is not None:
            self._span = telemetry.tracer.start_span(
                f"erp {operation}",
                kind=SpanKind.CLIENT,
                attributes={"erp.backend": backend, "erp.operation": operation},
            )
            # Current while the adapter runs: its HTTP client spans become children of this one.
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        if telemetry.metrics is not None:
            telemetry.metrics.erp_in_flight.labels(backend).inc()
        self._start = time.perf_counter()

    def context(self, ctx: CallContext) -> CallContext:
        if self._span is None:
            return ctx
        return msgspec.structs.replace(ctx, traceparent=traceparent_of(self._span) or ctx.traceparent)

    def finish(self, outcome: str, error: BaseException | None) -> None:
        seconds = time.perf_counter() - self._start
        metrics = self._telemetry.metrics
        if metrics is not None:
            metrics.erp_in_flight.labels(self._backend).dec()
            metrics.erp_duration.labels(self._backend, self._operation, outcome).observe(seconds)
            if outcome not in _BUSINESS:
                metrics.erp_errors.labels(self._backend, self._operation, outcome).inc()
        if self._span is not None:
            self._span.set_attribute("erp.outcome", outcome)
            if outcome not in _BUSINESS:
                self._span.set_status(Status(StatusCode.ERROR, type(error).__name__ if error else outcome))
                if error is not None and outcome != "cancelled":
                    self._span.record_exception(error)
            self._span.end()
            otel_context.detach(self._token)


class _BreakerWatcher(pybreaker.CircuitBreakerListener):
    def __init__(self, metrics: GatewayMetrics, name: str) -> None:
        self._metrics = metrics
        self._name = name

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        self._metrics.set_breaker_state(self._name, str(new.name))


class Telemetry:
    """Built once per worker (in the app factory, after gunicorn forked)."""

    def __init__(self, settings: ObservabilitySettings, span_processor: SpanProcessor | None = None) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics(settings.metrics_max_clients) if settings.metrics_enabled else None
        self._flusher: asyncio.Task[None] | None = None
        self.tracer_provider: TracerProvider | None = build_tracer_provider(settings, span_processor)
        self.tracer: Tracer | None = (
            self.tracer_provider.get_tracer("erp_gateway") if self.tracer_provider is not None else None
        )

    # -- ErpCallObserver ------------------------------------------------------------------

    def start(self, backend: str, operation: str) -> ErpCallProbe:
        return _Probe(self, backend, operation)

    @property
    def observes_erp_calls(self) -> bool:
        return self.metrics is not None or self.tracer is not None

    # -- hooks for the composition root ---------------------------------------------------

    def instrument_http_client(self, client: httpx.AsyncClient) -> None:
        """A client span per outbound HTTP request (the ERP's), with ``traceparent`` injected."""
        if self.tracer_provider is None:
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.tracer_provider)

    def instrument_redis(self, client: Any) -> None:
        """A client span per Redis command or pipeline."""
        if self.tracer_provider is None or client is None:
            return
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(client, tracer_provider=self.tracer_provider)

    def watch_breakers(self, breakers: list[SharedCircuitBreaker]) -> None:
        """Keep the breaker-state gauge current: the state now, then every change."""
        if self.metrics is None:
            return
        for breaker in breakers:
            self.metrics.set_breaker_state(breaker.name, breaker.state)
            breaker.breaker.add_listener(_BreakerWatcher(self.metrics, breaker.name))

    def start_flushing(self) -> None:
        """At start-up, in the worker's event loop: flush the tallied request metrics periodically."""
        if self.metrics is not None and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_every(self.metrics))

    @staticmethod
    async def _flush_every(metrics: GatewayMetrics) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                metrics.flush()
            except Exception:  # one failed write (the metrics directory) must not end the flushing
                log.exception("could not write the request metrics; trying again in %s s", FLUSH_SECONDS)

    def shutdown(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self.metrics is not None:
            self.metrics.flush()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
