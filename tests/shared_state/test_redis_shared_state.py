"""The shared-state port (``policies.shared_state``) on Redis, on every deployment mode
(standalone, Sentinel, Cluster): the strict store raises, the lenient one answers its fallback,
many keys cost one round trip per node, and the connection factory's retry policy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.shared_state import RedisSettings, RedisSharedState, connect, open_shared_state
from policies.shared_state import LenientState, SharedState, SharedStateUnavailable
from tests.conftest import RedisDeployment
from tests.shared_state.round_trips import count_round_trips


@pytest.fixture
async def store(redis_deployment: RedisDeployment) -> AsyncIterator[SharedState]:
    state = open_shared_state(redis_deployment.settings(key_prefix=f"t{uuid.uuid4().hex[:8]}:", timeout_seconds=2))
    assert state.strict is not None
    yield state.strict
    await state.aclose()


async def test_get_many_set_many_swap_and_delete(store: SharedState) -> None:
    assert await store.get_many(["a", "b"]) == [None, None]
    await store.set_many([("a", b"1", 60_000), ("b", b"2", None)])
    assert await store.get_many(["a", "b", "c"]) == [b"1", b"2", None]
    assert await store.swap_many([("a", b"9", 60_000), ("d", b"4", 60_000)]) == [b"1", None]
    assert await store.get_many(["a", "d"]) == [b"9", b"4"]
    assert await store.delete(["a", "d", "nope"]) == 2
    assert await store.get_many(["a", "d"]) == [None, None]


async def test_keys_are_prefixed_and_expire(store: SharedState, redis_deployment: RedisDeployment) -> None:
    await store.set_many([("k", b"v", 5000)])
    assert isinstance(store, RedisSharedState)
    assert await store.client.pttl(store.prefix + "k") > 0
    assert redis_deployment.keys(store.prefix + "*") == [(store.prefix + "k").encode()]


async def test_many_keys_over_many_slots_cost_one_round_trip_per_node(
    store: SharedState, redis_deployment: RedisDeployment
) -> None:
    """A batch of 200 cache keys (no hash tag: spread over ~200 slots on Cluster): read, written,
    swapped and deleted in one write per primary, each answer in the caller's key order.

    Standalone and Sentinel: one MGET, one pipeline. Cluster: one MGET (or SET, DEL) per slot,
    the commands of one node in one pipelined write (redis-py's ``mget_nonatomic`` and cluster
    pipelines group them by node), so at most one round trip per primary, never one per key."""
    assert isinstance(store, RedisSharedState)
    keys = [f"cache:ns:avail:SKU-{i}" for i in range(200)]
    primaries = redis_deployment.primaries()
    if redis_deployment.mode == "cluster":
        slots = {store.client.keyslot(store.prefix + key) for key in keys}  # type: ignore[union-attr]
        assert len(slots) > 150
        assert len(primaries) == 3
    await store.get_many(keys[:1])  # connect (and learn the slot map) before counting
    await store.set_many([(key, b"warm", 60_000) for key in keys])  # a connection to every primary

    with count_round_trips() as trips:
        await store.set_many([(key, f"v{i}".encode(), 60_000) for i, key in enumerate(keys) if i % 2 == 0])
    assert trips.total <= len(primaries)
    assert set(trips.by_port) <= set(primaries)
    await store.delete([key for i, key in enumerate(keys) if i % 2])

    with count_round_trips() as trips:
        values = await store.get_many(keys)
    assert values == [f"v{i}".encode() if i % 2 == 0 else None for i in range(200)]
    assert trips.total <= len(primaries)
    assert set(trips.by_port) <= set(primaries)

    with count_round_trips() as trips:
        before = await store.swap_many([(key, b"new", 60_000) for key in reversed(keys)])
    assert before == list(reversed(values))
    assert trips.total <= len(primaries)

    with count_round_trips() as trips:
        assert await store.delete(keys) == 200
    assert trips.total <= len(primaries)
    assert await store.get_many(keys) == [None] * 200


async def test_scripts_run_by_name(store: SharedState) -> None:
    store.register_script("incr", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await store.run_script("incr", ["n"], [2]) == 2
    assert await store.run_script("incr", ["n"], [3]) == 5


async def test_scripts_run_many_in_one_round_trip_per_node(
    store: SharedState, redis_deployment: RedisDeployment
) -> None:
    """Pipelined one-key scripts (the cache's conditional put), loaded once after ``NOSCRIPT``."""
    store.register_script("put-if-absent", "return redis.call('SET', KEYS[1], ARGV[1], 'NX') and 1 or 0")
    calls: list[tuple[list[str], list[str]]] = [([f"item:{i}"], [f"v{i}"]) for i in range(40)]
    await store.get_many(["warm-up"])  # connections made before counting
    with count_round_trips() as trips:  # NOSCRIPT from the first pipeline, SCRIPT LOAD, again
        assert await store.run_script_many("put-if-absent", calls) == [1] * 40
    nodes = len(redis_deployment.primaries())
    # not one per key: a pipeline per node, SCRIPT LOAD, the pipeline again (and, on Cluster, a
    # connection's handshake to a node the load reached first: 13 writes seen for 3 nodes)
    assert trips.total <= 5 * nodes, dict(trips.by_port)
    with count_round_trips() as trips:
        assert await store.run_script_many("put-if-absent", [*calls[:3], (["fresh"], ["x"])]) == [0, 0, 0, 1]
    assert trips.total <= nodes, dict(trips.by_port)
    assert await store.get_many(["item:0", "item:39", "fresh"]) == [b"v0", b"v39", b"x"]
    assert await store.run_script_many("put-if-absent", []) == []


class _BrokenClient:
    """A client as redis-py's async Cluster client was seen to fail under failover: an
    ``AttributeError`` from a connection closed under a command, or no answer at all."""

    def __init__(self, failure: BaseException | None) -> None:
        self.failure = failure
        self.calls = 0

    async def mget(self, *keys: str) -> list[bytes | None]:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        await asyncio.sleep(3600)
        raise AssertionError("not reached")


@pytest.mark.parametrize("failure", [AttributeError("'NoneType' object has no attribute 'write'"), None])
async def test_any_failure_inside_the_client_is_redis_unavailable(failure: BaseException | None) -> None:
    """Never a 500 for a redis-py bug, never a caller held by a hung server past the deadline."""
    settings = RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.01, retry_seconds=30)
    client = _BrokenClient(failure)
    strict = RedisSharedState(client, settings)  # type: ignore[arg-type]
    with pytest.raises(SharedStateUnavailable, match="AttributeError" if failure else "TimeoutError"):
        await strict.get_many(["a"])
    assert not strict.available
    assert await LenientState(strict).get_many(["a"]) is None  # the back-off window: not asked again
    assert client.calls == 1


async def test_a_failure_raises_then_backs_off_and_the_lenient_store_falls_back() -> None:
    strict = RedisSharedState(
        connect(RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1, retry_seconds=30)),  # type: ignore[arg-type]
        RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1, retry_seconds=30),
    )
    with pytest.raises(SharedStateUnavailable):
        await strict.get_many(["a"])
    assert not strict.available
    assert strict.last_error
    with pytest.raises(SharedStateUnavailable):  # at once, inside the back-off window
        await strict.set_many([("a", b"1", None)])
    lenient = LenientState(strict)
    assert await lenient.get_many(["a"]) is None
    assert await lenient.run_script("x", ["a"], []) is None
    assert await lenient.ping() is False
    await lenient.aclose()
    nothing = LenientState(None)
    assert not nothing.configured
    assert not nothing.available
    assert await nothing.get_many(["a"]) is None


async def test_a_timeout_is_never_retried_a_connection_error_once() -> None:
    """A quota lease or idempotency script that timed out may have run: never send it again."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    client = connect(RedisSettings(url="redis://127.0.0.1:1"))
    assert client is not None
    connection = client.connection_pool.make_connection()  # type: ignore[union-attr]
    retry = connection.retry
    errors = retry._supported_errors
    await connection.disconnect()
    await client.aclose()
    assert retry.get_retries() == 1
    assert any(issubclass(RedisConnectionError, e) for e in errors)
    assert not any(issubclass(RedisTimeoutError, e) or issubclass(TimeoutError, e) for e in errors)


async def test_concurrent_first_calls_on_a_new_client_all_answer(redis_deployment: RedisDeployment) -> None:
    """The first calls of a worker arrive together (a burst at start-up, or right after the
    Cluster client closed itself in a failover): every one answers. On Cluster, redis-py 8.1
    broke such commands (ConnectionError, AttributeError) until the slot map is read once first."""
    for _ in range(2):
        state = open_shared_state(redis_deployment.settings(timeout_seconds=2))
        store = state.strict
        assert store is not None
        store.register_script("incr", "return redis.call('INCR', KEYS[1])")
        results = await asyncio.gather(
            *(store.run_script("incr", [f"n{i % 3}"], []) for i in range(20)),
            *(store.set_many([(f"first-{i}", b"v", 60_000)]) for i in range(10)),
            *(store.get_many([f"first-{i}", f"other-{i}"]) for i in range(10)),
            return_exceptions=True,
        )
        await state.aclose()
        assert [r for r in results if isinstance(r, BaseException)] == []
