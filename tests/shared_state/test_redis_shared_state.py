"""The shared-state port (``policies.shared_state``) on Redis: the strict store raises, the
lenient one answers its fallback, and the connection factory's retry policy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.shared_state import RedisSettings, RedisSharedState, connect, open_shared_state
from policies.shared_state import LenientState, SharedState, SharedStateUnavailable


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[SharedState]:
    state = open_shared_state(RedisSettings(url=redis_url, key_prefix=f"t{uuid.uuid4().hex[:8]}:"))
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


async def test_keys_are_prefixed_and_expire(store: SharedState, redis_url: str) -> None:
    await store.set_many([("k", b"v", 50)])
    assert isinstance(store, RedisSharedState)
    assert await store.client.pttl(store.prefix + "k") > 0


async def test_scripts_run_by_name(store: SharedState) -> None:
    store.register_script("incr", "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await store.run_script("incr", ["n"], [2]) == 2
    assert await store.run_script("incr", ["n"], [3]) == 5


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
