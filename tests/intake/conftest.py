"""The intake stores under test: SQLite (store objects on one file stand for the workers of one
host) and Redis on each deployment mode (one shared state per store object, as separate
workers and instances have), all made through one factory per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.intake.store import IntakeStore
from gateway.shared_state import RedisSettings, open_shared_state
from policies.shared_state import LenientState
from tests.conftest import REDIS_MODES, RedisDeployment, redis_deployment_for

__all__ = ["POSTED_HOLD_SECONDS", "RETENTION_SECONDS", "MakeStore"]

#: Seconds a posted hold is kept (every store in the suite is made with it).
POSTED_HOLD_SECONDS = 600.0
#: Seconds an intake that ended is kept with its key and reference.
RETENTION_SECONDS = 86_400.0

#: (adapter, Redis deployment mode or None): Redis once per mode.
STORES = [("sqlite", None), *(("redis", mode) for mode in REDIS_MODES)]

#: Makes the store of one simulated worker; every store of a test shares one state.
MakeStore = Callable[[], IntakeStore]


@pytest.fixture(params=STORES, ids=[kind if mode is None else f"{kind}-{mode}" for kind, mode in STORES])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    kind, mode = request.param
    made: list[IntakeStore] = []
    links: list[LenientState] = []
    deployment: RedisDeployment | None = None
    if mode is not None:  # that mode's session deployment, emptied
        deployment = redis_deployment_for(request, mode)
    prefix = f"intake-test:{uuid.uuid4().hex[:12]}:"  # no braces: the adapter's hash tags decide the slots

    def make() -> IntakeStore:
        # imported here, so the suite is collected (and fails per adapter) while one is missing
        store: IntakeStore
        if kind == "sqlite":
            from gateway.intake.sqlite_store import SqliteIntakeStore

            store = SqliteIntakeStore(
                str(tmp_path / "intake.sqlite"),
                posted_hold_seconds=POSTED_HOLD_SECONDS,
                retention_seconds=RETENTION_SECONDS,
            )
        else:
            from gateway.intake.redis_store import RedisIntakeStore

            assert deployment is not None
            # generous timeouts: this suite is about atomicity, not about a loaded machine being slow
            links.append(open_shared_state(deployment.settings(key_prefix=prefix, timeout_seconds=2)))
            shared = links[-1].strict
            assert shared is not None
            store = RedisIntakeStore(
                shared, posted_hold_seconds=POSTED_HOLD_SECONDS, retention_seconds=RETENTION_SECONDS
            )
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.aclose()
        for link in links:
            await link.aclose()
        if deployment is not None:
            await deployment.aclose()


@pytest.fixture
def store(make_store: MakeStore) -> IntakeStore:
    """The store of the one worker most tests need."""
    return make_store()


@pytest.fixture(params=["sqlite", "redis"])
async def unusable_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IntakeStore]:
    """A store that cannot be asked: a file that is no database, or a Redis where nothing listens."""
    store: IntakeStore
    link: LenientState | None = None
    if request.param == "sqlite":
        from gateway.intake.sqlite_store import SqliteIntakeStore

        path = tmp_path / "intake.sqlite"
        path.write_bytes(b"this is no SQLite file" * 100)
        store = SqliteIntakeStore(str(path), posted_hold_seconds=POSTED_HOLD_SECONDS)
    else:
        from gateway.intake.redis_store import RedisIntakeStore

        link = open_shared_state(RedisSettings(url="redis://127.0.0.1:1", timeout_seconds=0.1))
        assert link.strict is not None
        store = RedisIntakeStore(link.strict, posted_hold_seconds=POSTED_HOLD_SECONDS)
    try:
        yield store
    finally:
        await store.aclose()
        if link is not None:
            await link.aclose()
