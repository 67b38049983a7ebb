"""The posting worker's ``/metrics`` (``gateway.observability.exposition``): the same scrape
token as the API's, over a real socket on loopback."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from gateway.observability.exposition import MetricsServer
from tests.harness.gateway_process import free_port


def test_the_worker_metrics_need_the_scrape_token_and_serve_only_metrics() -> None:
    registry = CollectorRegistry()
    Counter("erpgw_intake_posts", "posts", ("outcome",), registry=registry).labels("posted").inc(3)
    port = free_port()
    server = MetricsServer(registry, "127.0.0.1", port, token="s3cret-scrape")
    try:
        url = f"http://127.0.0.1:{port}"
        refused = httpx.get(f"{url}/metrics", timeout=5)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/unauthorized")
        assert "s3cret" not in refused.text
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer guess"}, timeout=5)
        assert wrong.status_code == 401
        scraped = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer s3cret-scrape"}, timeout=5)
        assert scraped.status_code == 200
        assert 'erpgw_intake_posts_total{outcome="posted"} 3.0' in scraped.text
        assert httpx.get(f"{url}/", timeout=5).status_code == 404
    finally:
        server.close()
    open_server = MetricsServer(registry, "127.0.0.1", port, token="")  # the port is free again
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200  # no token set: open
    finally:
        open_server.close()
