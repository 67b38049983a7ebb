"""The one connection factory for Redis: settings in, a client out, the deployment mode decided here.

Today a standalone server (``redis://`` or ``rediss://``); Sentinel and Cluster are added here,
and nowhere else: every client redis-py makes for them offers the same commands.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["POOL_SIZE", "RedisClient", "RedisSettings", "connect"]

#: Connections per worker; a lookup holds one for one round trip.
POOL_SIZE = 64

#: What ``connect`` may answer (a cluster client groups multi-key reads by slot).
RedisClient = aioredis.Redis | RedisCluster


class RedisSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where the shared tier lives. Empty ``url``: no Redis, every policy works per process."""

    #: redis:// URL of the shared store; empty keeps all state in-process (the quickstart).
    url: str = ""
    #: Seconds a Redis command may take before it counts as a failure.
    timeout_seconds: float = 0.25
    #: Seconds to stop asking Redis after a failure before trying again.
    retry_seconds: float = 1.0
    #: Prefix of every key this gateway writes, so instances of other apps can share a server.
    key_prefix: str = "erpgw:v1:"


def connect(settings: RedisSettings) -> RedisClient | None:
    """The client for ``settings`` (None without a URL); it connects on first use.

    Retry policy, stated here for every caller: a command that fails with a connection error
    (a pooled connection broken by a Redis restart) is sent once more at once, on a new
    connection; a timeout is never retried (Redis is slow: fall back rather than wait twice,
    and a script that may have run is not run again). redis-py's ``Retry`` retries timeouts by
    default, so the retried errors are given explicitly.
    """
    if not settings.url:
        return None
    return aioredis.Redis.from_url(
        settings.url,
        socket_timeout=settings.timeout_seconds,
        socket_connect_timeout=settings.timeout_seconds,
        health_check_interval=0,
        max_connections=POOL_SIZE,
        retry=Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,)),
        retry_on_error=[RedisConnectionError],
    )
