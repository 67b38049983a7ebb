"""What the embedded sample ERP guarantees beyond the conformance suite: persistence and
atomic writes when several gunicorn workers (processes) share one database file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from contracts.v1 import ReturnRequest, ReturnRequestLine
from erp_backends.errors import ErpUnavailable, Rejected
from erp_backends.port import CallContext, IdempotencyToken, ReturnOutcome
from erp_backends.sample import SampleBackend, SampleSettings

CTX = CallContext(correlation_id="unit")
REQUEST = ReturnRequest(
    order_number="SO-1005", lines=[ReturnRequestLine(sku="TOTE-NAT", quantity=20, reason="damaged")]
)


def _backend(path: Path) -> SampleBackend:
    return SampleBackend(SampleSettings(path=str(path)))


async def test_returns_survive_a_restart(sample_path: Path) -> None:
    first = _backend(sample_path)
    created = await first.create_return(REQUEST, IdempotencyToken.for_request("restart-key-1", REQUEST), CTX)
    await first.aclose()
    second = _backend(sample_path)
    try:
        assert await second.get_return(created.authorization.rma_number, CTX) == created.authorization
        replay = await second.create_return(REQUEST, IdempotencyToken.for_request("restart-key-1", REQUEST), CTX)
        assert replay.replayed
    finally:
        await second.aclose()


async def test_the_dataset_is_seeded_once(sample_path: Path) -> None:
    # Workers open the file together at start-up; switching to WAL is refused while another holds it.
    backends = [_backend(sample_path) for _ in range(8)]
    try:
        await asyncio.gather(*(b.check_ready() for b in backends))
    finally:
        for b in backends:
            await b.aclose()
    with sqlite3.connect(sample_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM products").fetchone() == (50,)


async def test_concurrent_retries_with_one_key_create_one_return(sample_path: Path) -> None:
    # Two "workers" (separate connections and threads) race with the same key.
    workers = [_backend(sample_path) for _ in range(2)]
    token = IdempotencyToken.for_request("race-key-0001", REQUEST)
    try:
        await workers[0].check_ready()
        outcomes = await asyncio.gather(*(w.create_return(REQUEST, token, CTX) for w in workers * 3))
    finally:
        for w in workers:
            await w.aclose()
    assert len({o.authorization.rma_number for o in outcomes}) == 1
    assert sum(not o.replayed for o in outcomes) == 1
    with sqlite3.connect(sample_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM returns").fetchone() == (1,)


async def test_concurrent_returns_never_exceed_what_was_delivered(sample_path: Path) -> None:
    workers = [_backend(sample_path) for _ in range(2)]
    try:
        await workers[0].check_ready()
        results = await asyncio.gather(
            *(
                w.create_return(REQUEST, IdempotencyToken.for_request(f"distinct-key-{i}", REQUEST), CTX)
                for i, w in enumerate(workers * 2)
            ),
            return_exceptions=True,
        )
    finally:
        for w in workers:
            await w.aclose()
    created = [r for r in results if isinstance(r, ReturnOutcome)]
    refused = [r for r in results if isinstance(r, Rejected)]
    assert len(created) == 1
    assert len(refused) == 3
    assert all(r.code == "return-quantity-exceeded" for r in refused)


async def test_a_broken_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    backend = _backend(path)
    with pytest.raises(ErpUnavailable):
        await backend.check_ready()
    await backend.aclose()
