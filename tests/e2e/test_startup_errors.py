"""A bad setting stops ``erp-gateway`` before anything starts: exit status 2 and ONE line on
stderr naming the environment variable and what to set, never a traceback per worker. Run as
the newcomer runs it: the real command line, in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.gateway_process import free_port

pytestmark = pytest.mark.e2e

EXE = Path(sys.executable).with_name("erp-gateway")


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ERPGW_")}
    return subprocess.run(
        [str(EXE), *args],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *named: str) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "gunicorn" not in done.stderr  # refused in the master, before any worker was forked
    assert done.stdout == ""
    for name in named:
        assert name in lines[0]
    return lines[0]


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2", **env)


def test_serve_without_an_identity_provider_says_what_to_set(tmp_path: Path) -> None:
    line = assert_refused(serve(tmp_path), "ERPGW_AUTH__ISSUER", "ERPGW_AUTH__JWKS_URL", "ERPGW_AUTH__DEV_MODE=true")
    assert line.startswith("erp-gateway: invalid setting ERPGW_AUTH__ISSUER")
    assert_refused(serve(tmp_path, ERPGW_AUTH__ISSUER="https://sso.example.com/realms/retail"), "ERPGW_AUTH__JWKS_URL")
    plain_http = serve(
        tmp_path, ERPGW_AUTH__ISSUER="https://sso.example.com", ERPGW_AUTH__JWKS_URL="http://sso.example.com/certs"
    )
    assert_refused(plain_http, "ERPGW_AUTH__JWKS_URL", "https")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ERPGW_ERP_LIMITS__CALLS_PER_SECOND": "lots"}, ["ERPGW_ERP_LIMITS__CALLS_PER_SECOND", "'lots'", "number"]),
        ({"ERPGW_BACKEND": "oracle"}, ["ERPGW_BACKEND", "'oracle'", "sample, tryton"]),
        ({"ERPGW_OBSERVABILITY__LOG_FORMAT": "xml"}, ["ERPGW_OBSERVABILITY__LOG_FORMAT", "json, text"]),
        ({"ERPGW_HTTP__DOCS_ENABLED": "maybe"}, ["ERPGW_HTTP__DOCS_ENABLED", "true or false"]),
        ({"ERPGW_SERVER__PORTT": "80"}, ["ERPGW_SERVER__PORTT", "no such setting"]),
        ({"ERPGW_AUTH__ALGORITHMS": "HS256"}, ["ERPGW_AUTH__ALGORITHMS", "HS256"]),
        ({"ERPGW_AUTH__CLIENT_CLASSES": "storefront"}, ["ERPGW_AUTH__CLIENT_CLASSES"]),
        ({"ERPGW_REDIS__URL": "localhost:6379"}, ["ERPGW_REDIS__URL", "redis://"]),
        ({"ERPGW_CONFIG": "/no/such/gateway.toml"}, ["ERPGW_CONFIG", "/no/such/gateway.toml"]),
        ({"ERPGW_BACKEND": "tryton"}, ["ERPGW_TRYTON__PASSWORD_FILE", "ERPGW_TRYTON__PASSWORD"]),
        (
            {"ERPGW_BACKEND": "tryton", "ERPGW_TRYTON__PASSWORD_FILE": "/no/such/password"},
            ["ERPGW_TRYTON__PASSWORD_FILE", "/no/such/password"],
        ),
        ({"ERPGW_SERVER": "5", "ERPGW_SERVER__PORT": "1"}, ["ERPGW_SERVER", "group of settings"]),
        ({"ERPGW_REDIS__URL": "redis://[::1"}, ["ERPGW_REDIS__URL", "redis://"]),
        ({"ERPGW_BACKEND": "tryton", "ERPGW_BACKENDS__A__KIND": "sample"}, ["ERPGW_BACKEND", "ERPGW_DEFAULT_BACKEND"]),
        ({"ERPGW_IDEMPOTENCY__PATH": "/"}, ["ERPGW_IDEMPOTENCY__PATH", "writable"]),
        ({"ERPGW_TIMEOUTS__READ_SECONDS": "nan"}, ["ERPGW_TIMEOUTS__READ_SECONDS", "finite"]),
        ({"ERPGW_TIMEOUTS__WRITE_SECONDS": "-1"}, ["ERPGW_TIMEOUTS__WRITE_SECONDS", "finite"]),
        ({"ERPGW_BREAKER__FAIL_MAX": "0"}, ["ERPGW_BREAKER__FAIL_MAX", "more than zero"]),
        ({"ERPGW_IDEMPOTENCY__LEASE_SECONDS": "5"}, ["ERPGW_IDEMPOTENCY__LEASE_SECONDS", "WRITE_SECONDS"]),
    ],
)
def test_serve_names_every_bad_setting(tmp_path: Path, env: dict[str, str], named: list[str]) -> None:
    assert_refused(serve(tmp_path, ERPGW_AUTH__DEV_MODE="true", **env), *named)


@pytest.mark.parametrize(
    "args",
    [
        ("settings",),
        ("openapi", "--check"),
        ("token", "--client", "storefront", "--all-scopes"),
        ("check-backend",),
    ],
)
def test_every_subcommand_refuses_a_bad_setting_alike(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run(tmp_path, *args, ERPGW_ERP_LIMITS__CALLS_PER_SECOND="lots")
    assert_refused(done, "ERPGW_ERP_LIMITS__CALLS_PER_SECOND")


def test_check_backend_checks_the_backends_credentials_first(tmp_path: Path) -> None:
    done = run(tmp_path, "check-backend", ERPGW_BACKEND="tryton", ERPGW_TRYTON__PASSWORD_FILE="/no/such/password")
    assert_refused(done, "ERPGW_TRYTON__PASSWORD_FILE")


def test_commands_that_verify_no_token_need_no_identity_provider(tmp_path: Path) -> None:
    listed = run(tmp_path, "settings")
    assert listed.returncode == 0, listed.stderr
    assert "ERPGW_AUTH__ISSUER" in listed.stdout
    minted = run(tmp_path, "token", "--client", "storefront", "--scope", "availability:read")
    assert minted.returncode == 0, minted.stderr
    assert minted.stdout.count(".") == 2


def test_serve_options_are_checked_like_the_settings_they_replace(tmp_path: Path) -> None:
    """``--workers`` is ``server.workers`` for everything that reads it (each worker's quota
    share, whether orders may be cached): refused, by its flag's name, before anything starts."""
    dev = {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "key.json")}
    done = run(tmp_path, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--workers", "0", **dev)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == "erp-gateway serve: error: argument --workers: 0 is not from 1 to 1024"


def test_a_worker_whose_metrics_port_is_taken_says_so(tmp_path: Path) -> None:
    """``erp-gateway worker`` cannot listen on ``ERPGW_INTAKE__METRICS_PORT``: one line, status 2
    (a worker without its metrics would post unseen); a port out of range is a setting error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(tmp_path, "worker", ERPGW_INTAKE__METRICS_PORT=str(port), ERPGW_INTAKE__PATH="intake.sqlite")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"cannot serve metrics on 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr
    assert_refused(run(tmp_path, "worker", ERPGW_INTAKE__METRICS_PORT="70000"), "ERPGW_INTAKE__METRICS_PORT")
    off = run(
        tmp_path,
        "worker",
        ERPGW_INTAKE__METRICS_PORT=str(free_port()),
        ERPGW_OBSERVABILITY__METRICS_ENABLED="false",
        ERPGW_INTAKE__PATH="intake.sqlite",
    )
    assert off.returncode == 2, off.stderr  # a port promised to Prometheus that nothing would serve
    assert "ERPGW_OBSERVABILITY__METRICS_ENABLED is false" in off.stderr
