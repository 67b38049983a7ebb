"""A real, seeded Tryton 8.2 server on loopback for tests and developers.

Standard library only: this module imports in the gateway's venv, which does
not have trytond. Tryton lives in its own venv (built from
``tryton_requirements.txt``) and is driven through subprocesses.

Caching (default ``~/.cache/erp-gateway/tryton/``, env ``TRYTON_HARNESS_CACHE``):

- ``venv-<hash(requirements)>/``: the Tryton venv; ``.complete`` is written
  last, an incomplete venv is wiped and rebuilt.
  The venv also holds the project's own Tryton module ``erpgw_idempotency``
  (``erp_backends/tryton/module/``), reinstalled when its files change.
- ``db-<hash(requirements, retail.toml, tryton_seed.py, module, ...)>/erpgw.sqlite``:
  the "golden" seeded database. Built in a temporary directory, verified over
  JSON-RPC against a throw-away server, then renamed into place (atomic), so
  an interrupted run never leaves a half-seeded cache.
- PostgreSQL flavour (``database_kind="postgresql"``, server from
  ``tests/harness/postgres_server.py``): the golden database is a template
  database ``erpgw_golden_<db_key()>`` on that server; each ``TrytonServer``
  gets ``CREATE DATABASE erpgw_<random> TEMPLATE erpgw_golden_...`` (a reset
  drops and re-creates it). ``pg-<db_key()>/golden.dump`` (pg_dump of the
  verified build) restores the template in seconds on a server that lacks it,
  e.g. a fresh throwaway cluster.

All builds take a file lock, so parallel test workers wait for one build.

Usage from tests::

    from tests.harness.tryton import TrytonServer
    with TrytonServer() as server:   # or TrytonServer(database_kind="postgresql")
        server.url, server.database, server.user, server.password
        ...
        server.reset()   # back to the golden data, same port
        server.stop(); server.restart()   # an outage: same port, same data

CLI (from the repository root)::

    python -m tests.harness.tryton prepare        # venv + both golden dbs only
    python -m tests.harness.tryton serve [--port N] [--database-kind postgresql]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import weakref
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from tests.harness.postgres_server import PostgresError, PostgresServer, ensure_postgres, pg_binary

HARNESS_DIR = Path(__file__).resolve().parent
REPO_ROOT = HARNESS_DIR.parents[1]
REQUIREMENTS = HARNESS_DIR / "tryton_requirements.txt"
SEED_SCRIPT = HARNESS_DIR / "tryton_seed.py"
DATASET = REPO_ROOT / "erp_backends" / "dataset" / "retail.toml"
#: The project's Tryton module: sale.complaint.reference unique (one complaint per Idempotency-Key).
MODULE_DIR = REPO_ROOT / "erp_backends" / "tryton" / "module" / "erpgw_idempotency"
MODULE_NAME = "erpgw_idempotency"

MODULES = (
    "party",
    "company",
    "currency",
    "product",
    "stock",
    "product_price_list",
    "sale",
    "sale_price_list",
    "sale_complaint",
    MODULE_NAME,
)
DATABASE_KINDS = ("sqlite", "postgresql")
DATABASE = "erpgw"
ADMIN_LOGIN = "admin"
# Throw-away test database: a fixed password of 8+ characters (Tryton's
# default policy wants 8; the config lowers it anyway so it never bites).
ADMIN_PASSWORD = "erpgw-tryton-admin"
ADMIN_EMAIL = "admin@erpgw.invalid"
COMPLAINT_TYPE_NAME = "Return authorization"

START_TIMEOUT = 60.0
STOP_GRACE = 5.0


class TrytonHarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------- cache
def cache_dir() -> Path:
    path = os.environ.get("TRYTON_HARNESS_CACHE")
    base = Path(path) if path else (Path.home() / ".cache" / "erp-gateway" / "tryton")
    base.mkdir(parents=True, exist_ok=True)
    return base


def _digest(*parts: bytes | str | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            part = part.read_bytes()
        elif isinstance(part, str):
            part = part.encode()
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def venv_key() -> str:
    return _digest(REQUIREMENTS, sys.version_info[:2].__repr__())


def _module_files() -> list[Path]:
    return sorted(
        p for p in MODULE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def module_key() -> str:
    files = _module_files()
    return _digest(*(str(p.relative_to(MODULE_DIR)) for p in files), *files)


def db_key() -> str:
    return _digest(
        REQUIREMENTS,
        DATASET,
        SEED_SCRIPT,
        " ".join(MODULES),
        module_key(),
        DATABASE,
        ADMIN_LOGIN,
        ADMIN_PASSWORD,
        "v2",
    )


@contextlib.contextmanager
def _locked(name: str):
    lock_path = cache_dir() / f"{name}.lock"
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _log(msg: str) -> None:
    print(f"[tryton-harness] {msg}", file=sys.stderr, flush=True)


def _run(cmd, *, log_path: Path, env=None, cwd=None) -> None:
    with open(log_path, "ab") as log:
        log.write(("\n$ " + " ".join(map(str, cmd)) + "\n").encode())
        log.flush()
        proc = subprocess.run(list(map(str, cmd)), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if proc.returncode:
        raise TrytonHarnessError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- {log_path} (tail) ---\n{_tail(log_path)}"
        )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def _base_python() -> str:
    return sys.executable or shutil.which("python3") or "python3"


# ---------------------------------------------------------------------- venv
def venv_dir() -> Path:
    return cache_dir() / f"venv-{venv_key()}"


def venv_python(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "python"


def ensure_venv() -> Path:
    """Create (once) the Tryton venv for the pinned requirements, with the project's module."""
    venv = venv_dir()
    marker = venv / ".complete"
    module_marker = venv / f".module-{module_key()}"
    if marker.exists() and module_marker.exists():
        return venv
    with _locked(venv.name):
        if marker.exists():
            if not module_marker.exists():
                _install_module(venv, module_marker)
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        t0 = time.monotonic()
        _log(f"building Tryton venv {venv}")
        log_path = cache_dir() / f"{venv.name}.log"
        log_path.unlink(missing_ok=True)
        try:
            _run([_base_python(), "-m", "venv", venv], log_path=log_path)
            _pip_install(venv, log_path, "-r", REQUIREMENTS)
            _run(
                [venv_python(venv), "-c", "import trytond, proteus, trytond.modules.sale_complaint"], log_path=log_path
            )
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        marker.write_text(REQUIREMENTS.read_text())
        _install_module(venv, module_marker)
        _log(f"venv ready in {time.monotonic() - t0:.1f}s")
    return venv


def _pip_install(venv: Path, log_path: Path, *args: str | Path) -> None:
    _run(
        [venv_python(venv), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", *args],
        log_path=log_path,
    )


def _install_module(venv: Path, marker: Path) -> None:
    """pip install the erpgw_idempotency module (a wheel build: nothing is written to the repo)."""
    t0 = time.monotonic()
    log_path = cache_dir() / f"{venv.name}.log"
    for old in venv.glob(".module-*"):
        old.unlink()
    _pip_install(venv, log_path, "--no-deps", "--force-reinstall", MODULE_DIR)
    _run([venv_python(venv), "-c", f"import trytond.modules.{MODULE_NAME}.complaint"], log_path=log_path)
    marker.write_text(module_key())
    _log(f"module {MODULE_NAME} installed in {time.monotonic() - t0:.1f}s")


# ------------------------------------------------------------------ database
def _write_config(path: Path, db_dir: Path, port: int | None = None, uri: str = "sqlite://") -> None:
    lines = [
        "[database]",
        f"uri = {uri}",
        f"path = {db_dir}",
        "",
        "[password]",
        "length = 6",
        "",
    ]
    if port is not None:
        lines += ["[web]", f"listen = 127.0.0.1:{port}", ""]
    path.write_text("\n".join(lines))


def _tryton_env(conf: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND_")}
    env["TRYTOND_CONFIG"] = str(conf)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def golden_dir() -> Path:
    return cache_dir() / f"db-{db_key()}"


def golden_db() -> Path:
    return golden_dir() / f"{DATABASE}.sqlite"


def password_file() -> Path:
    path = cache_dir() / "admin-password"
    if not path.exists() or path.read_text().strip() != ADMIN_PASSWORD:
        path.write_text(ADMIN_PASSWORD + "\n")
    return path


def ensure_seeded_db() -> Path:
    """Return the golden seeded SQLite file, building it when missing."""
    final = golden_dir()
    if (final / f"{DATABASE}.sqlite").exists():
        return final / f"{DATABASE}.sqlite"
    venv = ensure_venv()
    with _locked(final.name):
        if (final / f"{DATABASE}.sqlite").exists():
            return final / f"{DATABASE}.sqlite"
        # leftovers of a killed build (a live build would hold the lock)
        for stale in cache_dir().glob(f"{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=cache_dir()))
        try:
            _build_db(venv, tmp)
            (tmp / "built_on").write_text(datetime.date.today().isoformat())
            # The seeded file is the golden copy; check it on a copy.
            _verify_db(tmp / f"{DATABASE}.sqlite")
            for name in ("trytond.conf", "passfile"):
                (tmp / name).unlink(missing_ok=True)
            os.rename(tmp, final)
        except BaseException:
            keep = cache_dir() / "last-failed-build"
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir()
            for name in ("admin.log", "seed.log"):
                with contextlib.suppress(OSError):
                    shutil.copy(tmp / name, keep / name)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _log(f"golden database ready in {time.monotonic() - t0:.1f}s: {final / (DATABASE + '.sqlite')}")
    return final / f"{DATABASE}.sqlite"


def _build_db(venv: Path, work: Path, *, uri: str = "sqlite://", database: str = DATABASE) -> None:
    """trytond-admin (activate MODULES) then the seed script, into ``database`` (created empty)."""
    conf = work / "trytond.conf"
    _write_config(conf, work, uri=uri)
    passfile = work / "passfile"
    passfile.write_text(ADMIN_PASSWORD + "\n")
    if uri.startswith("sqlite"):
        (work / f"{database}.sqlite").write_bytes(b"")
    env = _tryton_env(conf)
    env["TRYTONPASSFILE"] = str(passfile)
    t0 = time.monotonic()
    _run(
        [
            venv_python(venv),
            venv / "bin" / "trytond-admin",
            "-c",
            conf,
            "-d",
            database,
            "--email",
            ADMIN_EMAIL,
            "-u",
            *MODULES,
            "--activate-dependencies",
        ],
        log_path=work / "admin.log",
        env=env,
    )
    _log(f"trytond-admin done in {time.monotonic() - t0:.1f}s")
    t0 = time.monotonic()
    env.pop("TRYTONPASSFILE")
    env["TRYTOND_DATABASE_URI"] = uri
    _run(
        [venv_python(venv), SEED_SCRIPT, "--config", conf, "--database", database, "--dataset", DATASET],
        log_path=work / "seed.log",
        env=env,
    )
    _log(f"seeded in {time.monotonic() - t0:.1f}s")


def _verify_db(db_file: Path) -> None:
    t0 = time.monotonic()
    with TrytonServer(golden=db_file) as server:
        verify_dataset(server)
    _log(f"verified over JSON-RPC in {time.monotonic() - t0:.1f}s")


# ------------------------------------------------------- PostgreSQL database
_PG_STOP_ORDERED = False


def postgres() -> PostgresServer:
    """The PostgreSQL server the harness uses (tests/harness/postgres_server.py)."""
    global _PG_STOP_ORDERED
    server = ensure_postgres()
    if not _PG_STOP_ORDERED:
        # atexit runs last-registered first: stop trytond before a throwaway postgres goes
        atexit.unregister(_stop_live_servers)
        atexit.register(_stop_live_servers)
        _PG_STOP_ORDERED = True
    return server


def pg_golden_name() -> str:
    return f"erpgw_golden_{db_key()}"


def pg_cache_dir() -> Path:
    return cache_dir() / f"pg-{db_key()}"


def _pg_exists(pg: PostgresServer, name: str) -> bool:
    return pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"


def _pg_drop(pg: PostgresServer, name: str) -> None:
    assert name.startswith("erpgw_"), name  # the harness drops only databases it names
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_pg_golden() -> str:
    """Name of the golden template database on ``postgres()``, built or restored when missing.

    Built like the SQLite one (trytond-admin + seed into ``erpgw_build_<key>_<random>``),
    verified over JSON-RPC, dumped to the cache, then renamed to ``erpgw_golden_<key>`` and
    marked a template that accepts no connections (so ``CREATE DATABASE ... TEMPLATE`` never
    finds it busy). With the dump cached, a server without the template gets it by pg_restore.
    """
    pg = postgres()
    golden = pg_golden_name()
    if _pg_exists(pg, golden):
        return golden
    venv = ensure_venv()
    key = db_key()
    with _locked(f"pg-{key}"):
        if _pg_exists(pg, golden):
            return golden
        stale = pg.psql(f"SELECT datname FROM pg_database WHERE datname LIKE 'erpgw\\_build\\_{key}\\_%'")
        for name in stale.split():
            _pg_drop(pg, name)  # leftovers of a killed build (a live one would hold the lock)
        t0 = time.monotonic()
        build = f"erpgw_build_{key}_{secrets.token_hex(4)}"
        dump = pg_cache_dir() / "golden.dump"
        pg.psql(f"CREATE DATABASE \"{build}\" TEMPLATE template0 ENCODING 'UTF8'")
        try:
            restored = False
            if dump.exists():
                try:
                    _pg_restore(pg, dump, build)
                    restored = True
                except (PostgresError, TrytonHarnessError) as e:
                    _log(f"cached dump did not restore ({e}); building")
                    _pg_drop(pg, build)
                    pg.psql(f"CREATE DATABASE \"{build}\" TEMPLATE template0 ENCODING 'UTF8'")
            if not restored:
                _build_pg(pg, venv, build)
            pg.psql(f'ALTER DATABASE "{build}" RENAME TO "{golden}"')
        except BaseException:
            with contextlib.suppress(Exception):
                _pg_drop(pg, build)
            raise
        pg.psql(f'ALTER DATABASE "{golden}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        how = "restored from the cached dump" if restored else "built"
        _log(f"golden PostgreSQL database {golden} {how} in {time.monotonic() - t0:.1f}s")
    return golden


def _build_pg(pg: PostgresServer, venv: Path, build: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="erpgw-pg-build-"))
    try:
        try:
            _build_db(venv, work, uri=pg.uri, database=build)
        except BaseException:
            keep = cache_dir() / "last-failed-build"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(work, keep, ignore=shutil.ignore_patterns("passfile"))
            raise
        out = pg_cache_dir()
        out.mkdir(exist_ok=True)
        (out / "built_on").write_text(datetime.date.today().isoformat())
        t0 = time.monotonic()
        with TrytonServer(database_kind="postgresql", golden=build) as server:
            verify_dataset(server)
        _log(f"verified over JSON-RPC in {time.monotonic() - t0:.1f}s")
        tmp = out / f"golden.dump.tmp-{os.getpid()}"
        _run([pg_binary("pg_dump"), "-Fc", "-Z", "1", "-f", tmp, "-d", build], log_path=work / "dump.log", env=pg.env())
        os.replace(tmp, out / "golden.dump")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pg_restore(pg: PostgresServer, dump: Path, database: str) -> None:
    log_path = cache_dir() / "pg-restore.log"
    log_path.unlink(missing_ok=True)
    _run(
        [pg_binary("pg_restore"), "--no-owner", "--no-acl", "--exit-on-error", "-d", database, dump],
        log_path=log_path,
        env=pg.env(),
    )


# -------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post_json(url: str, payload: dict, headers: dict | None = None, timeout: float = 30.0):
    data = json.dumps(payload).encode()
    req = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


_LIVE_SERVERS: weakref.WeakSet[TrytonServer] = weakref.WeakSet()


@atexit.register
def _stop_live_servers() -> None:
    # trytond runs in its own session (a Ctrl-C on the test run does not
    # reach it): stop what this process started.
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop()


class TrytonServer:
    """A trytond process serving a private copy of the golden database.

    ``database_kind``: ``"sqlite"`` (a copy of the golden file in the work directory) or
    ``"postgresql"`` (database ``erpgw_<random>`` made from the golden template on
    ``postgres()``, dropped by ``close()``). ``golden`` overrides the source: a file for
    SQLite, a database name for PostgreSQL.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        golden: Path | str | None = None,
        workdir: Path | None = None,
        start_timeout: float = START_TIMEOUT,
        database_kind: str = "sqlite",
    ):
        if database_kind not in DATABASE_KINDS:
            raise ValueError(f"database_kind must be one of {DATABASE_KINDS}, not {database_kind!r}")
        self.database_kind = database_kind
        self._pg: PostgresServer | None = None
        if database_kind == "postgresql":
            self._golden: Path | str | None = str(golden) if golden else None
            self._database = f"erpgw_{secrets.token_hex(6)}"
        else:
            self._golden = Path(golden) if golden else None
            self._database = DATABASE
        self._requested_port = port
        self._port: int | None = None
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._log_fh = None

    # public facts
    @property
    def port(self) -> int:
        if self._port is None:
            raise TrytonHarnessError("server not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        return self._database

    @property
    def postgres(self) -> PostgresServer:
        """The PostgreSQL server holding ``database`` (PostgreSQL flavour only)."""
        if self._pg is None:
            raise TrytonHarnessError("not a PostgreSQL-backed server")
        return self._pg

    @property
    def user(self) -> str:
        return ADMIN_LOGIN

    @property
    def password(self) -> str:
        return ADMIN_PASSWORD

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise TrytonHarnessError("server not started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "trytond.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def rpc(self) -> TrytonRPC:
        return TrytonRPC(self.url, self.database, self.user, self.password)

    # lifecycle
    def start(self) -> TrytonServer:
        if self.running:
            return self
        venv = ensure_venv()
        if self.database_kind == "postgresql":
            self._pg = postgres()
            if self._golden is None:
                self._golden = ensure_pg_golden()
        elif self._golden is None:
            self._golden = ensure_seeded_db()
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="erpgw-tryton-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._copy_golden()
        attempts = 1 if self._requested_port or self._port else 3
        for attempt in range(attempts):
            if self._port is None:
                self._port = self._requested_port or free_port()
            try:
                self._launch(venv)
                break
            except TrytonHarnessError as e:
                # free_port() races with other processes: pick another one
                if attempt + 1 == attempts or "Address already in use" not in str(e):
                    raise
                self._port = None
        self._reschedule_if_stale()
        return self

    def _reschedule_if_stale(self) -> None:
        """Run Tryton's daily shipment reschedule when the golden copy was
        seeded on an earlier day.

        Tryton counts draft moves in forecast_quantity only when planned
        from today on; open shipments seeded yesterday would silently drop
        out of the forecast. A real deployment runs this cron daily
        (trytond-cron); the harness runs it once at start instead.
        """
        if self.database_kind == "postgresql":
            built_on = pg_cache_dir() / "built_on"
        else:
            built_on = Path(self._golden).parent / "built_on"
        today = datetime.date.today().isoformat()
        if built_on.exists() and built_on.read_text().strip() >= today:
            return
        rpc = self.rpc().login()
        crons = rpc.model("ir.cron", "search", [["method", "=", "stock.shipment.out|reschedule"]], 0, None, None)
        if crons:
            rpc.model("ir.cron", "run_once", crons)

    def _copy_golden(self) -> None:
        if self.running:
            raise TrytonHarnessError("refusing to copy over a live database")
        if self.database_kind == "postgresql":
            _pg_drop(self.postgres, self._database)
            self.postgres.psql(f'CREATE DATABASE "{self._database}" TEMPLATE "{self._golden}"')
            return
        target = self._workdir / f"{DATABASE}.sqlite"
        for suffix in ("-journal", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        tmp = target.with_suffix(".copying")
        shutil.copyfile(self._golden, tmp)
        os.replace(tmp, target)

    def _launch(self, venv: Path) -> None:
        conf = self._workdir / "trytond.conf"
        uri = self.postgres.uri if self.database_kind == "postgresql" else "sqlite://"
        _write_config(conf, self._workdir, self._port, uri=uri)
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [str(venv_python(venv)), str(venv / "bin" / "trytond"), "-c", str(conf), "-d", self._database]
        self._proc = subprocess.Popen(
            cmd,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_tryton_env(conf),
            cwd=self._workdir,
            start_new_session=True,
        )
        _LIVE_SERVERS.add(self)
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._cleanup_proc()
                raise TrytonHarnessError(
                    f"trytond exited with {code} while starting\n--- {self.log_path} (tail) ---\n{_tail(self.log_path)}"
                )
            try:
                version = _post_json(
                    f"{self.url}/rpc/", {"id": 0, "method": "common.server.version", "params": []}, timeout=2
                )
                if "result" in version:
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TrytonHarnessError(
                    f"trytond did not answer within {self._start_timeout}s\n"
                    f"--- {self.log_path} (tail) ---\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._cleanup_proc()

    def _cleanup_proc(self) -> None:
        self._proc = None
        _LIVE_SERVERS.discard(self)
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None

    def restart(self) -> TrytonServer:
        """Start again after ``stop()``, on the same port and database, with the data as the
        stop left it (the end of an outage, not a reset: what was written before is kept)."""
        if self.running:
            return self
        if self._port is None or self._workdir is None:
            raise TrytonHarnessError("server was never started: start() it")
        self._launch(ensure_venv())
        return self

    def reset(self) -> TrytonServer:
        """Back to the golden data: stop, copy, start on the same port."""
        self.stop()
        self._copy_golden()
        self._launch(ensure_venv())
        self._reschedule_if_stale()
        return self

    def close(self) -> None:
        """Stop, drop a PostgreSQL database, remove the working directory (if the harness made it)."""
        self.stop()
        if self._pg is not None:
            with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
                _pg_drop(self._pg, self._database)
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TrytonServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------ JSON-RPC
class TrytonRPCError(Exception):
    def __init__(self, error):
        self.error = error
        super().__init__(error)

    @property
    def type(self) -> str:
        return self.error[0] if isinstance(self.error, list) else ""


class TrytonRPC:
    """Minimal Tryton JSON-RPC client (session auth, warnings, decoding)."""

    def __init__(self, url: str, database: str, login: str, password: str):
        self.endpoint = f"{url}/{database}/rpc/"
        self.login_name = login
        self.password = password
        self.uid: int | None = None
        self._auth: str | None = None
        self.context: dict = {}
        self._id = 0

    def login(self) -> TrytonRPC:
        uid, token, *_ = self._raw("common.db.login", [self.login_name, {"password": self.password}, "en"])
        self.uid = uid
        self._auth = "Session " + base64.b64encode(f"{self.login_name}:{uid}:{token}".encode()).decode()
        self.context = self._raw("model.res.user.get_preferences", [True, {}])
        return self

    def _raw(self, method: str, params: list):
        self._id += 1
        headers = {"Authorization": self._auth} if self._auth else {}
        try:
            answer = _post_json(self.endpoint, {"id": self._id, "method": method, "params": params}, headers)
        except urllib.error.HTTPError as e:
            raise TrytonRPCError(["HTTPError", e.code, e.read().decode(errors="replace")]) from None
        if answer.get("error"):
            raise TrytonRPCError(answer["error"])
        return decode(answer.get("result"))

    def call(self, method: str, *args, context: dict | None = None, accept_warnings: bool = False):
        """Call ``method`` with the session context (+ ``context``) last."""
        if self._auth is None:
            self.login()
        ctx = {**self.context, **(context or {})}
        params = [encode(a) for a in args] + [encode(ctx)]
        for _ in range(5):
            try:
                return self._raw(method, params)
            except TrytonRPCError as e:
                if accept_warnings and e.type == "UserWarning":
                    name = e.error[1][0]
                    self._raw(
                        "model.res.user.warning.create", [[{"user": self.uid, "name": name, "always": False}], {}]
                    )
                    continue
                raise
        raise TrytonHarnessError(f"{method}: too many warnings")

    def model(self, model: str, method: str, *args, **kw):
        return self.call(f"model.{model}.{method}", *args, **kw)


def encode(value):
    dt = datetime
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value):
    dt = datetime
    if isinstance(value, dict):
        cls = value.get("__class__")
        if cls == "Decimal":
            return Decimal(value["decimal"])
        if cls == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if cls == "datetime":
            return dt.datetime(
                value["year"],
                value["month"],
                value["day"],
                value.get("hour", 0),
                value.get("minute", 0),
                value.get("second", 0),
                value.get("microsecond", 0),
            )
        if cls == "bytes":
            return base64.b64decode(value["base64"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


# -------------------------------------------------------------- verification
def _money(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_price(data: dict, price_list: str, sku: str, qty: int):
    products = {p["sku"]: p for p in data["products"]}
    (pl,) = [p for p in data["price_lists"] if p["code"] == price_list]
    list_price = Decimal(products[sku]["list_price"])
    for rule in pl["rules"]:
        if rule.get("sku") not in (None, sku):
            continue
        if qty < rule["min_quantity"]:
            continue
        pct = Decimal(rule["discount_percent"])
        return _money(list_price * (1 - pct / 100))
    return None


def verify_dataset(server: TrytonServer, dataset: Path = DATASET) -> dict:
    """Check stock and prices of a seeded server against the dataset."""
    with open(dataset, "rb") as fh:
        data = tomllib.load(fh)
    rpc = server.rpc().login()
    problems = []
    skus = [p["sku"] for p in data["products"]]

    whs = rpc.model("stock.location", "search_read", [["type", "=", "warehouse"]], 0, None, None, ["code", "name"])
    wh_ids = {w["code"]: w["id"] for w in whs}
    for w in data["warehouses"]:
        if w["code"] not in wh_ids:
            problems.append(f"warehouse {w['code']} missing")

    committed = defaultdict(int)
    for o in data["orders"]:
        if o["state"] == "cancelled":
            continue
        for line in o["lines"]:
            committed[(o["warehouse"], line["sku"])] += line["quantity"] - line["shipped"]

    for code, wh_id in wh_ids.items():
        rows = rpc.model(
            "product.product",
            "search_read",
            [["code", "in", skus]],
            0,
            None,
            None,
            ["code", "quantity", "forecast_quantity"],
            context={"locations": [wh_id]},
        )
        got = {r["code"]: r for r in rows}
        for p in data["products"]:
            r = got.get(p["sku"])
            if r is None:
                problems.append(f"product {p['sku']} missing")
                continue
            on_hand = p["on_hand"].get(code, 0)
            forecast = on_hand - committed[(code, p["sku"])]
            if r["quantity"] != on_hand:
                problems.append(f"{p['sku']}@{code} quantity {r['quantity']} != on_hand {on_hand}")
            if r["forecast_quantity"] != forecast:
                problems.append(f"{p['sku']}@{code} forecast {r['forecast_quantity']} != {forecast}")

    (currency,) = rpc.model("currency.currency", "search", [["code", "=", data["currency"]]], 0, None, None)
    checks = [
        ("C-1001", "TOTE-NAT", 20, Decimal("15.30")),
        ("C-1001", "TOTE-NAT", 5, Decimal("17.10")),
        ("C-1001", "MUG-SND", 24, Decimal("11.20")),
        ("C-1001", "LAMP-WHT", 1, Decimal("75.05")),
    ]
    customers = {c["reference"]: c for c in data["customers"]}
    for c in data["customers"]:
        if not c.get("price_list"):
            continue
        for sku in skus:
            for qty in (1, 5, 6, 10, 24, 50):
                checks.append((c["reference"], sku, qty, None))
    parties = {
        p["code"]: p
        for p in rpc.model(
            "party.party", "search_read", [["code", "in", list(customers)]], 0, None, None, ["code", "sale_price_list"]
        )
    }
    products = {
        p["code"]: p["id"]
        for p in rpc.model("product.product", "search_read", [["code", "in", skus]], 0, None, None, ["code"])
    }
    # one call per (customer, quantity), all products at once
    by_call = defaultdict(list)
    for ref, sku, qty, want in checks:
        by_call[(ref, qty)].append((sku, want))
    for (ref, qty), items in by_call.items():
        party = parties[ref]
        rows = rpc.model(
            "product.product",
            "read",
            [products[s] for s, _ in items],
            ["code", "sale_price_uom"],
            context={
                "customer": party["id"],
                "currency": currency,
                "quantity": qty,
                "price_list": party["sale_price_list"],
            },
        )
        prices = {r["code"]: r["sale_price_uom"] for r in rows}
        for sku, want in items:
            if want is None:
                want = expected_price(data, customers[ref]["price_list"], sku, qty)
            got = prices[sku]
            if got is None or _money(got) != want:
                problems.append(f"price {ref} {sku} x{qty}: {got} != {want}")

    # orders: numbers, references, shipment numbers
    sales = rpc.model("sale.sale", "search_read", [], 0, None, None, ["number", "reference", "state", "shipments"])
    by_number = {s["number"]: s for s in sales}
    for o in data["orders"]:
        s = by_number.get(o["number"])
        if not s:
            problems.append(f"sale {o['number']} missing")
            continue
        if s["reference"] != o["external_ref"]:
            problems.append(f"sale {o['number']} reference {s['reference']}")
        if (o["state"] == "cancelled") != (s["state"] == "cancelled"):
            problems.append(f"sale {o['number']} state {s['state']}")
        ships = {
            x["number"]: x
            for x in rpc.model("stock.shipment.out", "read", s["shipments"], ["number", "state", "reference"])
        }
        for spec in o["shipments"]:
            x = ships.get(spec["number"])
            if not x:
                problems.append(f"shipment {spec['number']} missing")
                continue
            want = "done" if spec["state"] == "shipped" else "assigned"
            if x["state"] != want:
                problems.append(f"shipment {spec['number']} {x['state']}")
            if spec.get("tracking") and x["reference"] != spec["tracking"]:
                problems.append(f"shipment {spec['number']} reference")
    if problems:
        raise TrytonHarnessError("seeded database does not match the dataset:\n  " + "\n  ".join(problems))
    return {"warehouses": wh_ids, "checked_prices": len(checks)}


# ----------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.tryton")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="seed if needed and serve")
    serve.add_argument("--port", type=int, default=None)
    verify = sub.add_parser("verify", help="start a server and check the dataset")
    for command in (serve, verify):
        command.add_argument("--database-kind", choices=DATABASE_KINDS, default="sqlite")
    prepare = sub.add_parser("prepare", help="build the venv and the golden dbs only")
    prepare.add_argument("--database-kind", choices=(*DATABASE_KINDS, "all"), default="all")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    if args.cmd == "prepare":
        venv = ensure_venv()
        print(f"venv:             {venv}")
        if args.database_kind in ("sqlite", "all"):
            print(f"golden db:        {ensure_seeded_db()}")
        if args.database_kind in ("postgresql", "all"):
            golden = ensure_pg_golden()
            pg = postgres()
            where = "throwaway cluster, gone at exit; dump cached" if pg.throwaway else pg.uri
            print(f"golden pg db:     {golden} ({where})")
            print(f"golden pg dump:   {pg_cache_dir() / 'golden.dump'}")
        print(f"ready in {time.monotonic() - t0:.1f}s")
        return 0
    if args.cmd == "verify":
        with TrytonServer(database_kind=args.database_kind) as server:
            print(verify_dataset(server))
        return 0

    server = TrytonServer(port=args.port, database_kind=args.database_kind)
    stop = {"flag": False}

    def _stop(*_):
        stop["flag"] = True

    def _abort(*_):
        raise SystemExit(143)  # unwinds the build: temp dirs and children go

    signal.signal(signal.SIGTERM, _abort)
    try:
        server.start()
        signal.signal(signal.SIGTERM, _stop)
        # explicit handler: a backgrounded `serve` inherits SIGINT ignored
        signal.signal(signal.SIGINT, _stop)
        print(f"url:           {server.url}", flush=True)
        print(f"database:      {server.database}")
        if server.database_kind == "postgresql":
            print(f"postgresql:    {server.postgres.uri}{server.database}")
        print(f"user:          {server.user}")
        print(f"password-file: {password_file()}")
        print(f"log:           {server.log_path}")
        print(f"ready in {time.monotonic() - t0:.1f}s; Ctrl-C to stop", flush=True)
        while not stop["flag"] and server.running:
            time.sleep(0.5)
        if not server.running and not stop["flag"]:
            print("trytond died:\n" + _tail(server.log_path), file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
