"""Two Tryton databases side by side as two named backends: a settings change only, and each
backend has its own cache keys, breakers and metric labels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
import pytest
import redis as sync_redis

from erp_backends.errors import ErpUnavailable
from erp_backends.port import CallContext, ErpBackend
from gateway.bootstrap import ErpRuntime, build_erp
from gateway.settings import Settings, TrytonBackendSettings
from gateway.shared_state import RedisSettings, open_shared_state
from policies.circuit_breaking import BreakerSettings, CircuitOpen
from policies.retrying import RetrySettings
from tests.harness.faults import Fault, FaultInjectingBackend
from tests.harness.tryton import TrytonServer
from tests.harness.tryton_fixtures import tryton_settings

CTX = CallContext(correlation_id="several-backends")


@dataclass
class _Probe:
    calls: list[tuple[str, str, str]]
    backend: str
    operation: str

    def context(self, ctx: CallContext) -> CallContext:
        return ctx

    def finish(self, outcome: str, error: BaseException | None) -> None:
        self.calls.append((self.backend, self.operation, outcome))


@dataclass
class _RecordingObserver:
    """Hears what the metrics hear: ``backend`` is the label of every ERP call metric."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def start(self, backend: str, operation: str) -> _Probe:
        return _Probe(self.calls, backend, operation)


def _entry(server: TrytonServer) -> TrytonBackendSettings:
    return msgspec.convert(msgspec.to_builtins(tryton_settings(server)), TrytonBackendSettings)


@pytest.fixture
async def two_trytons(
    tryton: TrytonServer, tryton_pg: TrytonServer, redis_url: str
) -> AsyncIterator[tuple[ErpRuntime, dict[str, Fault], _RecordingObserver]]:
    settings = Settings(
        backends={"next": _entry(tryton), "next_pg": _entry(tryton_pg)},
        default_backend="next",
        redis=RedisSettings(url=redis_url),
        breaker=BreakerSettings(fail_max=2, reset_timeout_seconds=30),
        retry=RetrySettings(read_attempts=0),
    )
    faults = {"next": Fault(), "next_pg": Fault()}

    def wrap(adapter: ErpBackend) -> ErpBackend:
        return FaultInjectingBackend(adapter, lambda: faults[adapter.name])

    observer = _RecordingObserver()
    redis = open_shared_state(settings.redis)
    erp = build_erp(settings, redis, wrap_adapter=wrap, observer=observer)
    yield erp, faults, observer
    await erp.aclose()
    await redis.aclose()


async def test_each_backend_has_its_own_breakers_and_metric_labels(
    two_trytons: tuple[ErpRuntime, dict[str, Fault], _RecordingObserver],
) -> None:
    erp, faults, observer = two_trytons
    assert erp.default.name == "next"
    assert sorted(b.name for b in erp.breakers()) == ["next:reads", "next:writes", "next_pg:reads", "next_pg:writes"]
    first = await erp.chains["next"].backend.get_order("SO-1002", CTX)
    second = await erp.chains["next_pg"].backend.get_order("SO-1003", CTX)
    assert (first.order_number, second.order_number) == ("SO-1002", "SO-1003")
    labels = [(backend, outcome) for backend, operation, outcome in observer.calls if operation == "get_order"]
    assert labels == [("next", "ok"), ("next_pg", "ok")]  # each call labelled with its own backend

    faults["next_pg"] = Fault(mode="down")
    for sku in ("MUG-SND", "TEE-NVY-M"):
        with pytest.raises(ErpUnavailable):
            await erp.chains["next_pg"].backend.get_availability([sku], None, CTX)
    with pytest.raises(CircuitOpen):
        await erp.chains["next_pg"].backend.get_availability(["LAMP-WHT"], None, CTX)
    breakers = {b.name: b.state for b in erp.breakers()}
    assert breakers["next_pg:reads"] == "open"
    assert breakers["next:reads"] == "closed"
    answer = await erp.chains["next"].backend.get_availability(["LAMP-WHT"], None, CTX)
    assert answer.items[0].sku == "LAMP-WHT"  # the other backend is untouched
    failed = {(b, outcome) for b, op, outcome in observer.calls if op == "get_availability"}
    assert failed == {("next_pg", "unavailable"), ("next", "ok")}


async def test_each_backend_has_its_own_cache_keys(
    two_trytons: tuple[ErpRuntime, dict[str, Fault], _RecordingObserver], redis_url: str
) -> None:
    erp, _, observer = two_trytons
    for name in ("next", "next_pg"):
        await erp.chains[name].backend.get_availability(["MUG-SND"], None, CTX)
    assert [b for b, op, _ in observer.calls if op == "get_availability"] == ["next", "next_pg"]
    client = sync_redis.Redis.from_url(redis_url)
    try:
        keys = sorted(k.decode() for k in client.keys("*MUG-SND*"))
    finally:
        client.close()
    assert any(":next:" in k for k in keys), keys
    assert any(":next_pg:" in k for k in keys), keys
