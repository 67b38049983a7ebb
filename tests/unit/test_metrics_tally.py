"""GatewayMetrics tallies per-request samples and writes them in bulk: what it writes must be
what prometheus_client's own ``inc()`` and ``observe()`` would have recorded one by one."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import GatewayMetrics

#: On a bucket bound (belongs in it), just above one, far below the first, past the last.
DURATIONS = (0.005, 0.0051, 0.0001, 0.0005, 20.0, 0.25, 0.25)


def _samples(metrics: GatewayMetrics, *names: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name in names
    }


def test_tallied_requests_match_what_observe_records_one_by_one() -> None:
    tallied, reference = GatewayMetrics(), GatewayMetrics()
    for result in ("miss", "stale"):  # bound (at 0) by the first observe_cache, as the gateway does
        reference.cache.labels("/v1/availability/{sku}", result)
    for seconds in DURATIONS:
        tallied.observe_request("/v1/availability/{sku}", "GET", 200, "storefront", seconds)
        tallied.observe_cache("/v1/availability/{sku}", 1, 0, 0)
        reference.requests.labels("/v1/availability/{sku}", "GET", "200", "storefront").inc()
        reference.request_duration.labels("/v1/availability/{sku}", "GET").observe(seconds)
        reference.cache.labels("/v1/availability/{sku}", "hit").inc()
    names = (
        "erpgw_http_requests_total",
        "erpgw_http_request_duration_seconds_bucket",
        "erpgw_http_request_duration_seconds_count",
        "erpgw_http_request_duration_seconds_sum",
        "erpgw_cache_lookups_total",
    )
    found = _samples(tallied, *names)
    assert found == _samples(reference, *names)
    bucket = "erpgw_http_request_duration_seconds_bucket"
    labels = {"route": "/v1/availability/{sku}", "method": "GET"}
    assert found[(bucket, frozenset({**labels, "le": "0.005"}.items()))] == 3  # 0.0001, 0.0005, 0.005


def test_nothing_is_written_twice_or_lost_across_flushes() -> None:
    metrics = GatewayMetrics()
    metrics.observe_request("/r", "GET", 200, "c", 0.01)
    metrics.flush()
    metrics.flush()  # nothing new: nothing added
    metrics.observe_request("/r", "GET", 200, "c", 0.01)
    found = _samples(metrics, "erpgw_http_requests_total")  # rendering flushes the rest
    labels = frozenset({"route": "/r", "method": "GET", "status": "200", "client": "c"}.items())
    assert found == {("erpgw_http_requests_total", labels): 2}
