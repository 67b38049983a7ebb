"""Start the real ``erp-gateway serve`` (gunicorn, N workers) on a free loopback port.

Used by end-to-end tests; stops only the process it started, by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from tests.harness.faults import CONTROL_FILE_ENV

__all__ = ["GatewayProcess", "PostingWorkerProcess", "free_port", "serve_command", "worker_command"]

_ROOT = Path(__file__).parents[2]


def serve_command(env: dict[str, str]) -> list[str]:
    """``erp-gateway serve``; with a fault control file in ``env``, the same through
    ``tests.harness.serve``, which installs fault injection in every worker (and puts this
    checkout on ``PYTHONPATH`` in ``env``, since the process runs in a scratch directory)."""
    if env.get(CONTROL_FILE_ENV):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
        return [sys.executable, "-m", "tests.harness.serve", "serve"]
    return [str(Path(sys.executable).with_name("erp-gateway")), "serve"]


def worker_command(env: dict[str, str]) -> list[str]:
    """``erp-gateway worker`` (order intake's posting loop), through ``tests.harness.serve``
    when ``env`` names a fault control file, as ``serve_command``."""
    return [*serve_command(env)[:-1], "worker"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.log_path = workdir / "gateway.log"
        self._env = {**os.environ, "ERPGW_SAMPLE__PATH": str(workdir / "sample.sqlite"), **(env or {})}
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    *serve_command(self._env),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                cwd=self._workdir,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if (
                    httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
                    and len(self.worker_pids()) == self.workers
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gateway did not become ready in {timeout} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: children of the master process."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the gunicorn master (only while the process this harness started runs)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        """The master's exit status once it has exited, waiting up to ``timeout`` s; None if it still runs."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class PostingWorkerProcess:
    """``erp-gateway worker`` as its own process (``ERPGW_INTAKE__POST_IN_WORKERS=false`` beside
    a gateway): started with the environment given, stopped by SIGTERM or killed by SIGKILL, by
    its PID only. Its output goes to ``log_path`` (appended: a restarted worker adds to it)."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None, name: str = "worker") -> None:
        self.log_path = workdir / f"{name}.log"
        self._env = {**os.environ, **(env or {})}
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                worker_command(self._env),
                cwd=self._workdir,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> int:
        """SIGKILL (nothing in flight finishes); its exit status."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        return self._proc.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM (posts in flight finish), SIGKILL after 20 s; its exit status (None: never started)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                return self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return self._proc.wait(timeout=5)

    def __enter__(self) -> PostingWorkerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def cli_token(auth_env: Mapping[str, str], *scopes: str, client: str) -> str:
    """A token minted the README's way, ``erp-gateway token`` (dev mode); all scopes when none are named."""
    args = [arg for scope in scopes for arg in ("--scope", scope)] or ["--all-scopes"]
    exe = Path(sys.executable).with_name("erp-gateway")
    done = subprocess.run(
        [str(exe), "token", "--client", client, *args],
        env={**os.environ, **auth_env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()
