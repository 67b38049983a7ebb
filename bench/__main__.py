"""Throughput and latency of the checkout's hot path, side by side (issue 7).

    .venv/bin/python -m bench [--rounds 5] [--duration 10] [--connections 64] [--cases a,b,c,d,e,t,m]

Each server runs under the same gunicorn configuration (uvicorn worker, 2 workers, loopback),
driven by wrk (Debian package) with a Lua script for headers and bodies. Rounds run back to
back, every case once per round, so the ratios compare numbers taken minutes apart at most.
Writes docs/benchmarks.md and docs/benchmarks.png. Only loopback is ever targeted; every
server started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.catalog import CatalogStep, measure_catalog
from bench.report import marked_sections
from erp_backends.dataset import load_dataset
from gateway.auth import SCOPES
from gateway.auth.devkeys import load_or_create_dev_key, mint_token
from gateway.auth.settings import DEV_ISSUER
from policies.caching import CacheSettings
from tests.harness.gateway_process import free_port
from tests.harness.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKERS = 2


@dataclass
class Case:
    key: str
    title: str
    path: str
    start: Callable[[int, Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    body: str | None = None
    auth: bool = False
    connections: int | None = None
    #: Extra request headers (the Tryton session of the direct case).
    headers: dict[str, str] = field(default_factory=dict)
    #: A server that is already running (Tryton): nothing to start.
    url: str | None = None
    #: (mean request, mean ERP call) in ms per run, from the gateway's own metrics (uncached cases).
    means_ms: list[tuple[float, float]] = field(default_factory=list)
    #: Redis commands per request during each run (gateway cases on the hot path).
    redis_per_request: list[float] = field(default_factory=list)
    results: list[tuple[float, float, float]] = field(default_factory=list)  # (req/s, p50 ms, p99 ms)


def _gunicorn(app: str) -> Callable[[int, Path], list[str]]:
    def command(port: int, _: Path) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            app,
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-w",
            str(WORKERS),
            "-b",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            "--log-level",
            "warning",
        ]

    return command


def _gateway(port: int, _: Path) -> list[str]:
    return [str(BIN / "erp-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]


def _gateway_with_faults(port: int, _: Path) -> list[str]:
    """The gateway whose workers count ERP calls (``tests.harness.serve``: the fault hook)."""
    serve = [sys.executable, "-m", "tests.harness.serve", "serve"]
    return [*serve, "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]


@contextmanager
def _server(case: Case, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    if case.url is not None:
        yield case.url
        return
    port = free_port()
    log = (workdir / f"{case.key}.log").open("wb")
    proc = subprocess.Popen(
        case.start(port, workdir),
        cwd=workdir,
        env={**os.environ, **env, **case.env, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{case.key} exited: see {workdir / case.key}.log")
            try:
                httpx.get(url + "/", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


_LUA = """
wrk.method = {method}
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


def _wrk(
    url: str, case: Case, token: str, duration: int, connections: int, workdir: Path
) -> tuple[float, float, float]:
    script = workdir / f"{case.key}.lua"
    headers = {**({"Authorization": f"Bearer {token}"} if case.auth else {}), **case.headers}
    auth = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    script.write_text(
        _LUA.format(method=json.dumps(case.method), body=json.dumps(case.body) if case.body else "nil", auth=auth)
    )
    run = run_wrk(script, url + case.path, duration, connections, case.key)
    return run["rps"], run["p50"], run["p99"]


def run_wrk(script: Path, url: str, duration: int, connections: int, what: str) -> dict[str, float]:
    """One wrk run with a Lua script against loopback: requests, rps, p50 and p99 (ms). Any
    answer that is not 2xx/3xx fails the run (the numbers would measure errors)."""
    out = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    if refused := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"{what}: {refused.group(1)} error responses during the run (see the gateway's log):\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"requests": requests, "rps": rps, "p50": pct("50"), "p99": pct("99")}


def bench_token(key_path: Path) -> str:
    """A dev-mode token with every scope for the bench client (the gateway trusts ``key_path``)."""
    key = load_or_create_dev_key(key_path)
    return mint_token(key, issuer=DEV_ISSUER, audience="erp-gateway", client_id="bench", scopes=SCOPES, ttl=86400)


def _means_ms(url: str) -> tuple[float, float]:
    """(mean request, mean ERP call) in ms for the availability route, by the gateway's own histograms."""
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if (
                sample.name
                in (
                    "erpgw_http_request_duration_seconds_sum",
                    "erpgw_http_request_duration_seconds_count",
                    "erpgw_erp_call_duration_seconds_sum",
                    "erpgw_erp_call_duration_seconds_count",
                )
                and sample.labels.get("route", "/v1/availability/{sku}") == "/v1/availability/{sku}"
            ):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    request = sums["erpgw_http_request_duration_seconds_sum"] / sums["erpgw_http_request_duration_seconds_count"]
    erp = sums["erpgw_erp_call_duration_seconds_sum"] / sums["erpgw_erp_call_duration_seconds_count"]
    return request * 1000, erp * 1000


def _redis_commands(url: str) -> int:
    """Commands the bench's Redis has served so far (INFO commandstats, without INFO itself)."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def _erp_calls_per_1000(url: str, token: str, calls_log: Path, duration: int, workdir: Path) -> float:
    calls_log.write_text("")
    hot = Case("hot", "hot SKU", "/v1/availability/CANDLE-FIG", _gateway, auth=True)
    before = 0
    rps, _, _ = _wrk(url, hot, token, duration, 64, workdir)
    calls = len(calls_log.read_text().splitlines()) - before
    return 1000 * calls / max(1.0, rps * duration)


def _tryton_cases(stack: ExitStack, workdir: Path) -> dict[str, Case]:
    """(e) for context: a real Tryton (the test harness's, seeded with the dataset), asked for one
    SKU's stock directly over JSON-RPC, as a storefront without a gateway would, and through
    the gateway with its cache off (the adapter reads both warehouses in one stock.location call)."""
    from tests.harness.tryton import TrytonServer

    tryton = stack.enter_context(TrytonServer())
    rpc = tryton.rpc().login()
    (east, *_) = rpc.model("stock.location", "search_read", [["type", "=", "warehouse"]], 0, None, None, ["code"])
    context = {k: v for k, v in rpc.context.items() if isinstance(v, int | str | bool)} | {"locations": [east["id"]]}
    fields = ["code", "quantity", "forecast_quantity", "default_uom.name"]
    body = {
        "id": 1,
        "method": "model.product.product.search_read",
        "params": [[["code", "in", ["TEE-NVY-M"]]], 0, None, None, fields, context],
    }
    session = rpc._auth or ""
    return {
        "t1": Case(
            "t1",
            "(e) Tryton directly: stock of one SKU in one warehouse (JSON-RPC), 1 connection",
            f"/{tryton.database}/rpc/",
            _gateway,
            method="POST",
            body=json.dumps(body),
            headers={"Authorization": session},
            connections=1,
            url=tryton.url,
        ),
        "t2": Case(
            "t2",
            "(e) erp-gateway on Tryton, uncached (2 warehouses, 1 call), 1 connection",
            "/v1/availability/TEE-NVY-M",
            _gateway,
            env={
                "ERPGW_BACKEND": "tryton",
                "ERPGW_TRYTON__URL": tryton.url,
                "ERPGW_TRYTON__DATABASE": tryton.database,
                "ERPGW_TRYTON__USER": tryton.user,
                "ERPGW_TRYTON__PASSWORD": tryton.password,
                "ERPGW_CACHE__ENABLED": "false",
            },
            auth=True,
            connections=1,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--cases", default="a,b,c,d,e,t,m")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="erpgw-bench-"))
    key_path = workdir / "dev-key.json"
    token = bench_token(key_path)
    redis = RedisServer(workdir)
    redis.start()
    calls_log = workdir / "erp-calls.log"
    dataset = load_dataset()
    batch = json.dumps({"skus": [p.sku for p in dataset.products] + [f"UNKNOWN-{i}" for i in range(50)]})
    gateway_env = {
        "ERPGW_SAMPLE__PATH": str(workdir / "sample.sqlite"),
        "ERPGW_REDIS__URL": redis.url,
        "ERPGW_AUTH__DEV_MODE": "true",
        "ERPGW_AUTH__DEV_KEY_PATH": str(key_path),
        "ERPGW_QUOTAS__CLASSES__DEFAULT__REQUESTS": "1000000000",
        "ERPGW_LOG_LEVEL": "WARNING",
        "ERPGW_ERP_LIMITS__CALLS_PER_SECOND": "100000",
        "ERPGW_ERP_LIMITS__MAX_CONCURRENT": "1024",
        "ERPGW_ERP_LIMITS__MAX_WAIT_SECONDS": "10",
    }
    all_cases = {
        "a": Case(
            "a",
            "(a) bare Litestar, fixed answer",
            "/v1/availability/TEE-NVY-M",
            _gunicorn("bench.apps.bare_litestar:app"),
        ),
        "b": Case(
            "b",
            "(b) erp-gateway, cached availability (JWT, quota, cache)",
            "/v1/availability/TEE-NVY-M",
            _gateway,
            auth=True,
        ),
        "c": Case(
            "c",
            "(c) FastAPI + pydantic facade, dict lookup",
            "/v1/availability/TEE-NVY-M",
            _gunicorn("bench.apps.fastapi_peer:app"),
        ),
        "d": Case(
            "d",
            "(d) erp-gateway, cached batch of 100 SKUs",
            "/v1/availability/batch",
            _gateway,
            method="POST",
            body=batch,
            auth=True,
        ),
        "e": Case(
            "e",
            "(e) erp-gateway, uncached, sample ERP at 50 ms, 8 connections",
            "/v1/availability/TEE-NVY-M",
            _gateway,
            env={"ERPGW_CACHE__ENABLED": "false", "ERPGW_SAMPLE__LATENCY_MS": "50"},
            auth=True,
            connections=8,
        ),
    }
    wanted = args.cases.split(",")
    extra: dict[str, str] = {}
    stack = ExitStack()
    if "t" in wanted:
        all_cases.update(_tryton_cases(stack, workdir))
        wanted[wanted.index("t") : wanted.index("t") + 1] = ["t1", "t2"]
    cases = [all_cases[k] for k in wanted if k in all_cases]
    try:
        for round_no in range(1, args.rounds + 1):
            for case in cases:
                with _server(case, workdir, gateway_env if case.start is _gateway else {}) as url:
                    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **case.headers}
                    httpx.request(case.method, url + case.path, content=case.body, headers=headers, timeout=10)  # warm
                    before = _redis_commands(redis.url)
                    result = _wrk(url, case, token, args.duration, case.connections or args.connections, workdir)
                    if case.key in ("e", "t2"):
                        case.means_ms.append(_means_ms(url))
                    if case.key in ("b", "d"):
                        case.redis_per_request.append(
                            (_redis_commands(redis.url) - before) / max(1.0, result[0] * args.duration)
                        )
                case.results.append(result)
                print(
                    f"round {round_no} {case.key}: {result[0]:.0f} req/s, "
                    f"p50 {result[1]:.2f} ms, p99 {result[2]:.2f} ms",
                    flush=True,
                )
        if "m" in args.cases.split(","):
            hot = Case(
                "m",
                "hot SKU",
                "/",
                _gateway_with_faults,
                env={
                    "ERPGW_FAULTS__CONTROL_FILE": str(workdir / "none.json"),
                    "ERPGW_FAULTS__CALLS_LOG": str(calls_log),
                },
            )
            with _server(hot, workdir, gateway_env) as url:
                per_1000 = _erp_calls_per_1000(url, token, calls_log, args.duration, workdir)
            extra["ERP calls per 1,000 hot-SKU requests"] = f"{per_1000:.3f}"
            print(f"ERP calls per 1,000 hot-SKU requests: {per_1000:.3f}")
    finally:
        stack.close()
        redis.stop()
    catalog = measure_catalog()
    _report(cases, extra, catalog, args)
    return 0


def _report(cases: list[Case], extra: dict[str, str], catalog: list[CatalogStep], args: argparse.Namespace) -> None:
    by_key = {c.key: c for c in cases}
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {_machine()}.",
        f"`python -m bench --rounds {args.rounds} --duration {args.duration} --connections {args.connections}`: "
        f"gunicorn with `uvicorn_worker.UvicornWorker`, {WORKERS} workers, wrk on the same machine over loopback "
        "(`-t2`), medians of the rounds. The gateway runs its production stack: an RS256 JWT on every request "
        "(verified once, then from the token cache), the per-client quota (tokens leased from Redis), the two-tier "
        "cache, and Redis for shared state.",
        "",
        "| case | req/s (median) | p50 ms | p99 ms | rounds |",
        "|---|---:|---:|---:|---:|",
    ]
    for case in cases:
        rps = statistics.median(r[0] for r in case.results)
        p50 = statistics.median(r[1] for r in case.results)
        p99 = statistics.median(r[2] for r in case.results)
        lines.append(f"| {case.title} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {len(case.results)} |")
    lines.append("")
    if "a" in by_key and "b" in by_key:
        ratios = [b[0] / a[0] for a, b in zip(by_key["a"].results, by_key["b"].results, strict=False)]
        lines.append(
            f"- (b)/(a) per round: {', '.join(f'{r:.2f}' for r in ratios)} "
            f"(median {statistics.median(ratios):.2f}; target >= 0.6)"
        )
    if "c" in by_key and "b" in by_key:
        ratios = [b[0] / c[0] for c, b in zip(by_key["c"].results, by_key["b"].results, strict=False)]
        lines.append(
            f"- (b)/(c) per round: {', '.join(f'{r:.2f}' for r in ratios)} "
            f"(median {statistics.median(ratios):.2f}; target >= 1.5)"
        )
    if "e" in by_key:
        p50 = statistics.median(r[1] for r in by_key["e"].results)
        lines.append(
            f"- Gateway overhead on a miss: p50 {p50:.2f} ms against a 50 ms ERP call = "
            f"{p50 - 50:.2f} ms (target <= 2 ms); by the gateway's own histograms, mean request minus mean "
            f"ERP call: {statistics.median(r - e for r, e in by_key['e'].means_ms):.2f} ms"
        )
    for case in cases:
        if case.redis_per_request:
            lines.append(
                f"- Redis commands per request in {case.title.split(' ', 1)[0]}: "
                f"{statistics.median(case.redis_per_request):.4f} (median of the rounds; target <= 1)"
            )
    if "t1" in by_key and "t2" in by_key:
        direct = statistics.median(r[1] for r in by_key["t1"].results)
        gateway = statistics.median(r[1] for r in by_key["t2"].results)
        lines.append(
            f"- Tryton through the gateway against Tryton directly: p50 {gateway:.2f} ms against {direct:.2f} ms "
            "(the gateway reads both warehouses in one stock.location call, context product); by the gateway's "
            f"histograms a request took {statistics.median(r for r, _ in by_key['t2'].means_ms):.1f} ms and "
            f"its Tryton call {statistics.median(e for _, e in by_key['t2'].means_ms):.1f} ms on average "
            f"(ratio to the direct call: {gateway / direct:.2f}; target <= 1.3)."
        )
    for name, value in extra.items():
        lines.append(f"- {name}: {value}")
    lines += [
        "",
        "A 100k-SKU catalog through one worker's in-process cache tier (`bench/catalog.py`; "
        f"`cache.local_max_entries` = {CacheSettings().local_max_entries:,}, least recently used out first):",
        "",
        "| distinct SKUs cached | entries held | memory held (MB) | lookup of a held SKU (µs) |",
        "|---:|---:|---:|---:|",
        *(f"| {s.skus:,} | {s.entries:,} | {s.megabytes:.1f} | {s.lookup_us:.2f} |" for s in catalog),
        "",
        "The verified-token cache is bounded the same way (`auth.token_cache_size`, LRU, "
        "tests/unit/test_auth_tokens.py).",
        "",
        "![throughput and p99 per case](benchmarks.png)",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = args.out.read_text() if args.out.exists() else ""
    for section in marked_sections(kept):  # bench.intake's and bench.shadow's stand until they run again
        lines += ["", section]
    args.out.write_text("\n".join(lines) + "\n")
    _chart(cases, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


_SHORT = {
    "a": "bare",
    "b": "gateway",
    "c": "FastAPI",
    "d": "batch 100",
    "e": "uncached",
    "t1": "Tryton direct",
    "t2": "via gateway",
}


def _chart(cases: list[Case], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"({c.key}) {_SHORT.get(c.key, '')}" for c in cases]
    rps = [statistics.median(r[0] for r in c.results) for c in cases]
    p99 = [statistics.median(r[2] for r in c.results) for c in cases]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.bar(labels, rps, color="#3b7dd8")
    left.set_title("throughput (req/s, median, log scale)")
    right.bar(labels, p99, color="#d8663b")
    right.set_title("p99 latency (ms, median, log scale)")
    for ax, values in ((left, rps), (right, p99)):
        ax.set_yscale("log")  # cached answers and ERP round trips differ by three orders of magnitude
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", labelrotation=35)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
        for x, value in enumerate(values):
            text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
            ax.annotate(text, (x, value), ha="center", va="bottom", fontsize=7)
    fig.suptitle(f"erp-gateway, {WORKERS} gunicorn workers, wrk over loopback (docs/benchmarks.md)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
