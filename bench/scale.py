"""What one worker serves per path, what each path costs Redis, and two instances side by side.

    .venv/bin/python -m bench.scale [--duration 10] [--connections 64]

The numbers behind docs/running-at-scale.md. Everything runs on a real Redis Cluster (3
primaries, 3 replicas, started by the test harness on loopback ports):

1. one gateway instance with ONE worker, for each path: req/s, p50 and p99 under wrk, and
   the Redis commands it cost per request (INFO commandstats summed over the primaries);
2. the Redis commands of a write (a return with a new Idempotency-Key, then its replay),
   counted over sequential requests;
3. one instance with 2 workers, then two instances with 2 workers each driven at the same
   time (one wrk per instance), on the cached path.

Prints markdown tables. Only loopback is targeted; every process started here is stopped by
its PID (the gateways by SIGTERM, the cluster by the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from bench.__main__ import BIN, ROOT, Case, _machine, _wrk, bench_token
from erp_backends.dataset import load_dataset
from policies.quotas import quota_keys
from tests.harness.gateway_process import free_port
from tests.harness.redis_topologies import RedisClusterHarness

#: Commands that are the measurement or the client's topology discovery, not the path's cost.
_NOT_COUNTED = {
    f"cmdstat_{name}"
    for name in ("info", "cluster", "ping", "command", "client", "hello", "auth", "readonly", "replconf")
}


def _redis_commands(cluster: RedisClusterHarness) -> int:
    """Commands the cluster's primaries have served so far (replicas only replay them)."""
    return sum(_redis_command_counts(cluster).values())


def _redis_command_counts(cluster: RedisClusterHarness) -> Counter[str]:
    """Calls per command name so far, summed over the cluster's primaries."""
    total: Counter[str] = Counter()
    for node in cluster.nodes:
        client = redis.Redis(host="127.0.0.1", port=node.port)
        try:
            if client.info("replication")["role"] != "master":
                continue
            stats = client.info("commandstats")
        finally:
            client.close()
        total.update({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k not in _NOT_COUNTED})
    return total


@contextmanager
def _gateway(workdir: Path, env: dict[str, str], workers: int) -> Iterator[str]:
    port = free_port()
    log = (workdir / f"gateway-{port}.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "erp-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=workdir,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start: see {log.name}")
            try:
                if httpx.get(url + "/readyz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _NO_START(port: int, workdir: Path) -> list[str]:  # noqa: N802 - the servers are started by _gateway
    return []


def _paths() -> list[Case]:
    dataset = load_dataset()
    batch = json.dumps({"skus": [p.sku for p in dataset.products][:100]})
    prices = json.dumps({"customer": "C-1001", "currency": "EUR", "lines": [{"sku": "TOTE-NAT", "quantity": 10}]})
    validate = json.dumps(
        {"currency": "EUR", "warehouse": "EAST", "lines": [{"sku": "TEE-NVY-M", "quantity": 1, "unitPrice": "19.90"}]}
    )
    return [
        Case("single", "availability, one SKU, cached", "/v1/availability/TEE-NVY-M", _NO_START, auth=True),
        Case(
            "batch",
            f"availability, batch of {len(json.loads(batch)['skus'])} SKUs, cached",
            "/v1/availability/batch",
            _NO_START,
            method="POST",
            body=batch,
            auth=True,
        ),
        Case(
            "prices",
            "price check, one line, cached",
            "/v1/prices/check",
            _NO_START,
            method="POST",
            body=prices,
            auth=True,
        ),
        Case(
            "validate",
            "order validation, one line, cached",
            "/v1/orders/validate",
            _NO_START,
            method="POST",
            body=validate,
            auth=True,
        ),
        Case("order", "order lookup, cached", "/v1/orders/SO-1003", _NO_START, auth=True),
    ]


def _write_costs(url: str, token: str, cluster: RedisClusterHarness) -> tuple[int, float, float, str]:
    """(returns made, Redis commands per new write, per replay, the new writes' commands by name)."""
    dataset = load_dataset()
    headers = {"Authorization": f"Bearer {token}"}
    made: list[tuple[str, dict[str, object]]] = []
    new = 0
    by_name: Counter[str] = Counter()
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for order in dataset.orders:
            for line in order.lines:
                key = str(uuid.uuid4())
                body: dict[str, object] = {
                    "orderNumber": order.number,
                    "lines": [{"sku": line.sku, "quantity": 1, "reason": "damaged"}],
                }
                counts = _redis_command_counts(cluster)
                answer = client.post("/v1/returns", json=body, headers={"Idempotency-Key": key})
                if answer.status_code == 201:  # a line not shipped yet cannot be returned: not counted
                    spent = _redis_command_counts(cluster) - counts
                    new += sum(spent.values())
                    by_name.update(spent)
                    made.append((key, body))
        before = _redis_commands(cluster)
        for key, sent in made:
            client.post("/v1/returns", json=sent, headers={"Idempotency-Key": key}).raise_for_status()
        replayed = _redis_commands(cluster) - before
    n = max(1, len(made))
    names = ", ".join(f"{name} {calls / n:.1f}" for name, calls in by_name.most_common())
    return len(made), new / n, replayed / n, names


def _parallel_wrk(
    urls: list[str], case: Case, token: str, duration: int, connections: int, workdir: Path
) -> list[tuple[float, float, float]]:
    results: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(urls)

    def run(i: int, url: str) -> None:
        results[i] = _wrk(url, case, token, duration, connections, workdir)

    threads = [threading.Thread(target=run, args=(i, u)) for i, u in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


async def _drive(
    urls: list[str], token: str, seconds: float, concurrency: int, log: list[tuple[float, float, int]]
) -> None:
    """Cached availability reads over ``urls`` in turn for ``seconds``: (start, latency, status) each."""
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        i = n
        while time.monotonic() < deadline:
            url = urls[i % len(urls)] + "/v1/availability/TEE-NVY-M"
            i += 1
            began = time.monotonic()
            try:
                status = (await client.get(url, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            log.append((began, time.monotonic() - began, status))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        await asyncio.gather(*(worker(n, client) for n in range(concurrency)))


def _failover(urls: list[str], token: str, cluster: RedisClusterHarness, prefix: str) -> list[str]:
    """Per-second throughput, p99 and errors while the primary of the client's quota slot is
    SIGKILLed 10 s into a 40 s run; promotion time from the harness."""
    log: list[tuple[float, float, int]] = []
    began = time.monotonic()
    runner = threading.Thread(target=lambda: asyncio.run(_drive(urls, token, 40, 32, log)))
    runner.start()
    time.sleep(10)
    index = int(time.time() // 60)  # the default quota class's 60 s window
    key = prefix + quota_keys("bench", index)[0]
    killed_at = time.monotonic() - began
    port, _pid = cluster.kill_primary_for(key)
    promoted_after = cluster.wait_promoted(key, timeout=20)
    runner.join()
    cluster.restart_killed()
    rows = [
        f"SIGKILL of the primary (port {port}) owning the quota slot of the load's client at {killed_at:.1f} s; "
        f"the harness saw a replica promoted {promoted_after:.1f} s later. Cached availability reads, 32 "
        "concurrent over two instances (2 workers each), Python httpx load generator on the same cores:",
        "",
        "| phase | seconds | answers/s | non-2xx | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    promoted_at = killed_at + promoted_after
    phases = [
        ("before the kill", 0.0, killed_at),
        ("kill to promotion", killed_at, promoted_at),
        ("first 10 s after promotion", promoted_at, promoted_at + 10),
        ("after that", promoted_at + 10, 40.0),
    ]
    for name, start, end in phases:
        bucket = [(lat, st) for t, lat, st in log if start <= t - began < end]
        if not bucket or end <= start:
            continue
        latencies = sorted(lat for lat, _ in bucket)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        bad = sum(1 for _, st in bucket if not 200 <= st < 300)
        rows.append(f"| {name} | {end - start:.1f} | {len(bucket) / (end - start):,.0f} | {bad} | {p99:.1f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="erpgw-scale-"))
    key_path = workdir / "dev-key.json"
    token = bench_token(key_path)
    out: list[str] = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC on {_machine()}; "
        f"`python -m bench.scale --duration {args.duration} --connections {args.connections}`; "
        "Redis Cluster of 3 primaries + 3 replicas on the same machine.",
        "",
    ]
    (workdir / "cluster").mkdir()
    cluster = RedisClusterHarness(workdir / "cluster")
    cluster.start()
    try:
        env = {
            **cluster.env(),
            "ERPGW_SAMPLE__PATH": str(workdir / "sample.sqlite"),
            "ERPGW_IDEMPOTENCY__PATH": str(workdir / "idempotency.sqlite"),
            "ERPGW_AUTH__DEV_MODE": "true",
            "ERPGW_AUTH__DEV_KEY_PATH": str(key_path),
            "ERPGW_QUOTAS__CLASSES__DEFAULT__REQUESTS": "1000000000",
            "ERPGW_LOG_LEVEL": "WARNING",
            "ERPGW_ERP_LIMITS__CALLS_PER_SECOND": "100000",
            "ERPGW_ERP_LIMITS__MAX_CONCURRENT": "1024",
        }
        out += ["| path (1 worker) | req/s | p50 ms | p99 ms | Redis commands / request |", "|---|---:|---:|---:|---:|"]
        with _gateway(workdir, env, workers=1) as url:
            for case in _paths():
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                httpx.request(
                    case.method, url + case.path, content=case.body, headers=headers, timeout=10
                ).raise_for_status()
                before = _redis_commands(cluster)
                rps, p50, p99 = _wrk(url, case, token, args.duration, args.connections, workdir)
                per = (_redis_commands(cluster) - before) / max(1.0, rps * args.duration)
                out.append(f"| {case.title} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {per:.4f} |")
                print(out[-1], flush=True)
            made, new, replay, names = _write_costs(url, token, cluster)
        uncached = {**env, "ERPGW_CACHE__ENABLED": "false"}
        with _gateway(workdir, uncached, workers=1) as url:
            case = Case(
                "miss",
                "availability, one SKU, uncached (sample ERP, no delay)",
                "/v1/availability/TEE-NVY-M",
                _NO_START,
                auth=True,
            )
            before = _redis_commands(cluster)
            rps, p50, p99 = _wrk(url, case, token, args.duration, args.connections, workdir)
            per = (_redis_commands(cluster) - before) / max(1.0, rps * args.duration)
            out.append(f"| {case.title} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {per:.4f} |")
            print(out[-1], flush=True)
        out += [
            "",
            f"A return (write) over {made} new Idempotency-Keys: {new:.1f} Redis commands each; "
            f"its replay: {replay:.1f}. A new write's commands: {names}.",
            "",
        ]
        hot = _paths()[0]
        out += [
            "| cached availability, 2 workers per instance | instances | req/s (sum) | p99 ms (worst) |",
            "|---|---:|---:|---:|",
        ]
        with _gateway(workdir, env, workers=2) as one:
            rps, _, p99 = _wrk(one, hot, token, args.duration, args.connections, workdir)
            out.append(f"| one instance | 1 | {rps:,.0f} | {p99:.2f} |")
            print(out[-1], flush=True)
            with _gateway(workdir, {**env, "ERPGW_SAMPLE__PATH": str(workdir / "sample-b.sqlite")}, workers=2) as two:
                results = _parallel_wrk([one, two], hot, token, args.duration, args.connections // 2, workdir)
                total, worst = sum(r[0] for r in results), max(r[2] for r in results)
                out.append(f"| two instances, one wrk each | 2 | {total:,.0f} | {worst:.2f} |")
                print(out[-1], flush=True)
                out += ["", *_failover([one, two], token, cluster, "erpgw:v1:")]
    finally:
        cluster.stop()
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
