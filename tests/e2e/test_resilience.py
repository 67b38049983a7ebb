"""Issue 4 end to end: the real gateway under gunicorn (2 workers), a real Redis this test
owns, and an ERP that fails on command (``ERPGW_FAULTS__CONTROL_FILE``).

Every loop here is bounded in count and time and talks to loopback only.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis

from tests.conftest import Mint
from tests.harness.gateway_process import GatewayProcess
from tests.harness.redis_server import RedisServer

pytestmark = pytest.mark.e2e

QUOTA = 40
WINDOW = 3600


class Erp:
    """The fault switch and the call log shared by both workers."""

    def __init__(self, workdir: Path) -> None:
        self.control = workdir / "faults.json"
        self.calls_log = workdir / "erp-calls.log"
        self.set("ok")

    def set(self, mode: str, delay_ms: float = 0) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps({"mode": mode, "delay_ms": delay_ms}))
        tmp.replace(self.control)
        time.sleep(0.02)  # mtime granularity: make the change visible as a new version

    def calls(self, operation: str) -> int:
        if not self.calls_log.exists():
            return 0
        return sum(1 for line in self.calls_log.read_text().splitlines() if line.split()[1] == operation)


@pytest.fixture
def erp(tmp_path: Path) -> Erp:
    return Erp(tmp_path)


@pytest.fixture
def gateway(tmp_path: Path, erp: Erp, redis_url: str, dev_key_path: Path) -> Iterator[GatewayProcess]:
    env = {
        "ERPGW_REDIS__URL": redis_url,
        "ERPGW_FAULTS__CONTROL_FILE": str(erp.control),
        "ERPGW_FAULTS__CALLS_LOG": str(erp.calls_log),
        "ERPGW_AUTH__DEV_MODE": "true",
        "ERPGW_AUTH__DEV_KEY_PATH": str(dev_key_path),
        "ERPGW_QUOTAS__CLASSES__DEFAULT__REQUESTS": "100000",
        "ERPGW_QUOTAS__CLASSES__LIMITED__REQUESTS": str(QUOTA),
        "ERPGW_QUOTAS__CLASSES__LIMITED__WINDOW_SECONDS": str(WINDOW),
        "ERPGW_QUOTAS__MAX_LEASE": "5",
        "ERPGW_CACHE__AVAILABILITY__TTL_SECONDS": "1",
        "ERPGW_CACHE__AVAILABILITY__STALE_WHILE_REVALIDATE_SECONDS": "0",
        "ERPGW_CACHE__ORDERS__TTL_SECONDS": "1",
        "ERPGW_CACHE__LOCAL_TTL_SECONDS": "0.2",
        "ERPGW_BREAKER__FAIL_MAX": "2",
        "ERPGW_BREAKER__RESET_TIMEOUT_SECONDS": "3",
        "ERPGW_BREAKER__SYNC_INTERVAL_SECONDS": "0.1",
        "ERPGW_RETRY__READ_ATTEMPTS": "0",
        "ERPGW_ERP_LIMITS__CALLS_PER_SECOND": "500",
        "ERPGW_ERP_LIMITS__MAX_CONCURRENT": "64",
        "ERPGW_ERP_LIMITS__MAX_WAIT_SECONDS": "5",
    }
    with GatewayProcess(tmp_path, env=env, workers=2) as process:
        yield process


def _fresh(gateway: GatewayProcess, token: str) -> httpx.Client:
    """A new connection each time, so requests spread over both workers."""
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0)


def _get(gateway: GatewayProcess, token: str, path: str) -> httpx.Response:
    with _fresh(gateway, token) as client:
        return client.get(path)


def test_a_quota_holds_globally_not_per_worker(gateway: GatewayProcess, mint: Mint) -> None:
    token = mint(client_id="partner-7", client_class="limited")
    to_boundary = WINDOW - time.time() % WINDOW
    if to_boundary < 15:  # the fixed window would roll over mid-test
        time.sleep(to_boundary + 0.5)
    answers = [_get(gateway, token, "/v1/availability/MUG-SND") for _ in range(QUOTA + 10)]
    assert [a.status_code for a in answers] == [200] * QUOTA + [429] * 10
    refused = answers[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/too-many-requests")
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["ratelimit-policy"] == f'"limited";q={QUOTA};w={WINDOW}'
    assert answers[0].headers["ratelimit"].startswith('"limited";r=')
    # the quota is per client: another client is not affected
    assert (
        _get(gateway, mint(client_id="partner-8", client_class="limited"), "/v1/availability/MUG-SND").status_code
        == 200
    )


def test_concurrent_cold_requests_reach_the_erp_once_per_worker(gateway: GatewayProcess, erp: Erp, mint: Mint) -> None:
    token = mint()
    erp.set("slow", delay_ms=300)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30.0
        ) as client:
            return await asyncio.gather(*(client.get("/v1/availability/TEE-NVY-M") for _ in range(200)))

    answers = asyncio.run(burst())
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["availableToPromise"] for a in answers} == {178}
    assert 1 <= erp.calls("get_availability") <= 2  # one per worker at most
    erp.set("ok")


def test_a_hot_sku_costs_a_handful_of_erp_calls(gateway: GatewayProcess, erp: Erp, mint: Mint) -> None:
    token = mint()
    started = time.monotonic()

    async def load() -> list[int]:
        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        ) as client:
            statuses: list[int] = []
            for _ in range(20):
                batch = await asyncio.gather(*(client.get("/v1/availability/CANDLE-FIG") for _ in range(50)))
                statuses.extend(r.status_code for r in batch)
            return statuses

    statuses = asyncio.run(load())
    elapsed = time.monotonic() - started
    assert statuses == [200] * 1000
    # TTL is 1 s here: at most one refresh per second per worker, plus the first miss.
    assert erp.calls("get_availability") <= 2 * (int(elapsed) + 2)


def test_erp_outage_opens_every_breaker_serves_stale_then_recovers(
    gateway: GatewayProcess, erp: Erp, mint: Mint, redis_url: str
) -> None:
    token = mint()
    warm = _get(gateway, token, "/v1/availability/LAMP-WHT")
    assert warm.json()["freshness"] == "fresh"
    for _ in range(4):  # both workers' local tiers and Redis hold the entry
        _get(gateway, token, "/v1/availability/LAMP-WHT")
    erp.set("down")
    time.sleep(1.2)  # past the 1 s TTL: every read now needs the ERP

    stale = [_get(gateway, token, "/v1/availability/LAMP-WHT") for _ in range(8)]
    assert {r.status_code for r in stale} == {200}
    assert {r.json()["freshness"] for r in stale} == {"stale"}
    assert all("stale-if-error" in r.headers["cache-status"] for r in stale)

    shared = sync_redis.Redis.from_url(redis_url)
    try:
        state = json.loads(shared.get("erpgw:v1:breaker:sample:reads") or b"[]")
    finally:
        shared.close()
    assert state[0] == "open"
    time.sleep(0.3)  # every worker syncs the shared state
    calls_before = erp.calls("get_availability")
    for _ in range(6):
        ready = _get(gateway, token, "/readyz").json()
        breakers = {c["name"]: c["detail"] for c in ready["checks"] if c["name"].startswith("breaker:")}
        assert breakers["breaker:sample:reads"] == "open"
    never_cached = _get(gateway, token, "/v1/availability/RUG-SND")
    assert never_cached.status_code == 503
    assert never_cached.json()["type"].endswith("/erp-circuit-open")
    assert int(never_cached.headers["retry-after"]) >= 1

    write = httpx.post(
        f"{gateway.url}/v1/returns",
        json={"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "damaged"}]},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=10.0,
    )
    assert write.status_code == 503
    assert erp.calls("get_availability") == calls_before  # open breakers did not call the ERP

    erp.set("ok")
    deadline = time.monotonic() + 10
    freshness: Any = None
    while time.monotonic() < deadline:
        time.sleep(0.3)
        freshness = _get(gateway, token, "/v1/availability/RUG-SND").json().get("freshness")
        if freshness in {"fresh", "cached"}:
            break
    assert freshness in {"fresh", "cached"}
    for _ in range(6):
        ready = _get(gateway, token, "/readyz").json()
        breakers = {c["name"]: c["detail"] for c in ready["checks"] if c["name"].startswith("breaker:")}
        assert breakers["breaker:sample:reads"] == "closed"
        time.sleep(0.15)


def test_redis_stopped_mid_traffic_then_back(
    gateway: GatewayProcess, mint: Mint, redis_server: RedisServer, redis_url: str
) -> None:
    token = mint()
    skus = ["MUG-SND", "TEE-NVY-M", "LAMP-WHT", "CAP-OLV", "NOTE-GRN"]

    def traffic(rounds: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as c:
            for i in range(rounds):
                statuses.append(c.get(f"/v1/availability/{skus[i % len(skus)]}").status_code)
                statuses.append(
                    c.post(
                        "/v1/prices/check",
                        json={"currency": "EUR", "lines": [{"sku": skus[i % len(skus)], "quantity": 1 + i % 3}]},
                    ).status_code
                )
        return statuses

    assert set(traffic(20)) == {200}
    redis_server.stop()
    try:
        during = traffic(40)
        ready = _get(gateway, token, "/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert {c["name"]: c["ok"] for c in body["checks"]}["redis"] is False
    finally:
        redis_server.start()
    assert set(during) == {200}  # no 5xx while Redis was down
    time.sleep(1.5)  # past the Redis retry window
    assert set(traffic(20)) == {200}
    shared = sync_redis.Redis.from_url(redis_url)
    try:
        keys = {k.decode() for k in shared.keys("erpgw:v1:*")}
    finally:
        shared.close()
    assert any(k.startswith("erpgw:v1:cache:sample:avail:") for k in keys)  # the shared cache fills again
    assert any(k.startswith("erpgw:v1:quota:") for k in keys)  # and the shared quota counts again
    ready = _get(gateway, token, "/readyz").json()
    assert ready["status"] == "ok", ready
