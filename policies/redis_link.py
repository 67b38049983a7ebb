"""The shared Redis connection every policy uses, and what happens when Redis fails.

Policies never let a Redis failure become a failed request: each call goes through
``RedisLink.call``, which answers ``fallback`` when Redis is down. After a failure the link
stays "down" for ``retry_seconds`` (no request waits on a dead socket), then tries again by
itself; transitions are logged once and shown in /readyz.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = ["RedisLink", "RedisSettings"]

log = logging.getLogger("erp_gateway.redis")
T = TypeVar("T")


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


class RedisLink:
    """An asyncio Redis client with failure tracking. ``client`` is None without a URL."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.client: aioredis.Redis | None = (
            aioredis.Redis.from_url(
                settings.url,
                socket_timeout=settings.timeout_seconds,
                socket_connect_timeout=settings.timeout_seconds,
                health_check_interval=0,
                max_connections=64,
                # A pooled connection broken by a Redis restart is retried once on a new one at
                # once; a timeout is not retried (Redis is slow: fall back, do not wait twice).
                retry=Retry(NoBackoff(), retries=1),
                retry_on_error=[RedisConnectionError],
            )
            if settings.url
            else None
        )
        self._down_until = 0.0
        self._was_down = False
        self.last_error: str | None = None

    @property
    def configured(self) -> bool:
        return self.client is not None

    @property
    def available(self) -> bool:
        """Configured and not in its back-off window after a failure."""
        return self.client is not None and time.monotonic() >= self._down_until

    async def call(self, operation: Callable[[aioredis.Redis], Awaitable[T]], fallback: T) -> T:
        """Run ``operation`` against Redis; on any Redis failure, note it and return ``fallback``."""
        if self.client is None or not self.available:
            return fallback
        try:
            result = await operation(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self.settings.retry_seconds
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self._was_down:
                self._was_down = True
                log.warning("Redis unavailable, serving from in-process state: %s", self.last_error)
            return fallback
        if self._was_down:
            self._was_down = False
            self.last_error = None
            log.warning("Redis is back; shared state resumes")
        return result

    async def ping(self) -> bool:
        """Readiness probe that bypasses the back-off window."""
        if self.client is None:
            return False
        self._down_until = 0.0
        return await self.call(lambda r: r.ping(), False) is True

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
