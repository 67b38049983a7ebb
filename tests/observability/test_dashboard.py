"""The Grafana dashboard in docs/ loads and is built on the metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.observability.metrics import GatewayMetrics

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
EXPECTED_PANELS = {
    "Request rate by route",
    "Errors",
    "Latency p50 / p99 by route",
    "ERP latency p50 / p95 per operation",
    "ERP errors per operation",
    "ERP calls in flight",
    "Cache hit ratio by route",
    "Circuit breakers",
    "Throttling: quota rejections by client",
}


def exported_names() -> set[str]:
    """Every sample name the gateway can export (histograms: _bucket, _count, _sum)."""
    metrics = GatewayMetrics()
    names: set[str] = set()
    for family in metrics.registry.collect():
        kind = family.type
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(kind, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_the_dashboard_is_loadable_json_with_the_expected_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "erp-gateway"
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert titles >= EXPECTED_PANELS
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_every_query_uses_metrics_the_gateway_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    known = exported_names()
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\berpgw_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard queries nothing"
    assert used <= known, used - known
    # every metric family appears on the dashboard
    assert {n.removesuffix("_bucket") for n in used if n.endswith("_bucket")} == {
        "erpgw_http_request_duration_seconds",
        "erpgw_erp_call_duration_seconds",
    }
