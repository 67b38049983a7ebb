"""OpenTelemetry tracing: the tracer provider and exporter the settings name, or none at all.

With ``traces_exporter = "none"`` (the default) no provider is built and no span is ever
created: the request path does not pay for tracing it does not export. The provider is the
gateway's own (never installed as the global one), so tests and several apps in one process
do not interfere; instrumentations are given it explicitly.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span

from gateway.observability.settings import ObservabilitySettings

__all__ = ["build_tracer_provider", "traceparent_of"]


def _exporter(settings: ObservabilitySettings) -> SpanExporter | None:
    if settings.traces_exporter == "console":
        return ConsoleSpanExporter()
    if settings.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.otlp_endpoint or None)
    return None


def build_tracer_provider(
    settings: ObservabilitySettings, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """The provider for the configured exporter; ``processor`` replaces it (tests: in-memory)."""
    if processor is None:
        exporter = _exporter(settings)
        if exporter is None:
            return None
        processor = BatchSpanProcessor(exporter)
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    provider.add_span_processor(processor)
    return provider


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` naming ``span`` as the parent, for the next hop."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
