"""One suite for both ``MismatchLog`` adapters: SQLite (several store objects on one file stand
for a host's workers) and Redis on each deployment mode (one connection per store object)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from gateway.routing.compare import Difference
from gateway.routing.mismatches import Mismatch, MismatchLog
from gateway.shared_state import open_shared_state
from policies.shared_state import LenientState
from tests.conftest import REDIS_MODES, RedisDeployment, redis_deployment_for

KEEP = 5
LOGS = [("sqlite", None), *(("redis", mode) for mode in REDIS_MODES)]
MakeLog = Callable[[], MismatchLog]


@pytest.fixture(params=LOGS, ids=[kind if mode is None else f"{kind}-{mode}" for kind, mode in LOGS])
async def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLog]:
    kind, mode = request.param
    made: list[MismatchLog] = []
    links: list[LenientState] = []
    deployment: RedisDeployment | None = redis_deployment_for(request, mode) if mode is not None else None
    prefix = f"shadow-test:{uuid.uuid4().hex[:12]}:"

    def make() -> MismatchLog:
        log: MismatchLog
        if kind == "sqlite":
            from gateway.routing.mismatches import SqliteMismatchLog

            log = SqliteMismatchLog(str(tmp_path / "shadow.sqlite"), keep=KEEP)
        else:
            from gateway.routing.mismatches import RedisMismatchLog

            assert deployment is not None
            links.append(open_shared_state(deployment.settings(key_prefix=prefix, timeout_seconds=2)))
            shared = links[-1].strict
            assert shared is not None
            log = RedisMismatchLog(shared, keep=KEEP)
        made.append(log)
        return log

    try:
        yield make
    finally:
        for log in made:
            await log.aclose()
        for link in links:
            await link.aclose()
        if deployment is not None:
            await deployment.aclose()


def _mismatch(n: int) -> Mismatch:
    return Mismatch(
        at=time.time(),
        operation="get_availability",
        subject=f"skus=SKU-{n}",
        primary="legacy",
        shadow="next",
        differences=[Difference(path=f"items[sku=SKU-{n}].onHand", primary=n, shadow=n + 1)],
    )


async def test_the_newest_are_kept_first_and_at_most_keep(make_log: MakeLog) -> None:
    log = make_log()
    assert await log.recent(10) == []
    for n in range(8):
        await log.add(_mismatch(n))
    assert [m.subject for m in await log.recent(10)] == [f"skus=SKU-{n}" for n in (7, 6, 5, 4, 3)]
    assert [m.subject for m in await log.recent(2)] == ["skus=SKU-7", "skus=SKU-6"]
    newest = (await log.recent(1))[0]
    assert newest == msgspec.structs.replace(_mismatch(7), at=newest.at)  # every field kept as it was


async def test_workers_share_one_log_and_clear_empties_it(make_log: MakeLog) -> None:
    workers = [make_log() for _ in range(3)]
    await asyncio.gather(*(w.add(_mismatch(n)) for n, w in enumerate(workers)))
    seen = {m.subject for m in await workers[0].recent(10)}
    assert seen == {"skus=SKU-0", "skus=SKU-1", "skus=SKU-2"}
    await workers[1].clear()
    assert await workers[2].recent(10) == []
