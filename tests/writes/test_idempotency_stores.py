"""One suite for every ``IdempotencyStore`` adapter: SQLite (one host), Redis (every instance),
and the two layered (the host's file, then Redis), while Redis answers and while it is down.

Store objects on one file stand for the workers of one host; ``layered-two-hosts`` gives each
store object a file of its own (instances on different hosts), so only Redis serializes them.

Every kind that uses Redis runs on each deployment mode (``redis_deployment``: standalone,
Sentinel, Cluster): ``sqlite`` and ``layered-redis-down`` need no Redis and run once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.shared_state import RedisSettings, open_shared_state
from gateway.writes.idempotency import IdempotencyStore, StoredAnswer
from gateway.writes.idempotency_stores import LayeredIdempotencyStore, RedisIdempotencyStore, SqliteIdempotencyStore
from policies.shared_state import LenientState, SharedState
from tests.conftest import REDIS_MODES, RedisDeployment, redis_deployment_for

#: (store kind, Redis deployment mode or None): the kinds on Redis once per mode.
STORES = [
    ("sqlite", None),
    *((kind, mode) for kind in ("redis", "layered", "layered-two-hosts") for mode in REDIS_MODES),
    ("layered-redis-down", None),
]
ANSWER = StoredAnswer(status=201, body=b'{"rmaNumber": "RMA-000001"}', location="/v1/returns/RMA-000001")

#: Makes the store of one simulated worker (all share one state).
MakeStore = Callable[[], IdempotencyStore]


@pytest.fixture(params=STORES, ids=[kind if mode is None else f"{kind}-{mode}" for kind, mode in STORES])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    made: list[IdempotencyStore] = []
    links: list[LenientState] = []
    kind: str = request.param[0]
    deployment: RedisDeployment | None = None
    if request.param[1] is not None:  # that mode's session deployment, emptied
        deployment = redis_deployment_for(request, request.param[1])

    def link() -> SharedState:
        if kind == "layered-redis-down":  # nothing listens there
            links.append(open_shared_state(RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1)))
        else:
            # generous timeouts: this suite is about atomicity, not about a loaded machine being slow
            assert deployment is not None
            links.append(open_shared_state(deployment.settings(timeout_seconds=2)))
        strict = links[-1].strict
        assert strict is not None
        return strict

    def make() -> IdempotencyStore:
        host = f"host-{len(made)}" if kind == "layered-two-hosts" else "host"
        local = SqliteIdempotencyStore(str(tmp_path / f"{host}.sqlite"))
        store: IdempotencyStore
        if kind == "sqlite":
            store = local
        elif kind == "redis":
            store = RedisIdempotencyStore(link())
        else:
            store = LayeredIdempotencyStore(RedisIdempotencyStore(link()), local)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
    for redis in links:
        await redis.aclose()
    if deployment is not None:
        await deployment.aclose()


def _key() -> str:
    return f"returns:{uuid.uuid4()}"


async def test_the_first_claim_wins_and_others_see_it_in_progress(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    key = _key()
    assert (await one.claim(key, "fp", "owner-1", 30)).state == "claimed"
    other = await two.claim(key, "fp", "owner-2", 30)
    assert other.state == "in_progress"
    assert other.fingerprint == "fp"
    assert 0 < other.retry_after <= 30


async def test_a_retried_claim_by_the_same_owner_is_still_a_claim(make_store: MakeStore) -> None:
    store = make_store()
    key = _key()
    await store.claim(key, "fp", "owner-1", 30)
    assert (await store.claim(key, "fp", "owner-1", 30)).state == "claimed"


async def test_a_completed_answer_is_replayed_with_its_fingerprint(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    key = _key()
    await one.claim(key, "fp", "owner-1", 30)
    await one.complete(key, "owner-1", ANSWER, 60)
    found = await two.claim(key, "other-fp", "owner-2", 30)
    assert found.state == "completed"
    assert found.fingerprint == "fp"  # the caller compares: another body is refused
    assert found.answer == ANSWER


async def test_a_released_claim_can_be_claimed_again(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    key = _key()
    await one.claim(key, "fp", "owner-1", 30)
    await one.release(key, "owner-1")
    assert (await two.claim(key, "fp", "owner-2", 30)).state == "claimed"


async def test_only_the_owner_settles_a_claim(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    key = _key()
    await one.claim(key, "fp", "owner-1", 30)
    await two.release(key, "owner-2")
    await two.complete(key, "owner-2", ANSWER, 60)
    assert (await two.claim(key, "fp", "owner-3", 30)).state == "in_progress"


async def test_a_dead_owners_claim_lapses_with_its_lease(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    key = _key()
    await one.claim(key, "fp", "owner-1", 1)  # then "dies": never settles
    await asyncio.sleep(1.1)
    assert (await two.claim(key, "fp", "owner-2", 30)).state == "claimed"


async def test_of_many_racing_claims_exactly_one_wins(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(5)]
    key = _key()
    claims = await asyncio.gather(*(stores[i % 5].claim(key, "fp", f"owner-{i}", 30) for i in range(50)))
    assert sum(c.state == "claimed" for c in claims) == 1
    assert sum(c.state == "in_progress" for c in claims) == 49


async def test_an_attempt_begun_while_redis_was_down_still_holds_its_key_after(
    redis_deployment: RedisDeployment, tmp_path: Path
) -> None:
    """The outage-to-recovery seam: the host's file is asked first, so a claim granted by the
    file alone keeps same-host attempts out after Redis is back."""
    down = open_shared_state(RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1))
    up = open_shared_state(redis_deployment.settings(timeout_seconds=2))
    assert down.strict is not None
    assert up.strict is not None
    local = str(tmp_path / "h.sqlite")
    during = LayeredIdempotencyStore(RedisIdempotencyStore(down.strict), SqliteIdempotencyStore(local))
    after = LayeredIdempotencyStore(RedisIdempotencyStore(up.strict), SqliteIdempotencyStore(local))
    key = _key()
    assert (await during.claim(key, "fp", "owner-1", 30)).state == "claimed"
    held = await after.claim(key, "other-fp", "owner-2", 30)
    assert (held.state, held.fingerprint) == ("in_progress", "fp")
    await during.complete(key, "owner-1", ANSWER, 60)
    assert (await after.claim(key, "fp", "owner-3", 30)).answer == ANSWER
    for store in (during, after):
        await store.aclose()
    for link in (down, up):
        await link.aclose()
