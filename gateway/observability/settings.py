"""Settings of traces, metrics and logs (``[observability]``, ``ERPGW_OBSERVABILITY__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["ObservabilitySettings"]


class ObservabilitySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where traces go, how /metrics is served and how logs are written."""

    #: Trace exporter: ``none`` (no spans are created at all), ``console`` (stdout) or ``otlp``.
    traces_exporter: Literal["none", "console", "otlp"] = "none"
    #: OTLP/HTTP traces endpoint; empty: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or the SDK default.
    otlp_endpoint: str = ""
    #: Share of new traces recorded (a caller's sampled ``traceparent`` is always followed).
    trace_sample_ratio: float = 1.0
    #: ``service.name`` of the spans.
    service_name: str = "erp-gateway"
    #: Serve Prometheus metrics at /metrics.
    metrics_enabled: bool = True
    #: Bearer token a scraper must send to read /metrics; empty: /metrics is open.
    metrics_token: str = ""
    #: File holding that token (first line); wins over ``metrics_token``.
    metrics_token_file: str = ""
    #: Distinct client ids labelled per worker; further clients are counted as ``other``.
    metrics_max_clients: int = 50
    #: ``json`` (one object per line) or ``text`` (for a terminal).
    log_format: Literal["json", "text"] = "json"
    #: Access log lines: ``errors`` (answers with status >= 400), ``all``, or ``off``.
    access_log: Literal["errors", "all", "off"] = "errors"

    def scrape_token(self) -> str:
        """The token /metrics requires, from the file when one is named."""
        if self.metrics_token_file:
            lines = Path(self.metrics_token_file).read_text(encoding="utf-8").splitlines()
            return lines[0].strip() if lines else ""
        return self.metrics_token
