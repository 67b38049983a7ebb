"""Generated clients proven against the real gateway (README: The contract, For partners).

From the committed spec, as a partner would: a Python client with openapi-python-client and
TypeScript types with openapi-typescript (called through openapi-fetch), both without a
generator warning; the Python smoke program passes ``mypy --strict`` and the TypeScript one
``tsc --noEmit``; then each runs against its own ``erp-gateway serve`` (auth dev mode, fresh
sample ERP) and calls every operation with a success and a documented error.

The generator versions are pinned in tests/clients/python/requirements.txt and
tests/clients/typescript/package-lock.json; their installs are cached (``.venv-clients/python``
and ``tests/clients/typescript/node_modules``, both gitignored) and redone when the pins change.
Generated code is written to gitignored directories and never committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.gateway_process import GatewayProcess, cli_token

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "openapi" / "v1.json"
HERE = Path(__file__).parent
PY = HERE / "python"
TS = HERE / "typescript"
CACHE = ROOT / ".venv-clients"
PY_VENV = CACHE / "python"
PY_OUT = CACHE / "python-client"
TS_OUT = TS / "generated"
NARROW_SCOPE = "returns:read"


def _run(cmd: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``cmd``; fail the test with its output unless it exits 0. Returns stdout + stderr."""
    done = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}:\n{output}")
    return output


def _digest(*files: Path) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def _no_warnings(tool: str, output: str) -> None:
    flagged = [line for line in output.splitlines() if "warn" in line.lower() or "⚠" in line]
    assert not flagged, f"{tool} warned on openapi/v1.json:\n" + "\n".join(flagged) + f"\n\nfull output:\n{output}"


@pytest.fixture(scope="module")
def python_client() -> Path:
    """The generated package's parent directory (for PYTHONPATH)."""
    stamp = PY_VENV / ".requirements.sha256"
    wanted = _digest(PY / "requirements.txt")
    if not stamp.is_file() or stamp.read_text() != wanted:
        shutil.rmtree(PY_VENV, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(PY_VENV)])
        _run([str(PY_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(PY / "requirements.txt")])
        stamp.write_text(wanted)
    shutil.rmtree(PY_OUT, ignore_errors=True)
    output = _run(
        [
            str(PY_VENV / "bin" / "openapi-python-client"),
            "generate",
            "--path",
            str(SPEC),
            "--config",
            str(PY / "config.yaml"),
            "--meta",
            "uv",
            "--output-path",
            str(PY_OUT),
            "--fail-on-warning",
        ]
    )
    _no_warnings("openapi-python-client", output)
    # The smoke program and the generated code it calls, type-checked as a partner's code would be.
    _run(
        [
            str(Path(sys.executable).with_name("mypy")),
            "--config-file",
            str(PY / "mypy.ini"),
            "--cache-dir",
            str(CACHE / "mypy-cache"),
            "--python-executable",
            str(PY_VENV / "bin" / "python"),
            str(PY / "smoke.py"),
        ],
        env={"MYPYPATH": str(PY_OUT)},
    )
    return PY_OUT


@pytest.fixture(scope="module")
def typescript_client() -> Path:
    """The compiled smoke program (node runs it from the package, next to node_modules)."""
    npm = shutil.which("npm")
    assert npm, "npm (node 20) is required for the generated TypeScript client"
    stamp = TS / "node_modules" / ".package-lock.sha256"
    wanted = _digest(TS / "package-lock.json")
    if not stamp.is_file() or stamp.read_text() != wanted:
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TS)
        stamp.write_text(wanted)
    shutil.rmtree(TS_OUT, ignore_errors=True)
    shutil.rmtree(TS / "build", ignore_errors=True)
    bin_dir = TS / "node_modules" / ".bin"
    output = _run([str(bin_dir / "openapi-typescript"), str(SPEC), "--output", "generated/schema.ts"], cwd=TS)
    _no_warnings("openapi-typescript", output)
    _run([str(bin_dir / "tsc"), "--noEmit", "-p", "."], cwd=TS)
    _run([str(bin_dir / "tsc"), "-p", ".", "--noCheck"], cwd=TS)  # checked just above: emit only
    return TS / "build" / "smoke.js"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """A gateway of its own per smoke program (fresh sample ERP: the returns it files are new).

    It posts no orders (no posting worker runs): the order a smoke program submits stays
    ``accepted`` for it to list, replay and cancel, with no worker racing it to ``posting``."""
    auth_env = {"ERPGW_AUTH__DEV_MODE": "true", "ERPGW_AUTH__DEV_KEY_PATH": str(tmp_path / "dev-signing-key.json")}
    env = {**auth_env, "ERPGW_INTAKE__POST_IN_WORKERS": "false"}
    with GatewayProcess(tmp_path, env=env, workers=2) as process:
        yield process, auth_env


def _token(auth_env: dict[str, str], *scopes: str) -> str:
    return cli_token(auth_env, *scopes, client="smoke")


def _smoke_env(gateway: tuple[GatewayProcess, dict[str, str]]) -> dict[str, str]:
    process, auth_env = gateway
    return {
        "ERPGW_URL": process.url,
        "ERPGW_TOKEN": _token(auth_env),
        "ERPGW_NARROW_TOKEN": _token(auth_env, NARROW_SCOPE),
    }


def _smoke(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"smoke program failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    assert "every check held" in done.stdout, done.stdout


def test_python_client_calls_every_operation(
    python_client: Path, gateway: tuple[GatewayProcess, dict[str, str]]
) -> None:
    env = {**_smoke_env(gateway), "PYTHONPATH": str(python_client)}
    _smoke([str(PY_VENV / "bin" / "python"), str(PY / "smoke.py")], env, cwd=PY)


def test_typescript_client_calls_every_operation(
    typescript_client: Path, gateway: tuple[GatewayProcess, dict[str, str]]
) -> None:
    node = shutil.which("node")
    assert node, "node 20 is required for the generated TypeScript client"
    _smoke([node, str(typescript_client)], _smoke_env(gateway), cwd=TS)


def test_smoke_programs_cover_every_operation() -> None:
    """A new operation in the spec fails here until both smoke programs call it."""
    spec = json.loads(SPEC.read_text())
    operation_ids = {
        op["operationId"] for item in spec["paths"].values() for op in item.values() if "operationId" in op
    }
    python = (PY / "smoke.py").read_text()
    typescript = (TS / "smoke.ts").read_text()
    missing_py = sorted(op for op in operation_ids if f"{_snake(op)}.sync_detailed(" not in python)
    # templated paths are looked up by their prefix (``templated("/v1/orders/")``)
    missing_ts = sorted(
        path for path in spec["paths"] if f'"{path}"' not in typescript and f'"{path.split("{")[0]}"' not in typescript
    )
    assert not missing_py, f"tests/clients/python/smoke.py calls no {missing_py}"
    assert not missing_ts, f"tests/clients/typescript/smoke.ts calls no {missing_ts}"


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
