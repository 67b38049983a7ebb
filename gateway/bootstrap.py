"""The composition root: which adapter, wrapped in which policies, from settings.

This is the one place that knows concrete adapters and policies. Routes receive
``Runtime.backend`` and cannot tell a bare adapter from one wrapped in policies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import msgspec

from erp_backends.errors import ErpError
from erp_backends.faults import FaultInjectingBackend
from erp_backends.port import CallContext, ErpBackend
from erp_backends.sample import SampleBackend
from erp_backends.tryton import TrytonBackend, TrytonSettings
from gateway.observability.telemetry import Telemetry
from gateway.settings import Settings
from gateway.shared_state import client_of, open_shared_state
from gateway.writes.idempotency import IdempotencyStore, IdempotentWrites
from gateway.writes.idempotency_stores import FallbackIdempotencyStore, RedisIdempotencyStore, SqliteIdempotencyStore
from gateway.writes.returns import ReturnWrites
from policies.caching import CachingBackend
from policies.chain import GuardedBackend, PolicySettings, wrap_backend
from policies.observed import ObservedBackend
from policies.quotas import QuotaLimiter
from policies.shared_state import LenientState

__all__ = ["Check", "Runtime", "build_adapter", "build_tryton"]

log = logging.getLogger("erp_gateway.bootstrap")


#: Adds tracing to an adapter's HTTP client (``Telemetry.instrument_http_client``).
InstrumentClient = Callable[[httpx.AsyncClient], None]


def build_adapter(settings: Settings, instrument: InstrumentClient | None = None) -> ErpBackend:
    """The bare ERP adapter the settings name."""
    if settings.backend == "sample":
        return SampleBackend(settings.sample)
    if settings.backend == "tryton":
        return build_tryton(settings.tryton, instrument)
    raise ValueError(f"backend {settings.backend!r} is not available in this build")


def build_tryton(settings: TrytonSettings, instrument: InstrumentClient | None = None) -> TrytonBackend:
    """The Tryton adapter with its own pooled client (closed with the adapter)."""
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)
    timeout = httpx.Timeout(settings.call_timeout_seconds, connect=settings.connect_timeout_seconds)
    client = httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False)
    if instrument is not None:
        instrument(client)
    return TrytonBackend(settings, client, close_client=True)


def build_idempotency_store(settings: Settings, redis: LenientState) -> IdempotencyStore:
    """Redis across instances (the host's file while Redis is down), else the host's file."""
    local = SqliteIdempotencyStore(settings.idempotency.path)
    return FallbackIdempotencyStore(RedisIdempotencyStore(redis.strict), local) if redis.strict else local


class Check(msgspec.Struct, kw_only=True, frozen=True):
    """One line of /readyz. ``required`` checks make the gateway unready when they fail."""

    name: str
    ok: bool
    required: bool = True
    detail: str | None = None


class Runtime:
    """Everything one worker process builds at start-up and closes at shutdown."""

    def __init__(
        self, settings: Settings, adapter: ErpBackend | None = None, telemetry: Telemetry | None = None
    ) -> None:
        self.settings = settings
        self.redis = open_shared_state(settings.redis)
        erp = adapter or build_adapter(settings, telemetry.instrument_http_client if telemetry else None)
        if settings.faults.control_file:
            erp = FaultInjectingBackend(erp, settings.faults)
        if telemetry is not None:
            telemetry.instrument_redis(client_of(self.redis))
            if telemetry.observes_erp_calls:
                # Innermost: only calls that reach the ERP (or its fault injector) are measured.
                erp = ObservedBackend(erp, telemetry)
        chain = wrap_backend(
            erp,
            PolicySettings(
                cache=settings.cache,
                retry=settings.retry,
                breaker=settings.breaker,
                erp_limits=settings.erp_limits,
                timeouts=settings.timeouts,
            ),
            self.redis,
        )
        self.backend: ErpBackend = chain.backend
        self.guarded: GuardedBackend = chain.guarded
        self.cache: CachingBackend | None = chain.cache
        self._start_task: asyncio.Task[None] | None = None
        self.writes = IdempotentWrites(build_idempotency_store(settings, self.redis), settings.idempotency)
        self.returns = ReturnWrites(self.backend, self.writes)
        self.quotas = (
            QuotaLimiter(settings.quotas, self.redis, settings.server.workers) if settings.quotas.enabled else None
        )

    def start(self) -> None:
        """Start the adapter in the background (login, reference data) so the first requests
        find it ready; /readyz answers 503 until it is. A failure is tried again by the next call."""

        async def run() -> None:
            try:
                await self.guarded.start(CallContext(correlation_id="start-up"))
            except ErpError as exc:
                log.warning("ERP start-up failed, retried on the next call: %s", exc)

        self._start_task = asyncio.get_running_loop().create_task(run())

    async def readiness(self) -> list[Check]:
        """The ERP must answer; Redis and breakers are reported, a down Redis only degrades."""
        checks: list[Check] = []
        try:
            await self.backend.check_ready()
            checks.append(Check(name=f"backend:{self.backend.name}", ok=True))
        except (ErpError, TimeoutError) as exc:
            checks.append(Check(name=f"backend:{self.backend.name}", ok=False, detail=str(exc) or "timed out"))
        if self.redis.configured:
            up = await self.redis.ping()
            checks.append(
                Check(
                    name="redis",
                    ok=up,
                    required=False,
                    detail=None if up else f"serving from in-process state: {self.redis.last_error}",
                )
            )
        for breaker in self.guarded.breakers.values():
            state = await breaker.refresh()  # what the shared state says now, not at this worker's last call
            checks.append(Check(name=f"breaker:{breaker.name}", ok=state == "closed", required=False, detail=state))
        return checks

    async def aclose(self) -> None:
        if self._start_task is not None:
            self._start_task.cancel()
        await self.writes.aclose()
        await self.backend.aclose()
        await self.redis.aclose()
