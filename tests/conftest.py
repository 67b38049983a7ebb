"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis as sync_redis
from joserfc.jwk import RSAKey
from litestar.testing import TestClient

from erp_backends.dataset import Dataset, load_dataset
from erp_backends.port import ErpBackend
from erp_backends.sample import SampleBackend, SampleSettings
from gateway.app import create_app
from gateway.auth import SCOPES
from gateway.auth.devkeys import load_or_create_dev_key, mint_token
from gateway.auth.settings import DEV_ISSUER
from gateway.intake.settings import IntakeSettings
from gateway.problems import PROBLEM_BASE
from gateway.settings import Settings
from gateway.shared_state import RedisSettings, connect
from gateway.shared_state.connect import close
from gateway.writes.idempotency import IdempotencySettings
from tests.harness.redis_server import RedisServer
from tests.harness.redis_topologies import RedisClusterHarness, RedisSentinelHarness, TlsRedisServer
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import clean_tryton


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return load_dataset()


@pytest.fixture
def sample_path(tmp_path: Path) -> Path:
    return tmp_path / "sample-erp.sqlite"


@pytest.fixture
async def sample(sample_path: Path) -> AsyncIterator[SampleBackend]:
    backend = SampleBackend(SampleSettings(path=str(sample_path)))
    yield backend
    await backend.aclose()


#: Every scope the API knows: the default of test tokens, so API tests exercise behaviour, not auth.
ALL_SCOPES = tuple(SCOPES)

#: ``mint(*scopes, client_id=..., ttl=..., **claims)``: a dev-mode token (all scopes when none are named).
Mint = Callable[..., str]
#: ``app_client(settings, backend=None, token=...)``: an authorized TestClient around ``create_app``.
AppClient = Callable[..., Any]


@pytest.fixture(scope="session")
def dev_key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dev-mode signing key for the whole session (RSA generation is slow)."""
    path = tmp_path_factory.mktemp("auth") / "dev-signing-key.json"
    load_or_create_dev_key(path)
    return path


@pytest.fixture(scope="session")
def dev_key(dev_key_path: Path) -> RSAKey:
    return load_or_create_dev_key(dev_key_path)


@pytest.fixture(scope="session")
def mint(dev_key: RSAKey) -> Mint:
    def _mint(*scopes: str, client_id: str = "test-client", ttl: int = 300, **claims: Any) -> str:
        return mint_token(
            dev_key,
            issuer=DEV_ISSUER,
            audience="erp-gateway",
            client_id=client_id,
            scopes=scopes or ALL_SCOPES,
            ttl=ttl,
            extra_claims=claims,
        )

    return _mint


def with_dev_auth(settings: Settings, key_path: Path) -> Settings:
    """``settings`` with dev-mode authentication trusting the test key."""
    auth = msgspec.structs.replace(settings.auth, dev_mode=True, dev_key_path=str(key_path))
    return msgspec.structs.replace(settings, auth=auth)


@pytest.fixture
def settings(sample_path: Path, dev_key_path: Path) -> Settings:
    return with_dev_auth(
        Settings(
            sample=SampleSettings(path=str(sample_path)),
            idempotency=IdempotencySettings(path=str(sample_path.with_name("idempotency.sqlite"))),
            # posting is driven by the tests that need it (``tests/api/test_intake.py``)
            intake=IntakeSettings(path=str(sample_path.with_name("intake.sqlite")), post_in_workers=False),
        ),
        dev_key_path,
    )


@pytest.fixture
def app_client(dev_key_path: Path, mint: Mint) -> AppClient:
    @contextmanager
    def _client(
        settings: Settings, backend: ErpBackend | None = None, token: str | None = None
    ) -> Iterator[TestClient[Any]]:
        with TestClient(create_app(with_dev_auth(settings, dev_key_path), backend=backend)) as test_client:
            test_client.headers["Authorization"] = f"Bearer {token or mint()}"
            yield test_client

    return _client


@pytest.fixture
def client(settings: Settings, app_client: AppClient) -> Iterator[TestClient[Any]]:
    with app_client(settings) as test_client:
        yield test_client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem of the given kind, with the correlation ID."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_BASE + slug, body
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["correlationId"] == response.headers["x-request-id"]
    return body


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server this test session owns (it may be stopped and started by tests)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied before each test."""
    if redis_server._proc is None:  # a previous test left it stopped
        redis_server.start()
    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterHarness]:
    """A six-node Redis Cluster (3 primaries, 1 replica each) this session owns, started on first use."""
    cluster = RedisClusterHarness(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fresh_redis_cluster(redis_cluster: RedisClusterHarness) -> RedisClusterHarness:
    """The session's cluster, healthy (killed nodes back, paused ones resumed) and emptied."""
    redis_cluster.ensure_healthy()
    redis_cluster.flushall()
    return redis_cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelHarness]:
    """A primary, two replicas and three Sentinels this session owns, started on first use."""
    sentinel = RedisSentinelHarness(tmp_path_factory.mktemp("redis-sentinel"))
    sentinel.start()
    try:
        yield sentinel
    finally:
        sentinel.stop()


@pytest.fixture
def fresh_redis_sentinel(redis_sentinel: RedisSentinelHarness) -> RedisSentinelHarness:
    """The session's Sentinel deployment, healthy (a primary with 2 replicas, 3 Sentinels) and emptied."""
    redis_sentinel.ensure_healthy()
    redis_sentinel.flushall()
    return redis_sentinel


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedisServer]:
    """A standalone Redis on TLS only, with the ACL user ``gw`` (password in ``password_file``)."""
    server = TlsRedisServer(tmp_path_factory.mktemp("redis-tls"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis_tls(redis_tls: TlsRedisServer) -> TlsRedisServer:
    """The session's TLS Redis, running and emptied."""
    if not redis_tls.alive():
        redis_tls.start()
    redis_tls.flushall()
    return redis_tls


@pytest.fixture(scope="session")
def tryton_server() -> Iterator[TrytonServer]:
    """A real, seeded Tryton 8.2 server for the session (installed and seeded on first use, then cached)."""
    with TrytonServer() as server:
        yield server


@pytest.fixture
def tryton(tryton_server: TrytonServer) -> TrytonServer:
    """The session's Tryton server holding exactly the dataset (reset only after a test wrote)."""
    return clean_tryton(tryton_server)


@pytest.fixture(scope="session")
def tryton_pg_server() -> Iterator[TrytonServer]:
    """Like ``tryton_server``, on PostgreSQL: the machine's server on
    127.0.0.1:5432, or a throwaway cluster (tests/harness/postgres_server.py)."""
    with TrytonServer(database_kind="postgresql") as server:
        yield server


@pytest.fixture
def tryton_pg(tryton_pg_server: TrytonServer) -> TrytonServer:
    """The session's PostgreSQL-backed Tryton server holding exactly the dataset."""
    return clean_tryton(tryton_pg_server)


#: The Redis deployment modes the shared-tier tests run on (``redis_deployment``'s params).
REDIS_MODES = ("standalone", "sentinel", "cluster")


class RedisDeployment:
    """One Redis deployment for a test, whatever its mode: settings for the gateway's factory,
    probe clients of the right kind (closed after the test), and admin views over every primary.

    ``unreachable()``: Redis gone, then back. Standalone: the session's server is stopped and
    started (it comes back empty); Sentinel and Cluster: every data node is paused (SIGSTOP) and
    resumed, shorter than the failure detection (2 s), so the topology and the data stay as they were.
    """

    def __init__(self, mode: str, harness: RedisServer | RedisClusterHarness | RedisSentinelHarness) -> None:
        self.mode = mode
        self.harness = harness
        self._probes: list[Any] = []

    def settings(self, **overrides: Any) -> RedisSettings:
        """``RedisSettings`` for this deployment (``overrides``: any other field)."""
        harness = self.harness
        if isinstance(harness, RedisClusterHarness):
            where: dict[str, Any] = {"mode": "cluster", "nodes": ",".join(harness.startup_nodes[:3])}
        elif isinstance(harness, RedisSentinelHarness):
            nodes = ",".join(harness.sentinel_nodes)
            where = {"mode": "sentinel", "nodes": nodes, "service_name": harness.service_name}
        else:
            where = {"url": harness.url}
        return RedisSettings(**{**where, **overrides})

    def client(self) -> Any:
        """An asyncio client of this deployment's kind (``RedisCluster`` on Cluster), made by the
        gateway's own factory with a generous timeout; closed after the test."""
        client = connect(self.settings(timeout_seconds=5))
        assert client is not None
        self._probes.append(client)
        return client

    def primaries(self) -> list[int]:
        """Ports of the data nodes that are primaries now."""
        harness = self.harness
        if isinstance(harness, RedisClusterHarness):
            ports = []
            for node in harness.nodes:
                if node.alive() and not node.paused:
                    with sync_redis.Redis(port=node.port, socket_timeout=2) as admin:
                        if admin.execute_command("ROLE")[0] in (b"master", "master"):
                            ports.append(node.port)
            return ports
        if isinstance(harness, RedisSentinelHarness):
            return [harness.primary()[0]]
        return [harness.port]

    #: What asking for ``commandstats`` itself sends (and connection handshakes), and what a
    #: replica sends its primary now and then (``replconf``, ``psync``): left out of it.
    ADMIN_COMMANDS = frozenset({"info", "hello", "role", "ping", "client|setinfo", "replconf", "psync", "sync"})

    def commandstats(self) -> Counter[str]:
        """Calls of each data command (``mget``, ``evalsha``...) summed over every primary (the
        admin commands the probe itself sends, ``ADMIN_COMMANDS``, left out): diff two of them."""
        calls: Counter[str] = Counter()
        for port in self.primaries():
            with sync_redis.Redis(port=port, socket_timeout=2) as admin:
                for name, stats in admin.info("commandstats").items():
                    command = name.removeprefix("cmdstat_")
                    if command not in self.ADMIN_COMMANDS:
                        calls[command] += int(stats["calls"])
        return calls

    def keys(self, pattern: str = "*") -> list[bytes]:
        """Every key matching ``pattern``, from every primary (KEYS on one Cluster node sees its slots only)."""
        found: list[bytes] = []
        for port in self.primaries():
            with sync_redis.Redis(port=port, socket_timeout=2) as admin:
                found.extend(admin.keys(pattern))
        return sorted(found)

    def flush(self) -> None:
        harness = self.harness
        if isinstance(harness, RedisServer):
            with sync_redis.Redis.from_url(harness.url) as admin:
                admin.flushall()
        else:
            harness.flushall()

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """Redis cannot be asked inside the block (see the class doc); it answers again after."""
        harness = self.harness
        if isinstance(harness, RedisServer):
            harness.stop()
            try:
                yield
            finally:
                harness.start()
            return
        harness.pause_all()
        try:
            yield
        finally:
            harness.resume_all()

    async def aclose(self) -> None:
        for client in self._probes:
            await close(client)
        self._probes.clear()


def redis_deployment_for(request: pytest.FixtureRequest, mode: str) -> RedisDeployment:
    """The session's deployment of ``mode``, emptied (and, for Sentinel and Cluster, healthy:
    killed nodes back, paused ones resumed); for fixtures with their own mode parameter.
    The caller closes it (``aclose``)."""
    harness: RedisServer | RedisClusterHarness | RedisSentinelHarness
    if mode == "standalone":
        request.getfixturevalue("redis_url")  # started if a test left it stopped, and emptied
        harness = request.getfixturevalue("redis_server")
    elif mode == "sentinel":
        harness = request.getfixturevalue("fresh_redis_sentinel")
    elif mode == "cluster":
        harness = request.getfixturevalue("fresh_redis_cluster")
    else:
        raise ValueError(f"no Redis deployment mode {mode!r}")
    return RedisDeployment(mode, harness)


@pytest.fixture(params=REDIS_MODES)
async def redis_deployment(request: pytest.FixtureRequest) -> AsyncIterator[RedisDeployment]:
    """The shared tier on each deployment mode in turn (ids: standalone, sentinel, cluster), emptied
    (and, for Sentinel and Cluster, healthy: killed nodes back, paused ones resumed) before the test."""
    deployment = redis_deployment_for(request, request.param)
    try:
        yield deployment
    finally:
        await deployment.aclose()
