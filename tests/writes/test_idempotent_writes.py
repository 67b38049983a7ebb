"""``IdempotentWrites``: one attempt per key at a time, stored answers replayed, failures released."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from erp_backends.errors import ErpUnavailable, Rejected
from gateway.writes.idempotency import IdempotencySettings, IdempotentWrites, RequestInProgress, StoredAnswer
from gateway.writes.idempotency_stores import SqliteIdempotencyStore


class _Erp:
    """Counts writes; each takes a while, so concurrent callers overlap."""

    def __init__(self) -> None:
        self.writes = 0
        self.fail_next = False

    async def write(self) -> StoredAnswer:
        self.writes += 1
        await asyncio.sleep(0.05)
        if self.fail_next:
            self.fail_next = False
            raise ErpUnavailable("down")
        return StoredAnswer(status=201, body=f'{{"n": {self.writes}}}'.encode())


@pytest.fixture
async def writes(tmp_path: Path) -> AsyncIterator[IdempotentWrites]:
    runner = IdempotentWrites(SqliteIdempotencyStore(str(tmp_path / "idem.sqlite")), IdempotencySettings())
    yield runner
    await runner.aclose()


async def test_racing_retries_make_one_write_and_get_its_answer_or_a_retry_later(writes: IdempotentWrites) -> None:
    erp = _Erp()
    outcomes = await asyncio.gather(
        *(writes.run("returns", "key-1", "fp", erp.write) for _ in range(50)), return_exceptions=True
    )
    assert erp.writes == 1
    done = [o for o in outcomes if isinstance(o, tuple)]
    busy = [o for o in outcomes if isinstance(o, RequestInProgress)]
    assert len(done) + len(busy) == 50, [o for o in outcomes if not isinstance(o, tuple | RequestInProgress)]
    assert [replayed for _, replayed in done].count(False) == 1
    assert all(b.retry_after >= 1 for b in busy)
    answer, replayed = await writes.run("returns", "key-1", "fp", erp.write)
    assert (answer.body, replayed, erp.writes) == (b'{"n": 1}', True, 1)


async def test_the_same_key_with_another_body_is_refused(writes: IdempotentWrites) -> None:
    erp = _Erp()
    await writes.run("returns", "key-2", "fp-a", erp.write)
    with pytest.raises(Rejected) as refused:
        await writes.run("returns", "key-2", "fp-b", erp.write)
    assert refused.value.code == "idempotency-key-reused"
    assert erp.writes == 1


async def test_a_failed_attempt_releases_the_key_for_a_retry(writes: IdempotentWrites) -> None:
    erp = _Erp()
    erp.fail_next = True
    with pytest.raises(ErpUnavailable):
        await writes.run("returns", "key-3", "fp", erp.write)
    _, replayed = await writes.run("returns", "key-3", "fp", erp.write)
    assert (replayed, erp.writes) == (False, 2)


async def test_a_caller_that_hangs_up_does_not_cut_the_write_short(writes: IdempotentWrites) -> None:
    erp = _Erp()
    caller = asyncio.create_task(writes.run("returns", "key-4", "fp", erp.write))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.1)  # the write finishes and records its answer
    _, replayed = await writes.run("returns", "key-4", "fp", erp.write)
    assert (replayed, erp.writes) == (True, 1)


async def test_operations_keep_their_keys_apart(writes: IdempotentWrites) -> None:
    erp = _Erp()
    await writes.run("returns", "key-5", "fp-a", erp.write)
    _, replayed = await writes.run("orders", "key-5", "fp-b", erp.write)
    assert (replayed, erp.writes) == (False, 2)
