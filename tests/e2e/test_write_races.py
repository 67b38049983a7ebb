"""Dozens of same-key retries racing across gunicorn workers and gateway instances make one
ERP document, and every caller gets its number (or a designed 409 with Retry-After).

Real processes: ``erp-gateway serve`` with 2 workers (and two such instances sharing Redis),
on the sample ERP and on a real Tryton server. ERP calls are counted by the calls log, ERP
documents in the ERP itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.problems import PROBLEM_BASE
from gateway.writes.idempotency import record_key
from tests.harness.gateway_process import GatewayProcess
from tests.harness.tryton import TrytonServer, password_file

pytestmark = pytest.mark.e2e

RACERS = 50
CLIENT = "test-client"
BODY = {"orderNumber": "SO-1003", "lines": [{"sku": "HOOD-BLK-L", "quantity": 1, "reason": "wrong_item"}]}


async def _race(urls: list[str], token: str, key: str, racers: int = RACERS) -> list[httpx.Response]:
    """``racers`` POSTs with one key at once, each on its own connection, spread over ``urls``."""
    clients = [httpx.AsyncClient(timeout=60.0) for _ in range(racers)]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    try:
        return list(
            await asyncio.gather(
                *(
                    client.post(f"{urls[i % len(urls)]}/v1/returns", json=BODY, headers=headers)
                    for i, client in enumerate(clients)
                )
            )
        )
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


def _judge(answers: list[httpx.Response]) -> str:
    """Every answer is the one document (201) or a designed retry-later (409); its number."""
    numbers = set()
    for answer in answers:
        if answer.status_code == 201:
            numbers.add(answer.json()["rmaNumber"])
            continue
        assert answer.status_code == 409, answer.text
        problem = answer.json()
        assert problem["type"] == PROBLEM_BASE + "idempotency-request-in-progress", problem
        assert int(answer.headers["retry-after"]) >= 1
    assert len(numbers) == 1, numbers
    return numbers.pop()


def _erp_calls(log: Path, operation: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.split()[1] == operation) if log.exists() else 0


def _base_env(tmp_path: Path, dev_key_path: Path, calls_log: Path) -> dict[str, str]:
    control = tmp_path / "faults.json"
    control.write_text(json.dumps({"mode": "ok"}))
    return {
        "ERPGW_AUTH__DEV_MODE": "true",
        "ERPGW_AUTH__DEV_KEY_PATH": str(dev_key_path),
        "ERPGW_FAULTS__CONTROL_FILE": str(control),
        "ERPGW_FAULTS__CALLS_LOG": str(calls_log),
        "ERPGW_QUOTAS__CLASSES__DEFAULT__REQUESTS": "100000",
    }


def _token(mint: Any, client: str = "test-client") -> str:
    token: str = mint("returns:write", "returns:read", client_id=client, ttl=600)
    return token


def _sample_returns(path: Path, key: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM returns WHERE idempotency_key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return int(count)


async def test_same_key_retries_across_workers_make_one_return(tmp_path: Path, dev_key_path: Path, mint: Any) -> None:
    """No Redis (as ``make run``): the host's record file serializes the two workers."""
    calls = tmp_path / "erp-calls.log"
    env = {**_base_env(tmp_path, dev_key_path, calls), "ERPGW_SAMPLE__LATENCY_MS": "200"}
    with GatewayProcess(tmp_path, env=env, workers=2) as gateway:
        key = str(uuid.uuid4())
        number = _judge(await _race([gateway.url], _token(mint), key))
        assert _erp_calls(calls, "create_return") == 1  # the record stopped the others before the ERP
        assert _sample_returns(tmp_path / "sample.sqlite", record_key(CLIENT, key)) == 1
        async with httpx.AsyncClient(timeout=30.0) as client:
            again = await client.post(
                f"{gateway.url}/v1/returns",
                json=BODY,
                headers={"Authorization": f"Bearer {_token(mint)}", "Idempotency-Key": key},
            )
        assert again.status_code == 201
        assert (again.json()["rmaNumber"], again.headers["idempotent-replayed"]) == (number, "true")


async def test_keys_are_scoped_per_client_and_read_as_structured_strings(
    tmp_path: Path, dev_key_path: Path, mint: Any
) -> None:
    """Two clients that pick the same key get two returns (neither sees the other's); the IETF
    draft's quoted form of a key is the same key as the bare one."""
    env = _base_env(tmp_path, dev_key_path, tmp_path / "erp-calls.log")
    with GatewayProcess(tmp_path, env=env, workers=2) as gateway:
        key = str(uuid.uuid4())
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:

            async def post(client_id: str, sent_key: str, body: dict[str, Any] = BODY) -> httpx.Response:
                headers = {"Authorization": f"Bearer {_token(mint, client_id)}", "Idempotency-Key": sent_key}
                return await client.post("/v1/returns", json=body, headers=headers)

            socks = {"orderNumber": "SO-1003", "lines": [{"sku": "SOCK-ANT-43-46", "quantity": 1, "reason": "damaged"}]}
            first, other, quoted = (
                await post("store-a", key),
                await post("store-b", key, socks),  # another client, its own request: not "key reused"
                await post("store-a", f'"{key}"'),
            )
        assert (first.status_code, other.status_code, quoted.status_code) == (201, 201, 201)
        assert first.json()["rmaNumber"] != other.json()["rmaNumber"]
        assert "idempotent-replayed" not in other.headers
        assert (quoted.json()["rmaNumber"], quoted.headers["idempotent-replayed"]) == (
            first.json()["rmaNumber"],
            "true",
        )


def _redis_env(topology: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The gateway's Redis settings for a standalone server, a Sentinel deployment or a Cluster."""
    if topology == "standalone":
        return {"ERPGW_REDIS__URL": request.getfixturevalue("redis_url")}
    harness = request.getfixturevalue(f"fresh_redis_{topology}")
    env: dict[str, str] = harness.env()
    return env


@pytest.fixture(params=["standalone", "sentinel", "cluster"])
def two_instances(
    tmp_path: Path, dev_key_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[GatewayProcess, ...]]:
    """Two gunicorn masters (2 workers each) on one ERP file and one Redis (standalone, Sentinel
    or Cluster: the idempotency claim is one script on one key, so each mode decides alike)."""
    calls = tmp_path / "erp-calls.log"
    shared = {
        **_base_env(tmp_path, dev_key_path, calls),
        **_redis_env(request.param, request),
        "ERPGW_SAMPLE__PATH": str(tmp_path / "erp.sqlite"),
        "ERPGW_SAMPLE__LATENCY_MS": "200",
    }
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    with GatewayProcess(first, env=shared) as one, GatewayProcess(second, env=shared) as two:
        yield one, two


async def test_same_key_retries_across_instances_make_one_return(
    two_instances: tuple[GatewayProcess, ...], tmp_path: Path, mint: Any
) -> None:
    key = str(uuid.uuid4())
    _judge(await _race([g.url for g in two_instances], _token(mint), key))
    assert _erp_calls(tmp_path / "erp-calls.log", "create_return") == 1
    assert _sample_returns(tmp_path / "erp.sqlite", record_key(CLIENT, key)) == 1


@pytest.mark.tryton
@pytest.mark.parametrize("database", ["tryton", "tryton_pg"], ids=["sqlite", "postgresql"])
async def test_same_key_retries_on_tryton_make_one_complaint(
    tmp_path: Path, dev_key_path: Path, mint: Any, database: str, request: pytest.FixtureRequest
) -> None:
    tryton: TrytonServer = request.getfixturevalue(database)
    env = {
        **_base_env(tmp_path, dev_key_path, tmp_path / "erp-calls.log"),
        "ERPGW_BACKEND": "tryton",
        "ERPGW_TRYTON__URL": tryton.url,
        "ERPGW_TRYTON__DATABASE": tryton.database,
        "ERPGW_TRYTON__PASSWORD_FILE": str(password_file()),
    }
    with GatewayProcess(tmp_path, env=env, workers=2) as gateway:
        key = str(uuid.uuid4())
        number = _judge(await _race([gateway.url], _token(mint), key))
    complaints = tryton.rpc().model(
        "sale.complaint", "search_read", [["reference", "=", record_key(CLIENT, key)]], 0, None, None, ["number"]
    )
    assert [c["number"] for c in complaints] == [number]


@pytest.mark.tryton
async def test_a_worker_killed_mid_write_leaves_one_finished_complaint(
    tmp_path: Path, dev_key_path: Path, mint: Any, tryton: TrytonServer
) -> None:
    """SIGKILL every worker while a return is being written to Tryton; the caller's retries
    then get the one complaint, submitted (adopted if the kill left a draft), never a second."""
    env = {
        **_base_env(tmp_path, dev_key_path, tmp_path / "erp-calls.log"),
        "ERPGW_BACKEND": "tryton",
        "ERPGW_TRYTON__URL": tryton.url,
        "ERPGW_TRYTON__DATABASE": tryton.database,
        "ERPGW_TRYTON__PASSWORD_FILE": str(password_file()),
        "ERPGW_IDEMPOTENCY__LEASE_SECONDS": "2",
        "ERPGW_TIMEOUTS__WRITE_SECONDS": "1.5",  # the lease must outlast the write
        "ERPGW_TRYTON__ADOPT_DRAFTS_AFTER_SECONDS": "1",
    }
    key = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {_token(mint)}", "Idempotency-Key": key}
    with GatewayProcess(tmp_path, env=env, workers=2) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
            write = asyncio.create_task(client.post("/v1/returns", json=BODY, headers=headers))
            for _ in range(100):  # until the write has reached Tryton (the calls log says so)
                if _erp_calls(tmp_path / "erp-calls.log", "create_return"):
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # somewhere inside the complaint's create-submit-approve
            for pid in gateway.worker_pids():
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(httpx.TransportError):
                await write
            answer = None
            for _ in range(100):  # gunicorn starts new workers; the lease runs out; the retry goes through
                try:
                    answer = await client.post("/v1/returns", json=BODY, headers=headers)
                except httpx.TransportError:
                    answer = None
                if answer is not None and answer.status_code == 201:
                    break
                assert answer is None or answer.status_code in (409, 503), answer.text
                await asyncio.sleep(0.2)
            assert answer is not None
            assert answer.status_code == 201, answer.text
    complaints = tryton.rpc().model(
        "sale.complaint",
        "search_read",
        [["reference", "=", record_key(CLIENT, key)]],
        0,
        None,
        None,
        ["number", "state"],
    )
    assert [c["number"] for c in complaints] == [answer.json()["rmaNumber"]]
    assert complaints[0]["state"] in ("approved", "done")  # not an orphan draft
