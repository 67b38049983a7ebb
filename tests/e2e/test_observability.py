"""Metrics, logs and the multiprocess setup of the real ``erp-gateway serve`` (2 gunicorn workers)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import FLUSH_SECONDS
from tests.harness.gateway_process import GatewayProcess

pytestmark = pytest.mark.e2e

ROUTE = "/v1/availability/{sku}"
REQUESTS = 60
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def _route_count(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "erpgw_http_requests_total" and s.labels.get("route") == ROUTE and s.labels["status"] == "200"
    )


def _worker_counts(pids: list[int]) -> dict[int, float]:
    """What each worker wrote to its own file (read the way the collector reads them)."""
    counts: dict[int, float] = {}
    for pid in pids:
        files = list(Path(tempfile.gettempdir()).glob(f"erp-gateway-metrics-*/counter_{pid}.db"))
        assert len(files) == 1, files
        counts[pid] = sum(
            s.value
            for metric in MultiProcessCollector.merge([str(files[0])], accumulate=True)
            for s in metric.samples
            if s.name == "erpgw_http_requests_total" and s.labels.get("route") == ROUTE
        )
    return counts


def test_counters_of_two_workers_add_up(gateway: GatewayProcess, token: str) -> None:
    def one(i: int) -> int:
        # A fresh connection each time, so the kernel hands them to either worker.
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        return httpx.get(f"{gateway.url}/v1/availability/MUG-SND", headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(REQUESTS))) == {200}

    # Each worker writes its tallies every FLUSH_SECONDS: wait for both (bounded).
    deadline = time.monotonic() + 10 * FLUSH_SECONDS
    per_worker = _worker_counts(gateway.worker_pids())
    while sum(per_worker.values()) < REQUESTS and time.monotonic() < deadline:
        time.sleep(0.2)
        per_worker = _worker_counts(gateway.worker_pids())
    assert sum(per_worker.values()) == REQUESTS
    assert all(count > 0 for count in per_worker.values()), per_worker  # both workers served some
    for _ in range(3):  # any worker answers the scrape with the sum of both
        assert _route_count(httpx.get(f"{gateway.url}/metrics", headers={"Connection": "close"}).text) == REQUESTS


def test_logs_are_json_lines_with_ids_and_never_the_token(gateway: GatewayProcess, token: str) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/returns",
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": str(uuid.uuid4()),
            "X-Request-ID": "obs-e2e-return",
            "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
        },
        json={"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    text = gateway.log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"ts", "level", "logger"} <= set(records[0])
    audit = [r for r in records if r["logger"] == "erp_gateway.audit" and r.get("correlation_id") == "obs-e2e-return"]
    assert len(audit) == 1
    assert audit[0]["trace_id"] == TRACE_ID
    assert audit[0]["audit"]["status"] == 201
    assert token not in text
    assert token.split(".")[2] not in text  # not even the signature
