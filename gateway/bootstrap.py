"""The composition root: which adapters, each wrapped in its own policies, from settings.

This is the one place that knows concrete adapters and policies. ``build_erp`` builds what any
process serving the ERP port needs (every configured backend in its policy chain, usable without
HTTP, e.g. by a future posting worker); ``Runtime`` adds what the HTTP app needs on top
(quotas, idempotent writes, readiness). Routes receive a backend and cannot tell a bare adapter
from one wrapped in policies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec

from erp_backends.errors import ErpError
from erp_backends.operations import check_declared
from erp_backends.port import CallContext, ErpBackend
from erp_backends.sample import SampleBackend
from erp_backends.tryton import TrytonBackend, TrytonSettings
from erp_backends.wrapping import WrappingBackend
from gateway.intake.holds import HeldStock
from gateway.intake.poster import Poster
from gateway.intake.redis_store import RedisIntakeStore
from gateway.intake.service import IntakeService
from gateway.intake.sqlite_store import SqliteIntakeStore
from gateway.intake.store import IntakeStore, IntakeStoreUnavailable
from gateway.observability.telemetry import Telemetry
from gateway.routing.mismatches import MismatchLog, RedisMismatchLog, SqliteMismatchLog
from gateway.routing.router import RoutedBackend
from gateway.routing.settings import RoutingSettings
from gateway.routing.shadow import Observe, Shadow
from gateway.settings import BackendSettings, SampleBackendSettings, Settings, TrytonBackendSettings
from gateway.shared_state import client_of, open_shared_state
from gateway.writes.idempotency import IdempotencyStore, IdempotentWrites
from gateway.writes.idempotency_stores import LayeredIdempotencyStore, RedisIdempotencyStore, SqliteIdempotencyStore
from gateway.writes.returns import ReturnWrites
from policies.chain import PolicyChain, PolicySettings, wrap_backend
from policies.circuit_breaking import SharedCircuitBreaker
from policies.observed import ErpCallObserver
from policies.quotas import QuotaLimiter
from policies.shared_state import LenientState

__all__ = [
    "ADAPTERS",
    "Check",
    "ErpRuntime",
    "PostingWorker",
    "Runtime",
    "WrapAdapter",
    "build_adapter",
    "build_erp",
    "build_tryton",
]

log = logging.getLogger("erp_gateway.bootstrap")


#: Adds tracing to an adapter's HTTP client (``Telemetry.instrument_http_client``).
InstrumentClient = Callable[[httpx.AsyncClient], None]
#: Wraps a bare adapter before the policies do (tests: fault injection, ``tests/harness/faults.py``).
WrapAdapter = Callable[[ErpBackend], ErpBackend]
#: Builds one adapter from its name and its kind's settings.
AdapterFactory = Callable[[str, Any, InstrumentClient | None], ErpBackend]


def build_tryton(
    settings: TrytonSettings, instrument: InstrumentClient | None = None, *, name: str = "tryton"
) -> TrytonBackend:
    """The Tryton adapter with its own pooled client (closed with the adapter)."""
    limits = httpx.Limits(max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections)
    timeout = httpx.Timeout(settings.call_timeout_seconds, connect=settings.connect_timeout_seconds)
    client = httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False)
    if instrument is not None:
        instrument(client)
    return TrytonBackend(settings, client, close_client=True, name=name)


#: Each kind's settings Struct -> how to build its adapter. A new kind is one line here and
#: one member of ``gateway.settings.BackendSettings``.
ADAPTERS: dict[type[BackendSettings], AdapterFactory] = {
    SampleBackendSettings: lambda name, settings, instrument: SampleBackend(settings, name=name),
    TrytonBackendSettings: lambda name, settings, instrument: build_tryton(settings, instrument, name=name),
}


def build_adapter(
    settings: Settings, instrument: InstrumentClient | None = None, name: str | None = None
) -> ErpBackend:
    """The bare adapter of the backend ``name`` (default: the default backend)."""
    name = name or settings.default_backend_name()
    entry = settings.backend_entries()[name]
    factory = ADAPTERS.get(type(entry))
    if factory is None:
        raise ValueError(f"backend kind {type(entry).__name__} is not available in this build")
    return factory(name, entry, instrument)


def policy_settings(settings: Settings) -> PolicySettings:
    return PolicySettings(
        cache=settings.cache,
        workers=settings.server.workers,
        retry=settings.retry,
        breaker=settings.breaker,
        erp_limits=settings.erp_limits,
        timeouts=settings.timeouts,
    )


class ErpRuntime:
    """Every configured backend, each in its own policy chain, the Redis link they share, and
    ``routed``: the one backend routes call, sending each call where ``[routing]`` says.

    What a process serving the ERP port builds, HTTP or not."""

    def __init__(
        self,
        redis: LenientState,
        chains: Mapping[str, PolicyChain],
        default: str,
        routing: RoutingSettings | None = None,
        shadow: Shadow | None = None,
        mismatches: MismatchLog | None = None,
    ) -> None:
        self.redis = redis
        self.chains = dict(chains)
        self.default = self.chains[default]
        self.routed = RoutedBackend(self.chains, default, routing or RoutingSettings(), shadow)
        self.mismatches = mismatches
        #: The shadow chain's breakers (``<name>_shadow:*``), reported with the others.
        self.shadow_breakers: list[SharedCircuitBreaker] = []
        self._start_tasks: list[asyncio.Task[None]] = []

    def chain_for(self, operation: str, client_id: str | None = None, channel: str | None = None) -> PolicyChain:
        """The chain a call of ``operation`` goes to (``gateway.routing.router``)."""
        return self.routed.chain_for(operation, client_id, channel)

    def breakers(self) -> list[SharedCircuitBreaker]:
        """Every backend's breakers (``<name>:reads``, ``<name>:writes``)."""
        own = [breaker for chain in self.chains.values() for breaker in chain.guarded.breakers.values()]
        return [*own, *self.shadow_breakers]

    def start(self) -> None:
        """Start every adapter in the background (login, reference data) so the first requests
        find them ready; /readyz answers 503 until the default one is. A failure is tried again
        by the next call."""

        async def run(chain: PolicyChain) -> None:
            try:
                await chain.guarded.start(CallContext(correlation_id="start-up"))
            except ErpError as exc:
                log.warning("ERP start-up of %s failed, retried on the next call: %s", chain.name, exc)

        loop = asyncio.get_running_loop()
        self._start_tasks = [loop.create_task(run(chain)) for chain in self.chains.values()]

    async def aclose(self) -> None:
        for task in self._start_tasks:
            task.cancel()
        if self.routed.shadow is not None:
            await self.routed.shadow.aclose()
        if self.mismatches is not None:
            await self.mismatches.aclose()
        for chain in self.chains.values():
            await chain.backend.aclose()


def build_erp(
    settings: Settings,
    redis: LenientState,
    *,
    adapter: ErpBackend | None = None,
    wrap_adapter: WrapAdapter | None = None,
    instrument: InstrumentClient | None = None,
    observer: ErpCallObserver | None = None,
    observe_shadow: Observe | None = None,
) -> ErpRuntime:
    """Every backend the settings name, in its own chain (``policies.chain``), routed as
    ``[routing]`` says, with its shadow reads. ``adapter`` replaces the default backend's
    adapter (tests); ``wrap_adapter`` wraps each bare adapter; ``instrument`` traces the
    adapters' HTTP clients, ``observer`` hears every adapter call, ``observe_shadow`` counts
    every shadow read's outcome."""
    check_declared(ErpBackend)  # every port operation says what it is, or nothing starts
    default = settings.default_backend_name()
    chains: dict[str, PolicyChain] = {}
    adapters: dict[str, ErpBackend] = {}
    shadow_breakers: list[SharedCircuitBreaker] = []
    for name in settings.backend_entries():
        erp = adapter if adapter is not None and name == default else build_adapter(settings, instrument, name)
        if wrap_adapter is not None:
            erp = wrap_adapter(erp)
        adapters[name] = erp
        chains[name] = wrap_backend(erp, policy_settings(settings), redis, observer)
    routing = settings.routing
    shadow = mismatches = None
    if routing.shadow.backend and routing.shadow.sample_rate > 0:
        mismatches = build_mismatch_log(settings, redis)
        # a chain of its own on the same adapter, without a cache: its own breakers
        # (``<name>_shadow:reads``), call budget and metrics label, so a slow or failing shadow
        # never opens the breaker or spends the budget of live calls routed to that backend
        own = wrap_backend(
            Renamed(adapters[routing.shadow.backend], f"{routing.shadow.backend}_shadow"),
            policy_settings(settings),
            redis,
            observer,
        )
        shadow_breakers.extend(own.guarded.breakers.values())
        shadow = Shadow(
            routing.shadow.backend,
            own.guarded,
            routing.shadow,
            mismatches,
            observe_shadow or (lambda backend, operation, outcome: None),
        )
    runtime = ErpRuntime(redis, chains, default, routing, shadow, mismatches)
    runtime.shadow_breakers = shadow_breakers
    return runtime


class Renamed(WrappingBackend):
    """The same adapter under another name (the shadow's chain: breakers, budget, metrics)."""

    def __init__(self, inner: ErpBackend, name: str) -> None:
        super().__init__(inner)
        self.name = name

    async def aclose(self) -> None:  # the adapter is closed once, by its own chain
        return None


def build_mismatch_log(settings: Settings, redis: LenientState) -> MismatchLog:
    """Redis across instances, else the host's SQLite file (``erp-gateway shadow-report`` reads it)."""
    keep = settings.routing.shadow.keep
    if redis.strict is not None:
        return RedisMismatchLog(redis.strict, keep)
    return SqliteMismatchLog(settings.routing.shadow.path, keep)


def build_idempotency_store(settings: Settings, redis: LenientState) -> IdempotencyStore:
    """Redis across instances (the host's file while Redis is down), else the host's file."""
    local = SqliteIdempotencyStore(settings.idempotency.path)
    return LayeredIdempotencyStore(RedisIdempotencyStore(redis.strict), local) if redis.strict else local


def build_intake_store(settings: Settings, redis: LenientState) -> IntakeStore:
    """Redis across instances, else the host's SQLite file. No fallback from one to the other:
    holds in two places could promise the same units twice, so a down store refuses intake."""
    keep = settings.intake.posted_hold_seconds(settings.cache)
    retention = settings.intake.retention_days * 86_400
    if redis.strict is not None:
        return RedisIntakeStore(redis.strict, posted_hold_seconds=keep, retention_seconds=retention)
    return SqliteIntakeStore(settings.intake.path, keep, retention)


def build_poster(
    settings: Settings,
    erp: ErpRuntime,
    store: IntakeStore,
    holds: HeldStock | None = None,
    telemetry: Telemetry | None = None,
) -> Poster:
    """Posting through the whole chain of the backend ``create_order`` is routed to (breaker,
    call budget, write timeout), paused while its write breaker refuses calls; ``holds``: this
    process's view of the holds, told at once of what posting changed; ``telemetry``: counts
    the outcomes."""
    chain = erp.chain_for("create_order")
    writes = chain.guarded.breakers["writes"]
    metrics = telemetry.metrics if telemetry is not None else None
    return Poster(
        store,
        chain.backend,
        settings.intake,
        paused=lambda: writes.refusing_for() > 0,
        changed=holds.forget if holds is not None else lambda sku: None,
        observe=metrics.observe_intake_post if metrics is not None else lambda outcome: None,
    )


class PostingWorker:
    """What ``erp-gateway worker`` runs: the ERP runtime, the intake store and the poster,
    without HTTP (a separate Deployment when posting is not left to the gateway's workers)."""

    def __init__(self, settings: Settings, wrap_adapter: WrapAdapter | None = None) -> None:
        self.telemetry = Telemetry(settings.observability)
        self.redis = open_shared_state(settings.redis)
        self.telemetry.instrument_redis(client_of(self.redis))
        self.erp = build_erp(
            settings,
            self.redis,
            wrap_adapter=wrap_adapter,
            instrument=self.telemetry.instrument_http_client,
            observer=self.telemetry if self.telemetry.observes_erp_calls else None,
        )
        self.telemetry.watch_breakers(self.erp.breakers())
        self.store = build_intake_store(settings, self.redis)
        self.poster = build_poster(settings, self.erp, self.store, telemetry=self.telemetry)

    async def aclose(self) -> None:
        try:
            await self.store.aclose()
            await self.erp.aclose()
            await self.redis.aclose()
        finally:
            self.telemetry.shutdown()


#: Seconds /readyz gives Redis and the shared breaker states (its whole budget is 2 s).
SHARED_CHECKS_SECONDS = 1.0


class Check(msgspec.Struct, kw_only=True, frozen=True):
    """One line of /readyz. ``required`` checks make the gateway unready when they fail."""

    name: str
    ok: bool
    required: bool = True
    detail: str | None = None


class Runtime:
    """What one HTTP worker process builds at start-up and closes at shutdown: the ERP runtime
    (``erp``), and on top of it quotas, idempotent writes and readiness."""

    def __init__(
        self,
        settings: Settings,
        adapter: ErpBackend | None = None,
        telemetry: Telemetry | None = None,
        wrap_adapter: WrapAdapter | None = None,
    ) -> None:
        self.settings = settings
        self.redis = open_shared_state(settings.redis)
        if telemetry is not None:
            telemetry.instrument_redis(client_of(self.redis))
        self.erp = build_erp(
            settings,
            self.redis,
            adapter=adapter,
            wrap_adapter=wrap_adapter,
            instrument=telemetry.instrument_http_client if telemetry else None,
            observer=telemetry if telemetry is not None and telemetry.observes_erp_calls else None,
            observe_shadow=telemetry.metrics.observe_shadow if telemetry and telemetry.metrics else None,
        )
        self.writes = IdempotentWrites(build_idempotency_store(settings, self.redis), settings.idempotency)
        self.returns = ReturnWrites(self.erp.routed, self.writes)
        self.intake: IntakeService | None = None
        self.poster: Poster | None = None
        if settings.intake.enabled:
            store = build_intake_store(settings, self.redis)
            holds = HeldStock(store, settings.cache.local_ttl_seconds)
            # judged on the stock of the ERP the order is posted to (it commits that stock)
            self.intake = IntakeService(store, self.erp.chain_for("create_order"), settings.intake, holds)
            if settings.intake.post_in_workers:
                self.poster = build_poster(settings, self.erp, store, holds, telemetry)
        self._posting: asyncio.Task[None] | None = None
        self.quotas = (
            QuotaLimiter(settings.quotas, self.redis, settings.server.workers) if settings.quotas.enabled else None
        )

    def start(self) -> None:
        self.erp.start()
        if self.poster is not None:
            self._posting = asyncio.get_running_loop().create_task(self.poster.run())

    async def readiness(self) -> list[Check]:
        """Every backend is asked; one serving every operation is required (with several, a
        down one fails only the operations routed to it: the instance stays ready); Redis and breakers are
        reported, a down Redis only degrades. Both are asked at once, and the shared state is
        given ``SHARED_CHECKS_SECONDS``: a Redis that hangs through a failover reports itself
        down in time instead of making the whole probe time out (which would count as the
        instance being unready, on every instance at once)."""
        backends, shared = await asyncio.gather(self._backend_checks(), self._bounded_shared_checks())
        return [*backends, *shared]

    async def _backend_checks(self) -> list[Check]:
        checks: list[Check] = []
        serves = self.erp.routed.serves()
        serving = [name for name, operations in serves.items() if operations]
        for name, chain in self.erp.chains.items():
            # the one backend serving anything: down, the instance can answer nothing but cache
            # hits; one of several: a down one fails only its operations, the instance stays ready
            required = serving == [name]
            role = f"serves {', '.join(sorted(serves[name]))}" if serves[name] else "serves no operation"
            if self.erp.routed.shadow is not None and self.erp.routed.shadow.name == name:
                role += " (and shadow reads)"
            try:
                await chain.backend.check_ready()
                checks.append(Check(name=f"backend:{name}", ok=True, required=required, detail=role))
            except (ErpError, TimeoutError) as exc:
                detail = f"{str(exc) or 'timed out'}; {role}"
                checks.append(Check(name=f"backend:{name}", ok=False, required=required, detail=detail))
        return checks

    async def _bounded_shared_checks(self) -> list[Check]:
        try:
            return await asyncio.wait_for(self._shared_checks(), SHARED_CHECKS_SECONDS)
        except TimeoutError:
            return [Check(name="redis", ok=False, required=False, detail="serving from in-process state: timed out")]

    async def _shared_checks(self) -> list[Check]:
        checks: list[Check] = []
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
        if self.intake is not None:
            try:
                await self.intake.store.next_due()
                checks.append(Check(name="intake-store", ok=True, required=False))
            except IntakeStoreUnavailable as exc:
                detail = f"order intake refused (503), reads go on: {exc}"
                checks.append(Check(name="intake-store", ok=False, required=False, detail=detail))
        for breaker in self.erp.breakers():
            state = await breaker.refresh()  # what the shared state says now, not at this worker's last call
            checks.append(Check(name=f"breaker:{breaker.name}", ok=state == "closed", required=False, detail=state))
        return checks

    async def aclose(self) -> None:
        if self.poster is not None and self._posting is not None:
            self.poster.stop()  # posts in flight finish (bounded by the ERP write timeout)
            await asyncio.gather(self._posting, return_exceptions=True)
        if self.intake is not None:
            await self.intake.store.aclose()
        await self.writes.aclose()
        await self.erp.aclose()
        await self.redis.aclose()
