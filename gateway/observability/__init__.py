"""Observability: Prometheus metrics, OpenTelemetry traces and JSON logs (see README).

Submodules are imported where needed, never here: ``erp-gateway serve`` must set
``PROMETHEUS_MULTIPROC_DIR`` before ``prometheus_client`` is first imported.
"""
