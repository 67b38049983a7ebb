"""Real Redis deployments for tests, started from the ``redis-server`` binary: a Cluster, a
Sentinel-managed primary with replicas, and a standalone server behind TLS with an ACL user.

Like ``tests/harness/redis_server.py``: everything binds 127.0.0.1 on ports from a free-port
helper, each process runs in its own session, logs to a file in the harness's workdir, and is
stopped by the PID the harness started (SIGTERM, then SIGKILL), also when a start fails half
way. Every wait is bounded and raises ``RuntimeError`` with the last log lines of the nodes.

"Whole Redis gone for N seconds" is ``pause_all()`` / ``resume_all()``: SIGSTOP then SIGCONT of
every data node. The kernel keeps accepting TCP connections for a stopped process, so clients
see a Redis that hangs (timeouts), not one that refuses; the data survives, which it would not
across a restart (no persistence here). Sentinels are not paused by default: a Sentinel whose
clock jumps by more than 2 s enters TILT mode for 30 s and performs no failover in that time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from tests.harness.tls_certs import TlsFiles, make_server_certs

__all__ = ["RedisClusterHarness", "RedisSentinelHarness", "TlsRedisServer", "free_ports"]

MISSING = "redis-server is not installed: run `make test`, which installs it"
HOST = "127.0.0.1"
SLOTS = 16384

T = TypeVar("T")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(MISSING)
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open together while they are chosen)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def _admin(port: int, timeout: float = 1.0, **kwargs: Any) -> redis.Redis:
    """A plain client for admin commands: short timeouts and no retries (a dead node fails fast)."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **kwargs,
    )


def _command(port: int, *args: str, timeout: float = 1.0) -> Any:
    """One raw command (subcommands passed as separate words, so redis-py applies no parser)."""
    with _admin(port, timeout) as client:
        return client.execute_command(*args)


def _replication(port: int) -> dict[str, Any]:
    with _admin(port) as client:
        info: dict[str, Any] = client.info("replication")
        return info


def _try(func: Callable[[], T]) -> T | None:
    try:
        return func()
    except (redis.RedisError, OSError):
        return None


def _info_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


class _Node:
    """One process the harness owns: its argv, its log file, its PID."""

    def __init__(self, name: str, port: int, argv: list[str], directory: Path) -> None:
        self.name = name
        self.port = port
        self.argv = argv
        self.directory = directory
        self.log = directory / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        if self.alive():
            return
        self.reap()
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            log.write(f"--- harness: starting {self.name} on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.paused = False

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def reap(self) -> None:
        """Forget a process that has exited (collect its status)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return f"[{self.name}: no log]"
        return "\n".join(f"[{self.name}] {line}" for line in text[-lines:])

    def ping(self) -> bool:
        return bool(_try(lambda: _command(self.port, "PING", timeout=0.3)))


def _stop(nodes: Iterable[_Node], timeout: float = 10.0) -> None:
    """SIGTERM every node (SIGCONT first if paused), wait, then SIGKILL what is left. Only our PIDs."""
    running = [node for node in nodes if node.alive()]
    for node in running:
        node.send(signal.SIGTERM)
        node.send(signal.SIGCONT)
        node.paused = False
    deadline = time.monotonic() + timeout
    for node in running:
        assert node.proc is not None
        try:
            node.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=5)
    for node in nodes:
        node.reap()


def _wait(what: str, check: Callable[[], bool], timeout: float, nodes: Iterable[_Node], step: float = 0.1) -> float:
    """Poll ``check`` until true; return the seconds it took, or raise with the nodes' logs."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        ok = False
        with contextlib.suppress(redis.RedisError, OSError):
            ok = check()
        if ok:
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            logs = "\n".join(node.tail() for node in nodes)
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(step)


def _server_argv(binary: str, port: int, directory: Path, *extra: str) -> list[str]:
    return [
        binary,
        "--bind",
        HOST,
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--protected-mode",
        "yes",
        "--shutdown-timeout",
        "1",
        *extra,
    ]


class _Harness:
    nodes: list[_Node]
    killed: list[_Node]
    _by_port: dict[int, _Node]
    _killed_at: float | None

    def _kill(self, port: int, pid: int) -> tuple[int, int]:
        """SIGKILL the node on ``port`` and remember it for ``restart_killed``; its (port, pid)."""
        node = self._by_port[port]
        node.send(signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(timeout=5)
        self.killed.append(node)
        self._killed_at = time.monotonic()
        return port, pid

    def _data_nodes(self) -> list[_Node]:
        return self.nodes

    def stop(self) -> None:
        _stop(self.nodes)

    def pause_all(self) -> None:
        """SIGSTOP every data node: Redis hangs (connections are accepted, nothing answers)."""
        for node in self._data_nodes():
            if node.alive():
                node.send(signal.SIGSTOP)
                node.paused = True

    def resume_all(self) -> None:
        """SIGCONT every paused node."""
        for node in self.nodes:
            if node.paused:
                node.send(signal.SIGCONT)
                node.paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """``with harness.paused(): time.sleep(n)``: the whole Redis hangs for the block."""
        self.pause_all()
        try:
            yield
        finally:
            self.resume_all()

    def logs(self) -> str:
        return "\n".join(node.tail() for node in self.nodes)

    def __enter__(self) -> _Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisClusterHarness(_Harness):
    """Six ``redis-server --cluster-enabled yes`` nodes: three primaries, one replica each.

    ``cluster-replica-validity-factor 0``: a replica always stands for election, however long it
    was cut off from its primary (after ``pause_all`` every link looks stale).
    """

    def __init__(self, workdir: Path, node_timeout_ms: int = 2000) -> None:
        self.binary = _binary("redis-server")
        self.cli = _binary("redis-cli")
        self.workdir = workdir
        self.node_timeout_ms = node_timeout_ms
        ports = free_ports(12)
        self.nodes = []
        for port, bus_port in zip(ports[:6], ports[6:], strict=True):
            directory = workdir / f"node-{port}"
            argv = _server_argv(
                self.binary,
                port,
                directory,
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus_port),
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-replica-validity-factor",
                "0",
            )
            self.nodes.append(_Node(f"cluster-{port}", port, argv, directory))
        self._by_port = {node.port: node for node in self.nodes}
        self.killed: list[_Node] = []
        self._killed_at: float | None = None
        self._created = False

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for node in self.nodes:
                node.spawn()
            _wait("the cluster nodes to answer PING", lambda: all(n.ping() for n in self.nodes), 10, self.nodes)
            if not self._created:
                self._create(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _create(self, timeout: float) -> None:
        log = self.workdir / "cluster-create.log"
        with log.open("ab") as out:
            result = subprocess.run(
                [self.cli, "--cluster", "create", *self.startup_nodes, "--cluster-replicas", "1", "--cluster-yes"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                start_new_session=True,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{log.read_text()[-2000:]}\n{self.logs()}")
        self._created = True

    @property
    def startup_nodes(self) -> list[str]:
        return [f"{HOST}:{node.port}" for node in self.nodes]

    def env(self, count: int = 3) -> dict[str, str]:
        """The gateway's settings for this cluster (the first ``count`` nodes as startup nodes)."""
        return {"ERPGW_REDIS__MODE": "cluster", "ERPGW_REDIS__NODES": ",".join(self.startup_nodes[:count])}

    def client(self, **kwargs: Any) -> redis.RedisCluster:
        """A sync RedisCluster client on the live nodes (caller closes it)."""
        nodes = [
            ClusterNode(HOST, node.port)  # type: ignore[no-untyped-call]
            for node in self.nodes
            if node.alive()
        ]
        return redis.RedisCluster(startup_nodes=nodes, **kwargs)

    # -- topology ---------------------------------------------------------------------------------

    def _live(self) -> list[_Node]:
        return [node for node in self.nodes if node.alive() and not node.paused]

    def _cluster_nodes(self, port: int) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as seen from ``port``: id, port, flags, master id, slots (as ranges)."""
        text: str = _command(port, "CLUSTER", "NODES")
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            ranges = []
            for item in parts[8:]:
                if item.startswith("["):  # a slot being migrated
                    continue
                low, _, high = item.partition("-")
                ranges.append((int(low), int(high or low)))
            rows.append(
                {
                    "id": parts[0],
                    "port": int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                    "flags": set(parts[2].split(",")),
                    "master": parts[3],
                    "connected": parts[7] == "connected",
                    "slots": ranges,
                }
            )
        return rows

    def _owner(self, port: int, slot: int) -> dict[str, Any] | None:
        for row in self._cluster_nodes(port):
            if "master" in row["flags"] and any(low <= slot <= high for low, high in row["slots"]):
                return row
        return None

    def keyslot(self, key: str) -> int:
        for node in self._live():
            slot = _try(functools.partial(_command, node.port, "CLUSTER", "KEYSLOT", key))
            if slot is not None:
                return int(slot)
        raise RuntimeError("no cluster node answers CLUSTER KEYSLOT")

    def primary_for(self, key: str) -> tuple[int, int]:
        """(port, pid) of the primary that owns ``key``'s slot, as the live nodes agree."""
        slot = self.keyslot(key)
        for node in self._live():
            owner = _try(functools.partial(self._owner, node.port, slot))
            if owner is not None and "fail" not in owner["flags"]:
                port: int = owner["port"]
                return port, self._by_port[port].pid
        raise RuntimeError(f"no live node knows an owner of slot {slot}\n{self.logs()}")

    def kill_primary_for(self, key: str) -> tuple[int, int]:
        """SIGKILL the primary owning ``key``'s slot; returns its (port, pid)."""
        port, pid = self.primary_for(key)
        return self._kill(port, pid)

    def wait_promoted(self, key: str, timeout: float = 15.0) -> float:
        """Until a replica owns ``key``'s slot and every surviving node says cluster_state:ok.

        Returns the seconds since ``kill_primary_for`` (the failover time), or since the call.
        """
        started = self._killed_at or time.monotonic()
        dead = {node.port for node in self.killed}
        slot = self.keyslot(key)

        def promoted() -> bool:
            for node in self._live():
                owner = self._owner(node.port, slot)
                if owner is None or owner["port"] in dead or "fail" in owner["flags"]:
                    return False
                if _info_fields(_command(node.port, "CLUSTER", "INFO")).get("cluster_state") != "ok":
                    return False
            return True

        _wait(f"a replica to take over slot {slot}", promoted, timeout, self.nodes)
        return time.monotonic() - started

    def restart_killed(self, timeout: float = 30.0) -> None:
        """Start the killed nodes again (same port, same nodes.conf): they rejoin as replicas."""
        nodes, self.killed, self._killed_at = self.killed, [], None
        for node in nodes:
            node.spawn()
        self.wait_healthy(timeout)

    def _healthy(self) -> bool:
        if any(not node.alive() or node.paused for node in self.nodes):
            return False
        for node in self.nodes:
            info = _info_fields(_command(node.port, "CLUSTER", "INFO"))
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            if info.get("cluster_known_nodes") != str(len(self.nodes)):
                return False
        rows = self._cluster_nodes(self.nodes[0].port)
        if any(row["flags"] & {"fail", "fail?", "handshake", "noaddr"} or not row["connected"] for row in rows):
            return False
        primaries = [row for row in rows if "master" in row["flags"] and row["slots"]]
        replicas = [row for row in rows if "slave" in row["flags"]]
        if len(primaries) != 3 or sorted(row["master"] for row in replicas) != sorted(row["id"] for row in primaries):
            return False
        for row in replicas:  # each replica is linked and synced
            link = _replication(row["port"])
            if link.get("master_link_status") != "up" or link.get("master_sync_in_progress") != 0:
                return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Until every node runs, every slot is covered, and each of 3 primaries has a synced replica."""
        return _wait("a healthy cluster (6 nodes, 3 primaries with a replica each)", self._healthy, timeout, self.nodes)

    def ensure_healthy(self, timeout: float = 30.0) -> None:
        """Undo what a test left behind: resume paused nodes, restart killed or dead ones, wait."""
        self.resume_all()
        for node in self.nodes:
            if not node.alive() and node not in self.killed:
                self.killed.append(node)
        if self.killed:
            self.restart_killed(timeout)
        self.wait_healthy(timeout)

    def flushall(self) -> None:
        """FLUSHALL on every primary, and wait for its replica to have it."""
        for node in self._live():
            role = _command(node.port, "ROLE")
            if role[0] == "master":
                with _admin(node.port, timeout=5) as client:
                    client.flushall()
                    client.execute_command("WAIT", "1", "2000")


class RedisSentinelHarness(_Harness):
    """One primary, two ``--replicaof`` replicas and three Sentinels (``redis-server conf --sentinel``)."""

    service_name = "gwprimary"

    def __init__(self, workdir: Path, down_after_ms: int = 2000, failover_timeout_ms: int = 10000) -> None:
        self.binary = _binary("redis-server")
        self.workdir = workdir
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        ports = free_ports(6)
        self._initial_primary = ports[0]
        self.servers: list[_Node] = []
        for index, port in enumerate(ports[:3]):
            directory = workdir / f"redis-{port}"
            extra = [] if index == 0 else ["--replicaof", HOST, str(ports[0])]
            self.servers.append(
                _Node(f"redis-{port}", port, _server_argv(self.binary, port, directory, *extra), directory)
            )
        self.sentinels: list[_Node] = []
        for port in ports[3:]:
            directory = workdir / f"sentinel-{port}"
            conf = directory / "sentinel.conf"
            self.sentinels.append(_Node(f"sentinel-{port}", port, [self.binary, str(conf), "--sentinel"], directory))
        self.nodes = [*self.servers, *self.sentinels]
        self._by_port = {node.port: node for node in self.nodes}
        self.killed: list[_Node] = []
        self._killed_at: float | None = None

    def _data_nodes(self) -> list[_Node]:
        return self.servers

    def pause_all(self, include_sentinels: bool = False) -> None:
        """SIGSTOP the primary and replicas (and the Sentinels too if asked: they then TILT for 30 s).

        A pause longer than down-after-milliseconds makes the Sentinels start a failover; usually
        it aborts (no replica is up), but now and then the election ends just as the nodes resume
        and a replica is promoted after all: allow ~20 s in ``wait_healthy`` for that.
        """
        super().pause_all()
        if include_sentinels:
            for node in self.sentinels:
                if node.alive():
                    node.send(signal.SIGSTOP)
                    node.paused = True

    def _write_sentinel_conf(self, node: _Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        name = self.service_name
        (node.directory / "sentinel.conf").write_text(
            "\n".join(
                [
                    f"port {node.port}",
                    f"bind {HOST}",
                    f"dir {node.directory}",
                    "sentinel resolve-hostnames no",
                    f"sentinel monitor {name} {HOST} {self._initial_primary} 2",
                    f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                    f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                    f"sentinel parallel-syncs {name} 1",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 60.0) -> None:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for node in self.servers:
                node.spawn()
            # Sentinels learn the replicas from the primary's INFO, refreshed every 10 s: start
            # them once both replicas are attached, so the first INFO already names both.
            _wait("both replicas to attach to the primary", self._replicas_attached, 15, self.servers)
            for node in self.sentinels:
                self._write_sentinel_conf(node)
                node.spawn()
            _wait(
                "the Redis nodes and Sentinels to answer PING",
                lambda: all(n.ping() for n in self.nodes),
                10,
                self.nodes,
            )
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _replicas_attached(self) -> bool:
        role = _command(self._initial_primary, "ROLE")
        return role[0] == "master" and len(role[2]) == 2

    @property
    def sentinel_nodes(self) -> list[str]:
        return [f"{HOST}:{node.port}" for node in self.sentinels]

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """For ``redis.sentinel.Sentinel(harness.sentinel_addresses)``."""
        return [(HOST, node.port) for node in self.sentinels]

    def env(self) -> dict[str, str]:
        return {
            "ERPGW_REDIS__MODE": "sentinel",
            "ERPGW_REDIS__NODES": ",".join(self.sentinel_nodes),
            "ERPGW_REDIS__SERVICE_NAME": self.service_name,
        }

    # -- what the Sentinels say -------------------------------------------------------------------

    def _reported_primary(self, sentinel: _Node) -> int:
        _host, port = _command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
        return int(port)

    def _sentinel_table(self, sentinel: _Node, what: str) -> list[dict[str, Any]]:
        """``SENTINEL REPLICAS|SENTINELS``; ``flags`` as a set (redis-py parses these replies to dicts)."""
        rows = _command(sentinel.port, "SENTINEL", what, self.service_name)
        table = []
        for row in rows:
            entry = dict(row) if isinstance(row, dict) else dict(zip(row[::2], row[1::2], strict=True))
            flags = entry["flags"]
            entry["flags"] = set(flags.split(",")) if isinstance(flags, str) else set(flags)
            table.append(entry)
        return table

    def primary(self) -> tuple[int, int]:
        """(port, pid) of the primary as the live Sentinels report it (they must agree)."""
        asked = [_try(functools.partial(self._reported_primary, node)) for node in self.sentinels if node.alive()]
        reports = {port for port in asked if port is not None}
        if len(reports) != 1:
            raise RuntimeError(f"the Sentinels disagree about the primary: {sorted(reports)}")
        primary = reports.pop()
        return primary, self._by_port[primary].pid

    def kill_primary(self) -> tuple[int, int]:
        """SIGKILL the current primary; returns its (port, pid)."""
        port, pid = self.primary()
        return self._kill(port, pid)

    def wait_failover(self, timeout: float = 20.0) -> float:
        """Until every live Sentinel names one new primary that answers ROLE as master.

        Returns the seconds since ``kill_primary`` (the failover time), or since the call.
        """
        started = self._killed_at or time.monotonic()
        dead = {node.port for node in self.killed}

        def failed_over() -> bool:
            reports = {self._reported_primary(node) for node in self.sentinels if node.alive()}
            if len(reports) != 1:
                return False
            port = next(iter(reports))
            return port not in dead and _command(port, "ROLE")[0] == "master"

        _wait("the Sentinels to promote a replica", failed_over, timeout, self.nodes)
        return time.monotonic() - started

    def restart_killed(self, timeout: float = 40.0, as_replica: bool = True) -> None:
        """Start the killed servers again on their ports and wait for a healthy topology.

        ``as_replica=True``: as a replica of the primary the Sentinels name (healthy in ~5 s).
        ``as_replica=False``: as an old primary comes back from its own config, with no
        ``replicaof``: an empty master until a Sentinel converts it to a replica, which takes
        ~20 s (Sentinel refreshes INFO every 10 s and waits 8 s for a reported role to be stable).
        """
        nodes, self.killed, self._killed_at = self.killed, [], None
        primary_port = self.primary()[0] if as_replica else None
        for node in nodes:
            argv = [arg for arg in node.argv]
            if "--replicaof" in argv:
                at = argv.index("--replicaof")
                del argv[at : at + 3]
            if primary_port is not None:
                argv += ["--replicaof", HOST, str(primary_port)]
            node.argv = argv
            node.spawn()
        self.wait_healthy(timeout)

    def _healthy(self) -> bool:
        if any(not node.alive() or node.paused for node in self.nodes):
            return False
        reports = {self._reported_primary(node) for node in self.sentinels}
        if len(reports) != 1:
            return False
        primary = next(iter(reports))
        role = _command(primary, "ROLE")
        if role[0] != "master" or len(role[2]) != 2:
            return False
        for node in self.servers:
            if node.port != primary:
                info = _replication(node.port)
                if info.get("master_port") != primary or info.get("master_link_status") != "up":
                    return False
        bad = {"s_down", "o_down", "disconnected"}
        for node in self.sentinels:
            replicas = self._sentinel_table(node, "REPLICAS")
            good = [r for r in replicas if not r["flags"] & bad and r.get("master-link-status") == "ok"]
            sentinels = self._sentinel_table(node, "SENTINELS")
            if len(good) != 2 or len([s for s in sentinels if not s["flags"] & bad]) != 2:
                return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Until all agree on one primary with 2 linked replicas, each Sentinel knowing 2 replicas and 2 peers."""
        return _wait(
            "a healthy Sentinel topology (a primary, 2 replicas, 3 Sentinels)", self._healthy, timeout, self.nodes
        )

    def ensure_healthy(self, timeout: float = 30.0) -> None:
        """Undo what a test left behind: resume paused nodes, restart killed or dead ones, wait."""
        self.resume_all()
        for node in self.sentinels:
            if not node.alive():
                node.spawn()
        for node in self.servers:
            if not node.alive() and node not in self.killed:
                self.killed.append(node)
        if self.killed:
            self.restart_killed(timeout, as_replica=True)
        self.wait_healthy(timeout)

    def flushall(self) -> None:
        """FLUSHALL on the current primary, and wait for both replicas to have it."""
        port, _ = self.primary()
        with _admin(port, timeout=5) as client:
            client.flushall()
            client.execute_command("WAIT", "2", "2000")


class TlsRedisServer(_Harness):
    """A standalone ``redis-server`` on TLS only (``--port 0``) with the default user off and one
    ACL user, ``gw``, whose password is in ``password_file`` (with a trailing newline).

    Clients need not present a certificate (``--tls-auth-clients no``).
    """

    username = "gw"

    def __init__(self, workdir: Path) -> None:
        self.binary = _binary("redis-server")
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.url = f"rediss://{HOST}:{self.port}/0"
        self.password = secrets.token_urlsafe(18)
        self.password_file = workdir / "redis-password"
        self.tls: TlsFiles | None = None
        self.ca_file = workdir / "tls" / "ca.crt"
        self.nodes = []

    def start(self, timeout: float = 15.0) -> None:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            if self.tls is None:  # a restart keeps the CA clients already trust
                self.tls = make_server_certs(self.workdir / "tls")
            self.ca_file = self.tls.ca_file
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.password + "\n")
            directory = self.workdir / f"redis-tls-{self.port}"
            argv = _server_argv(self.binary, 0, directory)
            argv += [
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert_file),
                "--tls-key-file",
                str(self.tls.key_file),
                "--tls-ca-cert-file",
                str(self.tls.ca_file),
                "--tls-auth-clients",
                "no",
                "--user",
                "default",
                "off",
                "--user",
                self.username,
                "on",
                f">{self.password}",
                "~*",
                "&*",
                "+@all",
            ]
            self.nodes = [_Node(f"redis-tls-{self.port}", self.port, argv, directory)]
            self.nodes[0].spawn()
            _wait("redis-server on TLS to answer PING", self._ping, timeout, self.nodes)
        except BaseException:
            self.stop()
            raise

    def _ping(self) -> bool:
        with self.client() as client:
            return bool(client.ping())

    def client(self, password: str | None = None, **kwargs: Any) -> redis.Redis:
        """A sync client on TLS as the ACL user (caller closes it)."""
        return redis.Redis.from_url(
            self.url,
            username=self.username,
            password=self.password if password is None else password,
            ssl_ca_certs=str(self.ca_file),
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
            **kwargs,
        )

    def alive(self) -> bool:
        return bool(self.nodes) and self.nodes[0].alive()

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()
