"""The one connection factory for Redis: settings in, a client out, the deployment mode decided here.

Three modes, and nothing outside this module knows which one runs (every client redis-py makes
for them offers the same commands; ``RedisSharedState`` uses only those):

- ``standalone``: one server at ``url`` (``redis://``, ``rediss://`` for TLS, ``unix://``);
- ``sentinel``: ``nodes`` are the Sentinels, ``service_name`` the monitored primary. The
  primary's address is asked of the Sentinels for every new connection, and again after a
  failover: a write that reaches a demoted primary gets ``READONLY``, which redis-py turns into
  a connection error, so the retry below re-asks the Sentinels;
- ``cluster``: ``nodes`` are startup nodes; the client learns the slot map from them, sends
  every key to the primary of its slot, follows ``MOVED`` after a failover, and splits
  multi-key reads by slot (``mget_nonatomic``: one pipelined round trip per node).

Credentials: ``username`` and the password read from ``password_file`` (an ACL user), for the
data nodes; the Sentinels may have their own. TLS: ``rediss://`` or ``tls = true`` with a CA file.

Set explicitly, since redis-py's defaults changed between versions (7.1 had no socket timeout
and unbounded pools): the socket and connect timeouts, ``max_connections`` per worker (per node
on Cluster), RESP2 (``protocol=2``: redis-py 7+ on RESP3 sends ``CLIENT MAINT_NOTIFICATIONS``,
which Valkey and older servers lack, so nothing in it depends on RESP3) and the retry policy.

Retry policy, stated here for every caller: a command that fails with a connection error (a
pooled connection broken by a restart, a demoted Sentinel primary, a dead Cluster node) is sent
once more at once, on a new connection, after the client looked for the primary again. A
timeout is not retried on standalone and Sentinel (Redis is slow: fall back rather than wait
twice). redis-py's Cluster client retries a timed-out command as it retries a connection error,
and cannot be told otherwise: so every script the gateway runs is safe to run twice (the quota
lease carries an id, idempotency claims carry their owner), and every other write sets a value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.auth.outbound import read_secret

__all__ = ["RedisClient", "RedisSettings", "close", "connect", "multi_get", "parse_nodes"]

#: What ``connect`` may answer (a cluster client groups multi-key reads by slot).
RedisClient = aioredis.Redis | RedisCluster


class RedisSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where the shared tier lives. Standalone with an empty ``url``: no Redis, every policy
    works per process."""

    #: ``standalone`` (``url``), ``sentinel`` (``nodes`` = Sentinels, ``service_name``) or ``cluster`` (``nodes``).
    mode: Literal["standalone", "sentinel", "cluster"] = "standalone"
    #: Standalone: redis://, rediss:// or unix:// URL; empty keeps all state in-process (the quickstart).
    url: str = ""
    #: Sentinel: the Sentinels; Cluster: startup nodes. Comma-separated ``host:port``.
    nodes: str = ""
    #: Sentinel: the name the Sentinels monitor the primary under.
    service_name: str = ""
    #: ACL user of the data nodes (empty: ``default``, or the URL's).
    username: str = ""
    #: File holding the data nodes' password (mounted from a secret); empty: none, or the URL's.
    password_file: str = ""
    #: ACL user of the Sentinels, if they require one.
    sentinel_username: str = ""
    #: File holding the Sentinels' password; empty: the Sentinels need none.
    sentinel_password_file: str = ""
    #: TLS to every node (Sentinel, Cluster; standalone: use rediss://).
    tls: bool = False
    #: CA bundle that signed the servers' certificates (empty: the system's).
    tls_ca_file: str = ""
    #: Client certificate and key for servers that require one (``tls-auth-clients yes``).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: Seconds a Redis command (and a connect) may take before it counts as a failure.
    timeout_seconds: float = 0.25
    #: Seconds to stop asking Redis after a failure before trying again.
    retry_seconds: float = 1.0
    #: Connections per worker (per node on Cluster); a lookup holds one for one round trip.
    max_connections: int = 64
    #: Prefix of every key this gateway writes, so instances of other apps can share a server.
    key_prefix: str = "erpgw:v1:"

    @property
    def configured(self) -> bool:
        return bool(self.url) if self.mode == "standalone" else bool(self.nodes)


def parse_nodes(nodes: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as pairs; ``ValueError`` naming the first bad entry."""
    out: list[tuple[str, int]] = []
    for entry in (part.strip() for part in nodes.split(",")):
        host, sep, port = entry.rpartition(":")
        host = host.strip("[]")  # [::1]:6379
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port")
        out.append((host, int(port)))
    return out


def _secret(path: str, name: str) -> str | None:
    """The password in ``path`` (None for no file), read as every ``*_file`` setting is read."""
    return read_secret("", path, f"redis.{name}").reveal() if path else None


def _common(settings: RedisSettings) -> dict[str, Any]:
    """Connection options every mode shares."""
    options: dict[str, Any] = {
        "socket_timeout": settings.timeout_seconds,
        "socket_connect_timeout": settings.timeout_seconds,
        "health_check_interval": 0,
        "protocol": 2,
    }
    if settings.username:
        options["username"] = settings.username
    if (password := _secret(settings.password_file, "password")) is not None:
        options["password"] = password
    return options


def _tls(settings: RedisSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"ssl": True}
    if settings.tls_ca_file:
        options["ssl_ca_certs"] = settings.tls_ca_file
    if settings.tls_cert_file:
        options["ssl_certfile"] = settings.tls_cert_file
        options["ssl_keyfile"] = settings.tls_key_file or None
    return options


def _retry() -> dict[str, Any]:
    return {
        "retry": Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
        "retry_on_error": [RedisConnectionError],
    }


def connect(settings: RedisSettings) -> RedisClient | None:
    """The client for ``settings`` (None when no Redis is configured); it connects on first use."""
    if not settings.configured:
        return None
    common = _common(settings)
    if settings.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parse_nodes(settings.nodes)],
            max_connections=settings.max_connections,
            # one more attempt after a connection error or timeout, once the slot map was re-read
            retry=Retry(NoBackoff(), retries=1),
            **common,
            **(_tls(settings) if settings.tls else {}),
        )
    if settings.mode == "sentinel":
        tls = _tls(settings) if settings.tls else {}
        sentinel_auth: dict[str, Any] = {}
        if settings.sentinel_username:
            sentinel_auth["username"] = settings.sentinel_username
        if (password := _secret(settings.sentinel_password_file, "sentinel_password")) is not None:
            sentinel_auth["password"] = password
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            parse_nodes(settings.nodes),
            sentinel_kwargs={
                "socket_timeout": settings.timeout_seconds,
                "socket_connect_timeout": settings.timeout_seconds,
                "protocol": 2,
                **sentinel_auth,
                **tls,
            },
        )
        client: aioredis.Redis = sentinels.master_for(
            settings.service_name,
            max_connections=settings.max_connections,
            **common,
            **tls,
            **_retry(),
        )
        return client
    options = {**common, **_retry(), "max_connections": settings.max_connections}
    if settings.url.startswith("rediss://"):  # the scheme chooses TLS; the files say whom to trust
        options.update({k: v for k, v in _tls(settings).items() if k != "ssl"})
    return aioredis.Redis.from_url(settings.url, **options)


def multi_get(client: RedisClient) -> Callable[[list[str]], Awaitable[list[Any]]]:
    """How ``client`` reads many keys in one round trip: ``MGET`` on one server; on Cluster
    one ``MGET`` per hash slot, pipelined per node (a cross-slot ``MGET`` is refused)."""
    if isinstance(client, RedisCluster):
        return client.mget_nonatomic
    return client.mget


async def close(client: RedisClient) -> None:
    """Close ``client``'s connections, and on Sentinel those to the Sentinels it asked for the
    primary (``Sentinel`` keeps a client per Sentinel, which closing the primary's client leaves open)."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()
