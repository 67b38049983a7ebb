"""A PostgreSQL server for the test harness: the machine's own on 127.0.0.1:5432, or a throwaway one.

``ensure_postgres()`` returns a ``PostgresServer`` (host, port, user, ``psql()``), once per process:

1. the server on ``127.0.0.1:$ERPGW_TEST_PG_PORT`` (default 5432) when it answers with trust
   authentication as ``postgres`` or ``root`` (``$ERPGW_TEST_PG_USER`` to name another);
2. otherwise (or with ``ERPGW_TEST_PG_THROWAWAY=1``) a throwaway cluster: ``initdb`` into a
   temporary directory, ``postgres`` on a free loopback port with its unix socket inside that
   directory, durability off (test data), stopped by PID and removed at exit. The binaries come
   from Debian's ``postgresql`` package, installed with apt-get when missing.

Standard library only (it imports in the gateway's venv); ``psql`` does the talking. Callers
own the databases they create: nothing here creates or drops any.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresError", "PostgresServer", "ensure_postgres", "pg_binary"]

START_TIMEOUT = 30.0


class PostgresError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bin_dirs() -> list[str]:
    # Debian keeps the server binaries out of PATH: newest version first
    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]), reverse=True)


def pg_binary(name: str, *, install: bool = True) -> str:
    """Path of a PostgreSQL program (``initdb``, ``pg_ctl``, ``psql``, ``pg_dump``...)."""
    for directory in _bin_dirs():
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    if install:
        _apt_install_postgresql()
        return pg_binary(name, install=False)
    raise PostgresError(f"{name} not found: apt-get install postgresql")


def _apt_install_postgresql() -> None:
    cmd = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null"
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise PostgresError(f"could not install postgresql ({proc.returncode}): {proc.stderr[-2000:]}")


class PostgresServer:
    """Where a PostgreSQL server answers, and ``psql`` against it."""

    def __init__(self, host: str, port: int, user: str, *, workdir: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.workdir = workdir  # set for a throwaway cluster
        self.pid: int | None = None

    @property
    def throwaway(self) -> bool:
        return self.workdir is not None

    @property
    def uri(self) -> str:
        """``postgresql://user@host:port/``: trytond's ``[database] uri``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGCONNECT_TIMEOUT="5")
        return env

    def psql(self, sql: str, *, database: str = "postgres", timeout: float = 120.0) -> str:
        """Run ``sql`` (one statement per -c: CREATE/DROP DATABASE cannot share a transaction)."""
        proc = subprocess.run(
            [pg_binary("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if proc.returncode:
            raise PostgresError(f"psql failed ({proc.returncode}) on {sql!r}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def answers(self) -> bool:
        try:
            return self.psql("SELECT 1", timeout=10) == "1"
        except (PostgresError, subprocess.TimeoutExpired):
            return False

    def major_version(self) -> int:
        return int(self.psql("SHOW server_version_num")) // 10000

    # ------------------------------------------------------------- throwaway
    @classmethod
    def throwaway_cluster(cls) -> PostgresServer:
        initdb, postgres = pg_binary("initdb"), pg_binary("postgres")
        workdir = Path(tempfile.mkdtemp(prefix="erpgw-pg-"))
        data, sockets = workdir / "data", workdir / "sockets"
        sockets.mkdir()
        as_user: dict[str, str] = {}
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            account = "postgres"
            try:
                shutil.chown(workdir, account, account)
            except LookupError:
                account = "nobody"
                shutil.chown(workdir, account)
            shutil.chown(sockets, account)
            as_user = {"user": account}
        server = cls("127.0.0.1", _free_port(), "postgres", workdir=workdir)
        log = workdir / "postgres.log"
        try:
            subprocess.run(
                [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
                capture_output=True,
                text=True,
                check=True,
                **as_user,
            )
            with open(log, "ab") as fh:
                proc = subprocess.Popen(
                    [
                        postgres,
                        "-D",
                        str(data),
                        "-p",
                        str(server.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={sockets}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    **as_user,
                )
            server._proc = proc
            server.pid = proc.pid
            atexit.register(server.stop)
            deadline = time.monotonic() + START_TIMEOUT
            while not server.answers():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise PostgresError(f"throwaway postgres did not start:\n{_tail(log)}")
                time.sleep(0.1)
        except BaseException as e:
            server.stop()
            if isinstance(e, subprocess.CalledProcessError):
                raise PostgresError(f"initdb failed: {e.stderr}") from None
            raise
        return server

    _proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Stop a throwaway cluster (fast shutdown, by PID) and remove its directory."""
        proc = self._proc
        if proc is not None:
            # SIGINT: fast shutdown (clients are disconnected, nothing waits for them)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            self._proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


_SERVER: PostgresServer | None = None


def ensure_postgres() -> PostgresServer:
    """The PostgreSQL server of this process (found or started once)."""
    global _SERVER
    if _SERVER is not None and (_SERVER.workdir is None or _SERVER._proc is not None):
        return _SERVER
    if os.environ.get("ERPGW_TEST_PG_THROWAWAY") not in (None, "", "0"):
        _SERVER = PostgresServer.throwaway_cluster()
        return _SERVER
    port = int(os.environ.get("ERPGW_TEST_PG_PORT", "5432"))
    if _listening(port):
        users = [os.environ["ERPGW_TEST_PG_USER"]] if os.environ.get("ERPGW_TEST_PG_USER") else []
        users += ["postgres", "root", getpass.getuser()]
        for user in dict.fromkeys(users):
            candidate = PostgresServer("127.0.0.1", port, user)
            if candidate.answers():
                _SERVER = candidate
                return _SERVER
    _SERVER = PostgresServer.throwaway_cluster()
    return _SERVER


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False
