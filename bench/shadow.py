"""Shadow reads' cost to the caller: the p50/p99 of a shadowed read with no shadow, a healthy
shadow, a slow one and a failing one (issue 14: p50 within 10% of no shadow).

    .venv/bin/python -m bench.shadow [--duration 10] [--connections 64]

Two embedded sample ERPs, ``legacy`` (serving) and ``next`` (the shadow, behind the test
harness's fault injection: ``ERPGW_FAULTS__BACKEND=next``), one gateway of 2 gunicorn workers
on loopback, no Redis; wrk asks a contract customer's price (``POST /v1/prices/check``, cached:
the caller's answer costs no ERP call, so what is measured is what shadowing adds to the
worker) with every call sampled
(``sample_rate`` 1). Writes the results between the ``shadow`` markers of docs/benchmarks.md.
Only loopback is targeted; every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import httpx

from bench.__main__ import ROOT, _machine, bench_token, run_wrk
from bench.intake import _gateway
from bench.report import write_section

PATH = "/v1/prices/check"
BODY = '{"currency": "EUR", "customer": "C-1001", "lines": [{"sku": "TOTE-NAT", "quantity": 10}]}'
_LUA = """
wrk.method = "POST"
wrk.body = BODY
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = AUTH
"""


def _wrk(url: str, token: str, duration: int, connections: int, workdir: Path) -> dict[str, float]:
    script = workdir / "prices.lua"
    script.write_text(_LUA.replace("BODY", json.dumps(BODY)).replace("AUTH", json.dumps(f"Bearer {token}")))
    return run_wrk(script, url + PATH, duration, connections, "shadow")


def _warm(url: str, token: str) -> None:
    for _ in range(8):  # both workers' caches
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        httpx.post(url + PATH, content=BODY, headers=headers, timeout=5).raise_for_status()


def _shadow_counts(url: str, token: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5).text
    out: dict[str, float] = {}
    for outcome, value in re.findall(r'erpgw_shadow_reads_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)', text):
        out[outcome] = out.get(outcome, 0) + float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    results: list[tuple[str, dict[str, float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="erpgw-bench-shadow-") as tmp:
        workdir = Path(tmp)
        control = workdir / "faults.json"
        key_path = workdir / "dev-key.json"
        token = bench_token(key_path)
        base = {
            "ERPGW_AUTH__DEV_MODE": "true",
            "ERPGW_AUTH__DEV_KEY_PATH": str(key_path),
            "ERPGW_BACKENDS__LEGACY__KIND": "sample",
            "ERPGW_BACKENDS__LEGACY__PATH": str(workdir / "legacy.sqlite"),
            "ERPGW_BACKENDS__NEXT__KIND": "sample",
            "ERPGW_BACKENDS__NEXT__PATH": str(workdir / "next.sqlite"),
            "ERPGW_DEFAULT_BACKEND": "legacy",
            "ERPGW_IDEMPOTENCY__PATH": str(workdir / "idempotency.sqlite"),
            "ERPGW_INTAKE__PATH": str(workdir / "intake.sqlite"),
            "ERPGW_QUOTAS__ENABLED": "false",
            "ERPGW_FAULTS__CONTROL_FILE": str(control),
            "ERPGW_FAULTS__BACKEND": "next",
            "ERPGW_LOG_LEVEL": "WARNING",
        }
        control.write_text('{"mode": "ok"}')
        with _gateway(workdir, base) as url:
            _warm(url, token)
            results.append(("no shadow", _wrk(url, token, args.duration, args.connections, workdir), {}))
        shadowed = {
            **base,
            "ERPGW_ROUTING__SHADOW__BACKEND": "next",
            "ERPGW_ROUTING__SHADOW__SAMPLE_RATE": "1",
            "ERPGW_ROUTING__SHADOW__PATH": str(workdir / "shadow.sqlite"),
        }
        for title, fault in (
            ("shadow healthy", '{"mode": "ok"}'),
            ("shadow slow (800 ms a call)", '{"mode": "slow", "delay_ms": 800}'),
            ("shadow failing (breaker opens)", '{"mode": "failing"}'),
        ):
            control.write_text(fault)
            with _gateway(workdir, shadowed) as url:
                _warm(url, token)
                run = _wrk(url, token, args.duration, args.connections, workdir)
                results.append((title, run, _shadow_counts(url, token)))

    baseline = results[0][1]["p50"]
    rows = [
        "| case | reads/s | p50 ms | p99 ms | p50 vs no shadow | shadow outcomes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for title, run, counts in results:
        said = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(counts.items())) or "-"
        rows.append(
            f"| {title} | {run['rps']:,.0f} | {run['p50']:.2f} | {run['p99']:.2f} "
            f"| {run['p50'] / baseline:.2f}x | {said} |"
        )
    worst = max(run["p50"] / baseline for _, run, _ in results[2:])  # the shadow slow or failing
    healthy = results[1][1]["p50"] / baseline
    text = write_section(
        args.out,
        "shadow",
        [
            "## Shadow reads",
            "",
            f"`python -m bench.shadow --duration {args.duration} --connections {args.connections}` "
            f"on {_machine()}: "
            f"`POST {PATH}` (a cached contract price) with every read also sent to a shadow backend, "
            "2 workers, no Redis.",
            "",
            *rows,
            "",
            f"- Target: with the shadow slow or failing, the caller's p50 within 10% of no shadow: worst "
            f"{worst:.2f}x ({'met' if worst <= 1.10 else 'NOT met'}).",
            f"- A healthy shadow at a sample rate of 1 costs the worker the shadow calls themselves (up to "
            f"`max_in_flight` at once, the rest skipped): p50 {healthy:.2f}x; at a migration's usual rates "
            "(a few percent) that share shrinks with the rate.",
        ],
    )
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
